// Command agentd serves AI agents defined in YAML over HTTP with Server-Sent Events.
// It is a drop-in replacement for `docker agent serve api`: same command line, same
// /api routes, same JSON and SSE events.
//
// Usage:
//
//	agentd serve api SOURCE [flags]   serve the agents of SOURCE (file, directory or OCI ref)
//	agentd yaml FILE                  print a YAML file as JSON (for checking the parser)
//	agentd pull REF                   download an agent from a registry into the cache
//	agentd version                    print the version
//
// Flags of serve api may come before or after SOURCE:
//
//	-l, --listen ADDR        host:port, [::1]:port or unix:///path (default 127.0.0.1:8080)
//	-s, --session-db PATH    SQLite session database (default: session.db in the user
//	                         config dir, or an existing one in --working-dir; ~ expanded)
//	--working-dir DIR        root directory for sessions and relative paths (default: cwd)
//	--env-from-file FILE     KEY=VALUE lines merged over the environment (repeatable)
//	--pull-interval N        re-pull an OCI source every N minutes (or a Go duration: 30s)
//	--cache-dir DIR          OCI cache directory (default: the user cache dir)
//	--fake CASSETTE          replay model traffic from a cassette (offline demos, tests)
//	--record CASSETTE        record model traffic into a cassette
//	--auth-token-file PATH   require "Authorization: Bearer <token>" (also $AGENTD_AUTH_TOKEN)
//	--insecure-no-auth       allow a non-loopback listen address without a token
//	--allowed-host HOST      extra Host header value to accept (repeatable)
//	--cors-origin ORIGIN     origin allowed to call the API from a browser (repeatable)
//	--max-runs N             concurrent agent runs before 429 (default from memory, at least 4096)
//	--history-cache-mb N     memory for decoded session histories (default 64)
//	-d, --debug              debug logging
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"
)

const version = "0.1.0"

// Every input has a limit; they are all here so an auditor can read them in one place.
const (
	maxSSELine         = 8 << 20   // longest provider SSE line accepted
	maxMetadataBody    = 1 << 20   // session create/title/permissions/resume/elicitation bodies
	maxRunBody         = 16 << 20  // run request: the user's messages, images inlined
	maxBodyMemory      = 256 << 20 // request bodies being read at once (each costs 2× its size)
	bodyReadGrace      = 60 * time.Second
	bodyMinRate        = 64 << 10 // bytes/s a body must average after the grace period
	maxTitleLen        = 1024     // characters in a session title
	maxAgentFile       = 4 << 20  // bytes of one agent YAML file
	maxPromptFile      = 1 << 20  // bytes of one add_prompt_files file
	maxPatterns        = 1000     // permission patterns per session
	maxPatternLen      = 1024     // characters in one permission pattern
	heartbeatEvery     = 15 * time.Second
	readHeaderTimeout  = 10 * time.Second
	idleTimeout        = 120 * time.Second
	shutdownTimeout    = 10 * time.Second
	reloadPollInterval = time.Second
)

// Runs in flight are bounded by count and by estimated memory, both sized from the
// memory the process may use (issue 21: a fixed 256 refused most of 1,000 concurrent
// clients while each stream costs about 300 KB).
const runMemoryCost = 512 << 10 // estimated bytes of one run in flight: stream, buffers, history

var (
	defaultRunMemory = systemMemory() / 2                             // budget for runs in flight
	defaultMaxRuns   = max(4096, int(defaultRunMemory/runMemoryCost)) // --max-runs default
)

