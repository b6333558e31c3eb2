package main

// title.go: the title of an untitled session, generated from its first messages by
// the agent's model while the run streams, and handed to the run so that it is
// stored with the answer (one commit) or, failing that, on its own.

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// titleSlot hands a generated title to the run while a root turn streams, so the
// title is stored in the same transaction as that turn's answer and usage (issue 21:
// fewer writes per run). Outside a turn the title generator stores it itself. A nil
// slot (no title being generated) has nothing to hand over.
type titleSlot struct {
	mu      sync.Mutex
	isOpen  bool
	title   string
	offered chan struct{} // closed by the first offer taken
}

func newTitleSlot() *titleSlot { return &titleSlot{offered: make(chan struct{})} }

// open starts a turn that takes a title offered before it ends.
func (ts *titleSlot) open() {
	if ts == nil {
		return
	}
	ts.mu.Lock()
	ts.isOpen = true
	ts.mu.Unlock()
}

// offer leaves t for the turn streaming now; false when none is.
func (ts *titleSlot) offer(t string) bool {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if !ts.isOpen {
		return false
	}
	select {
	case <-ts.offered:
	default:
		close(ts.offered)
	}
	ts.title = t
	return true
}

// take ends the turn's window and returns the title offered in it, if any.
func (ts *titleSlot) take() string {
	if ts == nil {
		return ""
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	t := ts.title
	ts.isOpen, ts.title = false, ""
	return t
}

// awaitTitle waits briefly for a title still being generated, before a final answer
// is saved: the title then shares the answer's commit instead of taking one of its
// own, and the run would wait for it before it ends anyway. The wait is short so
// the answer is not left unsaved for long.
func (rn *runner) awaitTitle(ctx context.Context) {
	if rn.titleDone == nil {
		return
	}
	t := time.NewTimer(titleWaitForAnswer)
	defer t.Stop()
	select {
	case <-rn.titles.offered:
	case <-rn.titleDone:
	case <-t.C:
	case <-ctx.Done():
	}
}

// generateTitle asks the agent's model (chain) for a short title, once, with a
// timeout and no effect on the run: failures are only logged. PATCH …/title wins.
func (rn *runner) generateTitle(ctx context.Context, chain *modelChain, contents []string) {
	defer close(rn.titleDone)
	defer func() {
		if v := recover(); v != nil {
			rn.s.log.Error("title generation panicked", "panic", fmt.Sprint(v))
		}
	}()
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), titleTimeout)
	defer cancel()
	var prompt strings.Builder
	prompt.WriteString("Based on the following message(s) a user sent to an AI assistant, generate a concise, descriptive title for the conversation (at most 50 characters):\n\n")
	for i, c := range contents {
		fmt.Fprintf(&prompt, "%d. %s\n", i+1, c)
	}
	req := &modelRequest{MaxTokens: 20, NoTools: true, Messages: []chatMessage{
		{Role: "system", Content: "You are a helpful AI assistant that generates concise, descriptive titles for conversations. Answer with the title only, on a single line."},
		{Role: "user", Content: prompt.String()},
	}}
	// Only the first line is used: once it is known it goes to the run at once, and the
	// rest of the stream is drained unparsed (withEnough), so a server that ignores
	// max_tokens costs neither the parsing (about a sixth of a run's CPU) nor a new
	// connection. A run of blanks is cut after maxTitleRead.
	sctx, stop := context.WithCancel(ctx)
	defer stop()
	sctx, enough := withEnough(sctx)
	var out strings.Builder
	var title string
	known, handed := false, false
	handOver := func() bool { // false when the title is to be stored here
		title = firstLine(out.String(), maxGeneratedTitle)
		return title == "" || rn.titles.offer(title) // none, or the run stores it with its answer
	}
	_, err := chain.stream(sctx, req, func(ev modelEvent) {
		if ev.Kind != evText || known || sctx.Err() != nil {
			return
		}
		out.WriteString(ev.Text)
		if known = titleKnown(out.String(), maxGeneratedTitle); known {
			handed = handOver()
			enough()
		} else if out.Len() > maxTitleRead {
			stop()
		}
	}, nil)
	if !known {
		if err != nil && sctx.Err() == nil {
			rn.s.log.Debug("title generation failed", "session", rn.root.ID, "err", err)
			return
		}
		handed = handOver()
	}
	if !handed {
		rn.storeTitle(ctx, title)
	}
}

// storeTitle stores a generated title on its own and announces it.
func (rn *runner) storeTitle(ctx context.Context, title string) {
	_, err := rn.withTitle(title, func(t string) (bool, error) {
		return rn.s.st.setTitleIfEmpty(ctx, rn.root.ID, t)
	})
	if err != nil {
		rn.s.log.Warn("storing the generated title failed", "session", rn.root.ID, "err", err)
	}
}

// withTitle runs write, which stores its argument as the title if the session has
// none ("" for no title) and reports whether it did, and announces a title stored.
// A title set meanwhile by PATCH …/title wins, whether it reached the run state or
// only the store: the run state's lock is held across the write.
func (rn *runner) withTitle(title string, write func(string) (bool, error)) (bool, error) {
	if title == "" {
		return write("")
	}
	wrote := false
	set, err := rn.rs.setTitleIfUntitled(title, func() (bool, error) { wrote = true; return write(title) })
	if !wrote {
		set, err = write("")
	}
	if set {
		rn.sink.send(sessionTitleEvent(rn.root.ID, title))
	}
	return set, err
}

// titleKnown reports whether more text could not change firstLine(s, max): the first
// non-blank line has ended, or is already longer than max.
func titleKnown(s string, max int) bool {
	s = strings.TrimLeftFunc(strings.ReplaceAll(s, "\r", ""), unicode.IsSpace)
	return strings.IndexByte(s, '\n') >= 0 || len(strings.TrimRightFunc(s, unicode.IsSpace)) > max
}

// firstLine is the first non-blank line of s, trimmed, cut to at most max bytes at a
// word (or rune) boundary.
func firstLine(s string, max int) string {
	for _, line := range strings.Split(strings.ReplaceAll(s, "\r", ""), "\n") {
		t := strings.TrimSpace(line)
		if t == "" {
			continue
		}
		if len(t) <= max {
			return t
		}
		cut := max
		for cut > 0 && !utf8.RuneStart(t[cut]) {
			cut--
		}
		if sp := strings.LastIndexByte(t[:cut], ' '); sp > max/2 {
			cut = sp
		}
		return strings.TrimSpace(t[:cut])
	}
	return ""
}
