package main

// procs.go: the process groups of children that runs start (shell commands, background
// jobs, script tools, stdio MCP servers) are recorded in the store while they live, so
// that after a crash (kill -9, power loss of the parent only) the next start can end
// the ones still running instead of leaving them behind. Linux only (/proc); elsewhere
// recording and reaping do nothing.

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// procTagVar is set in the environment of every child we start, to a value recorded
// with its group. Descendants inherit it, and /proc/PID/environ shows it for as long as
// the process lives, so the reaper kills only processes that carry our tag: never an
// unrelated process that happens to reuse the number.
const procTagVar = "AGENTD_PROCESS_GROUP"

// procGroups records children in the store; nil records nothing.
type procGroups struct {
	st           *store
	log          *slog.Logger
	self         int   // our pid
	selfStarted  int64 // our start time (clock ticks after boot), 0 off Linux
	procReadable bool
}

func newProcGroups(st *store, log *slog.Logger) *procGroups {
	started, err := procStartTime(os.Getpid())
	return &procGroups{st: st, log: log, self: os.Getpid(), selfStarted: started, procReadable: err == nil}
}

// start starts cmd (which must be in its own process group) with our tag added to its
// environment and records its group; forget removes the record once the group is gone.
func (pg *procGroups) start(cmd *exec.Cmd, what string) (forget func(), err error) {
	if pg == nil || !pg.procReadable {
		return func() {}, cmd.Start()
	}
	tag := rand.Text()
	cmd.Env = append(cmd.Environ(), procTagVar+"="+tag)
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	pgid := cmd.Process.Pid
	started, _ := procStartTime(pgid) // 0 if it already exited: the record is then moot
	ctx := context.Background()
	if _, err := pg.st.exec(ctx, `INSERT OR REPLACE INTO agentd_process_groups
		(pgid, started, tag, owner_pid, owner_started, command, recorded_at) VALUES (?, ?, ?, ?, ?, ?, ?)`,
		pgid, started, tag, pg.self, pg.selfStarted, mcpTrim(what, 200), storeTimeText(time.Now())); err != nil {
		pg.log.Warn("cannot record a child process group; it would survive a crash", "pgid", pgid, "err", err)
		return func() {}, nil
	}
	return func() {
		if _, err := pg.st.exec(ctx, "DELETE FROM agentd_process_groups WHERE pgid = ? AND tag = ?", pgid, tag); err != nil {
			pg.log.Warn("cannot forget a child process group", "pgid", pgid, "err", err)
		}
	}, nil
}

// reap ends the recorded groups whose agentd is gone and forgets them.
// Groups of an agentd that is still running (another server on the same file) are left
// alone. It runs at start, before any run can record new groups.
func (pg *procGroups) reap(ctx context.Context) {
	if !pg.procReadable {
		return
	}
	type record struct {
		pgid, ownerPID        int
		started, ownerStarted int64
		tag, command          string
	}
	rows, err := pg.st.w.QueryContext(ctx, "SELECT pgid, started, tag, owner_pid, owner_started, command FROM agentd_process_groups")
	if err != nil {
		pg.log.Warn("cannot read the recorded child process groups", "err", err)
		return
	}
	var recs []record
	for rows.Next() {
		var r record
		if rows.Scan(&r.pgid, &r.started, &r.tag, &r.ownerPID, &r.ownerStarted, &r.command) == nil {
			recs = append(recs, r)
		}
	}
	rows.Close()
	for _, r := range recs {
		if t, err := procStartTime(r.ownerPID); err == nil && t == r.ownerStarted {
			continue // its agentd still runs (this one or another on the same file)
		}
		if n := procKillTagged(r.pgid, r.started, r.tag); n > 0 {
			pg.log.Warn("ended a process group left running by an agentd that did not shut down", "pgid", r.pgid, "processes", n, "command", r.command)
		}
		if _, err := pg.st.exec(ctx, "DELETE FROM agentd_process_groups WHERE pgid = ? AND tag = ?", r.pgid, r.tag); err != nil {
			pg.log.Warn("cannot forget a child process group", "pgid", r.pgid, "err", err)
		}
	}
}

// procKillTagged SIGKILLs the members of group pgid that carry tag in their environment
// and returns how many. If the group's leader still exists but started at another time
// than recorded, the number was reused by someone else and nothing is touched.
func procKillTagged(pgid int, started int64, tag string) int {
	if t, err := procStartTime(pgid); err == nil && started != 0 && t != started {
		return 0
	}
	dirs, _ := filepath.Glob("/proc/[0-9]*")
	want := []byte(procTagVar + "=" + tag + "\x00")
	n := 0
	for _, d := range dirs {
		pid, err := strconv.Atoi(filepath.Base(d))
		if err != nil {
			continue
		}
		if g, err := procGroupOf(pid); err != nil || g != pgid {
			continue
		}
		env, err := os.ReadFile(filepath.Join(d, "environ"))
		if err != nil || !strings.Contains("\x00"+string(env), "\x00"+string(want)) {
			continue
		}
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			n++
		}
	}
	return n
}

// procStat returns the fields of /proc/PID/stat after the command name (which may
// contain spaces and parentheses): field 3 (state) is index 0.
func procStat(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return nil, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return nil, errors.New("short /proc stat")
	}
	return f, nil
}

// procStartTime is a process's start time in clock ticks after boot (field 22): with
// the pid it identifies a process, since a reused pid starts later.
func procStartTime(pid int) (int64, error) {
	f, err := procStat(pid)
	if err != nil {
		return 0, err
	}
	return strconv.ParseInt(f[19], 10, 64)
}

// procGroupOf is a process's group id (field 5).
func procGroupOf(pid int) (int, error) {
	f, err := procStat(pid)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(f[2])
}