// Limits and timeouts of the other parts, by file, so they can be audited here too.
const (
	// cassette.go
	maxCassetteFile      = 256 << 20 // cassette file read on --fake
	maxCassetteBody      = 32 << 20  // one request body through the gateway
	cassetteReplayChunk  = 256       // replayed streams are written in reads this size, flushed each
	cassetteShutdownWait = 3 * time.Second

	// providers.go: stream timeouts by API family (providerAPIs), used unless a model sets
	// first_byte_timeout / idle_timeout.
	maxModelErrorBody    = 64 << 10         // provider error bodies read for the message
	maxModelErrorMsg     = 2000             // characters of a raw (non-JSON) error body kept in messages
	chatFirstByteTimeout = 60 * time.Second // request sent → first body byte (OpenAI chat)
	chatIdleTimeout      = 120 * time.Second
	provFirstByteTimeout = 5 * time.Minute  // Responses, Anthropic, Gemini, embeddings
	provIdleTimeout      = 10 * time.Minute // long: reasoning models can be silent for minutes

	// models.go
	modelMaxRetryAfter   = 30 * time.Second // longest Retry-After we wait for
	modelBackoffBase     = 200 * time.Millisecond
	modelBackoffCap      = 2 * time.Second
	modelDefaultRetries  = 2
	modelDefaultCooldown = time.Minute

	// oci.go
	maxOCIManifest     = 4 << 20          // manifest or index body
	maxOCIBlob         = 16 << 20         // config or layer blob
	maxOCIYAML         = 4 << 20          // agent YAML after decompression (gzip bomb guard)
	maxOCIErrorBody    = 64 << 10         // registry error bodies
	maxOCITokenBody    = 1 << 20          // token endpoint answers (JWTs can be long)
	maxOCIHelperOutput = 64 << 10         // docker-credential-* stdout
	maxOCIConfigFile   = 4 << 20          // ~/.docker/config.json
	ociRequestTimeout  = 2 * time.Minute  // per HTTP request when the caller gives no client
	ociTokenDefaultTTL = 60 * time.Second // token lifetime when expires_in is absent (token spec)

	// store.go
	// storeBusyTimeoutMS is how long a statement waits for a lock held by another
	// process before failing with SQLITE_BUSY (https://sqlite.org/pragma.html#pragma_busy_timeout).
	storeBusyTimeoutMS = 5000
	// storeMaxDepth bounds sub-session nesting followed when reading or migrating, so a
	// corrupt or hostile file (a reference cycle, absurd nesting) cannot loop or blow the stack.
	storeMaxDepth = 64

	// tools.go
	toolsMaxOutput      = 30000    // shell, script, api and file-read outputs are cut here (chars)
	toolsMaxJobOutput   = 10 << 20 // a background job keeps at most this much output
	toolsMaxHTTPBody    = 1 << 20  // fetch and api read at most this much of a body
	toolsMaxReadFile    = 8 << 20  // read_file refuses larger files
	toolsMaxSearchFile  = 4 << 20  // search_files_content skips larger files
	toolsMaxSearchHits  = 1000     // search_files_content stops after this many matches
	toolsMaxListEntries = 100      // list_directory and directory_tree entry limit
	toolsShellTimeout   = 30       // default shell timeout, seconds
	toolsHTTPTimeout    = 30       // default fetch and api timeout, seconds

	// yaml.go
	maxYAMLSize   = 4 << 20 // bytes in one document
	maxYAMLDepth  = 100     // nested collections
	maxYAMLKeyLen = 1024    // characters in one mapping key (as in YAML 1.2 implicit keys)

	// mcp.go
	mcpMaxMessage     = 32 << 20         // longest stdio line / HTTP JSON body accepted
	mcpMaxErrorBody   = 4 << 10          // bytes of an HTTP error body quoted in errors
	mcpMaxPages       = 100              // tools/list pages followed before giving up
	mcpInitTimeout    = 2 * time.Minute  // initialize; covers `npx -y`/`uvx` first-run installs
	mcpRequestTimeout = time.Minute      // tools/list and other short requests
	mcpCallTimeout    = 10 * time.Minute // tools/call, including time spent in elicitation
	mcpStopGrace      = time.Second      // wait after closing stdin, then after SIGTERM
	mcpBackoffBase    = 250 * time.Millisecond
	mcpBackoffMax     = 10 * time.Second
	mcpMaxRestarts    = 5           // consecutive restarts of a dying server before giving up
	mcpHealthyUptime  = time.Minute // a server that lived this long resets the restart count
	mcpStderrKeep     = 5           // stderr lines quoted when a server dies

	// runtime.go, title.go
	flushEvery         = time.Second // persist a streaming answer at most this often
	titleTimeout       = 30 * time.Second
	titleWaitAtEnd     = 5 * time.Second        // how long a finished run waits for its title
	titleWaitForAnswer = 250 * time.Millisecond // how long a final answer's save waits for it
	maxTitleRead       = 16 << 10               // bytes of a title answer read before the stream is cut
	maxStreamDrain     = 64 << 10               // bytes of a stream read unparsed after its reader had enough
	streamDrainWait    = 100 * time.Millisecond
	maxGeneratedTitle  = 100 // bytes kept of a generated title
	maxTransferDepth   = 10

	// queue.go
	steerQueueCap        = 5    // steer messages waiting for the next iteration boundary
	followupQueueCap     = 20   // follow-up turns waiting
	maxIdempotencyKeys   = 1000 // follow-up Idempotency-Keys remembered per session
	maxIdempotencyKeyLen = 256

	// resume.go
	answerWaitForEnd = 10 * time.Second // an answer waits this long for a run ending without it (client gone)

	// runsave.go
	saveRetryFor    = 30 * time.Second // a run's failed writes are retried this long after its end
	saveBackoffBase = 250 * time.Millisecond
	saveBackoffCap  = 5 * time.Second
)

// Sentinel errors; writeError maps them to HTTP statuses in one place.
var (
	errNotFound    = errors.New("not found")
	errConflict    = errors.New("conflict")
	errInvalid     = errors.New("invalid")
	errTooManyRuns = errors.New("too many concurrent runs")
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// run executes one command line and returns the process exit code: 0 success,
// 1 failure, 2 usage error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		if len(args) < 2 || args[1] != "api" {
			fmt.Fprintln(stderr, "agentd: usage: agentd serve api SOURCE [flags]")
			return 2
		}
		opts, err := parseServeFlags(args[2:], stderr)
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stdout, usage)
			return 0
		}
		if err != nil {
			fmt.Fprintf(stderr, "agentd: %v\n", err)
			return 2
		}
		if err := serve(ctx, opts, stdout, stderr); err != nil {
			fmt.Fprintf(stderr, "agentd: %v\n", err)
			return 1
		}
		return 0
	case "yaml":
		return cmdYAML(args[1:], stdout, stderr)
	case "pull":
		return cmdPull(ctx, args[1:], stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "agentd", version)
		return 0
	case "-h", "--help", "help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "agentd: unknown command %q\n%s", args[0], usage)
	return 2
}

const usage = `usage:
  agentd serve api SOURCE [flags]   serve the agents of SOURCE (file, directory or OCI ref)
  agentd yaml FILE                  print a YAML file as JSON
  agentd pull REF                   download an agent from a registry into the cache
  agentd version                    print the version
Run 'agentd serve api -h' for the serve flags.
`

// serveOptions is the parsed command line of `serve api`.
type serveOptions struct {
	source           string
	listen           string
	sessionDB        string
	workingDir       string
	envFiles         []string
	pullInterval     time.Duration
	cacheDir         string
	fake, record     string
	modelsGateway    string // --models-gateway: every model request goes through it
	codeMode         bool   // --code-mode-tools: accepted and warned about
	authTokenFile    string
	insecureNoAuth   bool
	allowedHosts     []string
	corsOrigins      []string
	maxRuns          int
	maxRequestSize   int64
	historyCacheMB   int
	eventRetention   int // --event-log-retention: events kept per session, 0 = no event log
	debug            bool
	mcpOAuthRedirect string // --mcp-oauth-redirect-uri: agentd drives MCP OAuth flows

	readHeaderTimeout time.Duration // tests shorten it
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string     { return strings.Join(*l, ",") }
func (l *stringList) Set(v string) error { *l = append(*l, v); return nil }

// parseServeFlags parses the flags of `serve api`, which may come before or after the
// one positional SOURCE.
func parseServeFlags(args []string, stderr io.Writer) (*serveOptions, error) {
	o := &serveOptions{}
	fs := flag.NewFlagSet("serve api", flag.ContinueOnError)
	fs.SetOutput(stderr)
	for _, n := range []string{"l", "listen"} {
		fs.StringVar(&o.listen, n, "127.0.0.1:8080", "listen address")
	}
	for _, n := range []string{"s", "session-db"} {
		fs.StringVar(&o.sessionDB, n, "", "session database")
	}
	for _, n := range []string{"d", "debug"} {
		fs.BoolVar(&o.debug, n, false, "debug logging")
	}
	fs.StringVar(&o.workingDir, "working-dir", "", "working directory")
	fs.Var((*stringList)(&o.envFiles), "env-from-file", "env file (repeatable)")
	pull := fs.String("pull-interval", "0", "OCI refresh interval (minutes or duration)")
	fs.StringVar(&o.cacheDir, "cache-dir", "", "OCI cache directory")
	fs.StringVar(&o.fake, "fake", "", "replay cassette")
	fs.StringVar(&o.record, "record", "", "record cassette")
	fs.StringVar(&o.modelsGateway, "models-gateway", "", "models gateway URL")
	fs.BoolVar(&o.codeMode, "code-mode-tools", false, "code mode (not supported; warned about)")
	fs.StringVar(&o.authTokenFile, "auth-token-file", "", "bearer token file")
	fs.BoolVar(&o.insecureNoAuth, "insecure-no-auth", false, "allow non-loopback without auth")
	fs.Var((*stringList)(&o.allowedHosts), "allowed-host", "extra allowed Host (repeatable)")
	fs.Var((*stringList)(&o.corsOrigins), "cors-origin", "allowed CORS origin (repeatable)")
	fs.IntVar(&o.maxRuns, "max-runs", defaultMaxRuns, "concurrent runs")
	fs.Int64Var(&o.maxRequestSize, "max-request-size", maxRunBody, "largest run request body in bytes (0 or less = the default)")
	fs.IntVar(&o.historyCacheMB, "history-cache-mb", historyCacheBytes>>20, "MiB of decoded session histories kept in memory (0 = none)")
	fs.StringVar(&o.mcpOAuthRedirect, "mcp-oauth-redirect-uri", "", "OAuth redirect_uri for remote MCP servers")
	fs.IntVar(&o.eventRetention, "event-log-retention", defaultEventRetention, "events kept per session for GET …/events (0 = no event log)")
	fs.Usage = func() {}

	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
	switch {
	case len(positional) == 0:
		return nil, errors.New("missing SOURCE: agentd serve api <agent.yaml | dir | oci-ref> [flags]")
	case len(positional) > 1:
		return nil, fmt.Errorf("exactly one SOURCE expected, got %q", positional)
	}
	o.source = positional[0]
	d, err := parseInterval(*pull)
	if err != nil {
		return nil, fmt.Errorf("--pull-interval: %v", err)
	}
	o.pullInterval = d
	if o.fake != "" && o.record != "" {
		return nil, errors.New("--fake and --record cannot be used together")
	}
	if o.modelsGateway != "" && (o.fake != "" || o.record != "") {
		return nil, errors.New("--models-gateway cannot be used with --fake or --record (they run their own gateway)")
	}
	if o.maxRuns < 1 {
		return nil, errors.New("--max-runs must be at least 1")
	}
	if err := checkRedirectURI(o.mcpOAuthRedirect); err != nil {
		return nil, err
	}
	if o.historyCacheMB < 0 {
		return nil, errors.New("--history-cache-mb must not be negative")
	}
	if o.eventRetention < 0 {
		return nil, errors.New("--event-log-retention must not be negative")
	}
	return o, nil
}

// parseInterval reads --pull-interval: whole minutes as the reference, or a Go duration.
func parseInterval(s string) (time.Duration, error) {
	if n, err := strconv.Atoi(s); err == nil && strconv.Itoa(n) == s {
		if n < 0 {
			return 0, errors.New("must not be negative")
		}
		return time.Duration(n) * time.Minute, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%q is neither minutes nor a duration such as 30s", s)
	}
	return d, nil
}

// serve runs the API server until ctx is cancelled, then shuts down gracefully: stop
// accepting, end open streams, close the database.
// tuneGC collects less often unless GOGC is set: a run makes short-lived garbage (a
// JSON value per streamed token), and GOGC=400 trades a few MiB of heap for about a
// fifth of the CPU under load. It reports whether the server should also bound the
// heap with its soft memory limit (neither GOGC nor GOMEMLIMIT set).
func tuneGC() bool {
	if os.Getenv("GOGC") != "" {
		return false
	}
	debug.SetGCPercent(400)
	return os.Getenv("GOMEMLIMIT") == ""
}

func serve(ctx context.Context, o *serveOptions, stdout, stderr io.Writer) error {
	boundGC := tuneGC()
	level := slog.LevelInfo
	if o.debug {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	root, err := resolveWorkingDir(o.workingDir)
	if err != nil {
		return err
	}
	getenv, err := loadEnv(root, o.envFiles)
	if err != nil {
		return err
	}
	token, err := loadAuthToken(o.authTokenFile, getenv)
	if err != nil {
		return err
	}
	if token == "" && !o.insecureNoAuth && !isLoopbackListen(o.listen) {
		return fmt.Errorf("refusing to listen on %s without authentication: set --auth-token-file or AGENTD_AUTH_TOKEN, or pass --insecure-no-auth", o.listen)
	}

	cenv := clientEnv{HTTP: newOutboundClient(), Getenv: getenv}
	dbPath := sessionDBPath(root, o.sessionDB)
	if within(root, dbPath) {
		log.Warn("the session database is inside --working-dir: file tools are denied it, but shell commands can read it; move it or pass --session-db", "path", dbPath)
	}
	st, err := openStoreLog(ctx, dbPath, log)
	if err != nil {
		return fmt.Errorf("session database: %w", err)
	}
	defer st.Close()
	st.history = newHistoryCache(int64(o.historyCacheMB) << 20)
	procs := newProcGroups(st, log)
	procs.reap(ctx)
	oauth := newMCPOAuth(st, cenv.HTTP, o.mcpOAuthRedirect, log)

	srcs, err := newAgentSources(ctx, o.source, sourceOptions{
		root: root, pullInterval: o.pullInterval, cacheDir: o.cacheDir, getenv: getenv, log: log, http: cenv.HTTP, procs: procs,
		codeMode: o.codeMode, mcpOAuth: oauth,
	})
	if err != nil {
		return err
	}
	defer srcs.close()

	closeGateway, err := startGateway(o, root, getenv, log, srcs, &cenv)
	if err != nil {
		return err
	}
	defer closeGateway()

	s, err := newServer(st, srcs, log, serverConfig{
		root: root, getenv: getenv, clientEnv: cenv, token: token,
		allowedHosts: o.allowedHosts, corsOrigins: o.corsOrigins, maxRuns: o.maxRuns, maxRunBody: o.maxRequestSize,
		protected: serverSecrets(root, dbPath, o, srcs), mcpOAuth: oauth, eventRetention: cmp.Or(o.eventRetention, -1),
	})
	if err != nil {
		return err
	}
	defer s.close()
	if boundGC {
		s.runs.boundGC = true
		defer debug.SetMemoryLimit(math.MaxInt64)
	}

	ln, addr, err := listen(o.listen)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: cmp.Or(o.readHeaderTimeout, readHeaderTimeout),
		IdleTimeout:       idleTimeout,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	srv.RegisterOnShutdown(s.shutdown)
	fmt.Fprintf(stdout, "Listening on %s\n", addr)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return nil
}

// sessionDBPath is --session-db resolved against the root. Without the flag it is
// session.db in the user's config dir, outside every session's working directory —
// unless the root already holds the reference's default ./session.db, which keeps
// being used so no conversation is lost. With no config dir (no $HOME) it is that
// ./session.db too.
func sessionDBPath(root, flag string) string {
	if flag != "" {
		return absPath(root, expandHome(flag))
	}
	legacy := filepath.Join(root, "session.db")
	if _, err := os.Stat(legacy); err == nil {
		return legacy
	}
	if d, err := os.UserConfigDir(); err == nil {
		return filepath.Join(d, "agentd", "session.db")
	}
	return legacy
}

// serverSecrets lists the files holding the server's secrets, which file tools refuse
// even when they lie inside a session's working directory (protected.go).
func serverSecrets(root, dbPath string, o *serveOptions, srcs *agentSources) *protectedFiles {
	var files, dirs []string
	for _, suffix := range storeSuffixes {
		files = append(files, dbPath+suffix)
	}
	for _, f := range o.envFiles {
		files = append(files, absPath(root, expandHome(f)))
	}
	if o.authTokenFile != "" {
		if p, err := filepath.Abs(expandHome(o.authTokenFile)); err == nil {
			files = append(files, p)
		}
	}
	switch srcs.kind {
	case "file":
		files = append(files, srcs.path)
	case "dir":
		dirs = append(dirs, srcs.path)
	}
	return newProtectedFiles(files, dirs)
}

// resolveWorkingDir returns the absolute server root: --working-dir or the cwd.
func resolveWorkingDir(dir string) (string, error) {
	if dir == "" {
		return os.Getwd()
	}
	abs, err := filepath.Abs(expandHome(dir))
	if err != nil {
		return "", err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return "", fmt.Errorf("--working-dir: %w", err)
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("--working-dir: %s is not a directory", abs)
	}
	return abs, nil
}

// absPath resolves p against root unless it is already absolute.
func absPath(root, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(root, p)
}

// expandHome replaces a leading ~ with the user's home directory.
func expandHome(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		if home, err := os.UserHomeDir(); err == nil {
			return filepath.Join(home, p[1:])
		}
	}
	return p
}

// loadEnv returns a lookup over the process environment with the env files merged
// over it (later files win). Files are KEY=VALUE lines; # comments; quotes stripped.
func loadEnv(root string, files []string) (func(string) string, error) {
	vars := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(absPath(root, expandHome(f)))
		if err != nil {
			return nil, fmt.Errorf("--env-from-file: %w", err)
		}
		for i, line := range strings.Split(string(b), "\n") {
			line = strings.TrimSpace(line)
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			k, v, ok := strings.Cut(strings.TrimPrefix(line, "export "), "=")
			if !ok || strings.TrimSpace(k) == "" {
				return nil, fmt.Errorf("--env-from-file %s:%d: want KEY=VALUE", f, i+1)
			}
			v = strings.TrimSpace(v)
			if len(v) >= 2 && (v[0] == '"' && v[len(v)-1] == '"' || v[0] == '\'' && v[len(v)-1] == '\'') {
				v = v[1 : len(v)-1]
			}
			vars[strings.TrimSpace(k)] = v
		}
	}
	return func(k string) string {
		if v, ok := vars[k]; ok {
			return v
		}
		return os.Getenv(k)
	}, nil
}

// listen opens the listener: unix:///path (socket 0600, an existing non-socket is
// never removed) or a TCP host:port (IPv4 or IPv6).
func listen(addr string) (net.Listener, string, error) {
	if path, ok := strings.CutPrefix(addr, "unix://"); ok {
		if fi, err := os.Lstat(path); err == nil {
			if fi.Mode()&os.ModeSocket == 0 {
				return nil, "", fmt.Errorf("listen %s: a file that is not a socket is in the way", addr)
			}
			os.Remove(path) // a stale socket from an earlier run
		}
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, "", err
		}
		// The socket is created with the process umask; tighten it before anyone can
		// connect by creating it under a restrictive umask.
		old := syscall.Umask(0o177)
		ln, err := net.Listen("unix", path)
		syscall.Umask(old)
		if err != nil {
			return nil, "", err
		}
		return ln, addr, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, "", err
	}
	return ln, ln.Addr().String(), nil
}

// isLoopbackListen reports whether addr only accepts local connections.
func isLoopbackListen(addr string) bool {
	if strings.HasPrefix(addr, "unix://") {
		return true
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// loadAuthToken reads the bearer token from --auth-token-file or $AGENTD_AUTH_TOKEN.
func loadAuthToken(file string, getenv func(string) string) (string, error) {
	if file == "" {
		return strings.TrimSpace(getenv("AGENTD_AUTH_TOKEN")), nil
	}
	b, err := os.ReadFile(expandHome(file))
	if err != nil {
		return "", fmt.Errorf("--auth-token-file: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", errors.New("--auth-token-file: file is empty")
	}
	return tok, nil
}

// newOutboundClient is the HTTP client for model providers, tools and registries. It
// keeps enough idle connections per host for many concurrent runs against one provider
// (the default keeps 2, which forces a new connection per request under load), and
// leaves compression to the caller because transparent gzip breaks SSE streaming.
func newOutboundClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.MaxIdleConns = 512
	t.MaxIdleConnsPerHost = 256
	t.DisableCompression = true
	return &http.Client{Transport: t, CheckRedirect: checkRedirect}
}

// systemMemory is the memory this process may use: the smallest of the machine's
// memory, the cgroup (v2) limit and GOMEMLIMIT; 4 GiB when none can be read.
func systemMemory() int64 {
	limit := int64(math.MaxInt64)
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if kb, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				if n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(kb), "kB")), 10, 64); err == nil {
					limit = n << 10
				}
			}
		}
	}
	if b, err := os.ReadFile("/sys/fs/cgroup/memory.max"); err == nil {
		if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil { // "max" = none
			limit = min(limit, n)
		}
	}
	limit = min(limit, debug.SetMemoryLimit(-1)) // MaxInt64 unless GOMEMLIMIT is set
	if limit == math.MaxInt64 || limit <= 0 {
		return 4 << 30
	}
	return limit
}

// startGateway points cenv at the gateway model requests go through: the cassette
// gateway of --fake/--record (started here; the returned func stops it), else
// --models-gateway or its environment variables, else none. --code-mode-tools, the
// reference's other model-traffic flag, is logged here as not acted on.
func startGateway(o *serveOptions, root string, getenv func(string) string, log *slog.Logger, srcs *agentSources, cenv *clientEnv) (func(), error) {
	if o.codeMode {
		log.Warn(codeModeWarning)
	}
	if o.fake == "" && o.record == "" {
		gw, err := modelsGateway(o, getenv)
		cenv.Gateway = gw
		return func() {}, err
	}
	mode, path := "replay", o.fake
	if o.record != "" {
		mode, path = "record", o.record
	}
	cs, err := startCassetteWith(cassetteOptions{Path: absPath(root, path), Mode: mode, Getenv: getenv, Logger: log, Allow: srcs.hasBaseURL})
	if err != nil {
		return nil, err
	}
	cenv.Gateway, cenv.GatewayToken = cs.URL(), cs.Token()
	return func() { cs.Close() }, nil
}

// modelsGateway is the gateway every model request goes through: --models-gateway,
// else DOCKER_AGENT_MODELS_GATEWAY or CAGENT_MODELS_GATEWAY (as the reference), "" for
// none. --fake and --record bring their own gateway, so the variables are ignored then.
func modelsGateway(o *serveOptions, getenv func(string) string) (string, error) {
	gw := o.modelsGateway
	if gw == "" && o.fake == "" && o.record == "" {
		gw = cmp.Or(getenv("DOCKER_AGENT_MODELS_GATEWAY"), getenv("CAGENT_MODELS_GATEWAY"))
	}
	gw = strings.TrimSuffix(strings.TrimSpace(gw), "/")
	if gw == "" {
		return "", nil
	}
	if u, err := url.Parse(gw); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("models gateway %q is not an http(s) URL", redactURL(gw))
	}
	return gw, nil
}
