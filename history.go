package main

// history.go: the decoded histories of recently used sessions, kept in memory so a run
// on a long session does not re-read and re-decode every message (issue 21: at 5,000
// messages that was three quarters of the server's CPU per run).
//
// A cached history is a prefix of the session's items in (position, id) order. Items
// are only ever appended at the end (storeAppendSQL, appendSubSession), so a read
// fetches just the rows after the prefix's last one and extends it. What can change
// inside a prefix is invalidated by the store's write methods:
//   - a message updated in place (a streaming answer) cuts the prefix before it;
//   - any write to a session drops the cached histories that embed it as a
//     sub-session (their SubSession records and SubItems are copies);
//   - a deleted session clears everything (the cascade reaches unknown descendants).
//
// Writes by other processes (the reference on the same file) are seen through
// PRAGMA data_version on the writer connection: SQLite changes it only when another
// connection commits, and the writer is the only connection of ours that writes, so a
// change means a foreign commit and the whole cache is dropped. The read pool could
// not tell: its values are per connection and also change on our own commits, which
// would drop every history on every streamed token of any run. A per-session version
// counter kept by triggers would cost a write per streamed update instead.

import (
	"container/list"
	"context"
	"slices"
	"sync"
)

// historyCacheBytes is the default budget for cached histories (--history-cache-mb).
const historyCacheBytes = 64 << 20

// historyCache is safe for concurrent use. Slices it hands out are clipped and never
// written again (the cache appends only beyond their capacity), so callers may keep
// them without locks but must not modify them.
type historyCache struct {
	mu      sync.Mutex
	max     int64
	size    int64
	lru     *list.List                 // of *historyEntry, most recently used first
	byID    map[string]*list.Element   // session id → its entry
	embeds  map[string]map[string]bool // sub-session id → ids of the entries that embed it
	loads   map[*historyLoad]bool      // reads in flight, told about writes meanwhile
	version int64                      // data_version last seen on the writer connection
}

// historyEntry is one session's cached prefix.
type historyEntry struct {
	id    string
	items []sessionItem // clipped: len == cap
	subs  []string      // sessions embedded in items, at any depth
	size  int64
}

// historyLoad is a read in flight. A write to the session, or to one it embeds, while
// it runs makes what it read unfit to cache (it may predate the write).
type historyLoad struct {
	id      string
	entry   *historyEntry // the prefix it extends; nil for a full load
	stale   bool
	touched []string // sessions written meanwhile
}

func newHistoryCache(max int64) *historyCache {
	return &historyCache{max: max, lru: list.New(), byID: map[string]*list.Element{},
		embeds: map[string]map[string]bool{}, loads: map[*historyLoad]bool{}}
}

// sync drops everything when another process committed since the last look.
func (c *historyCache) sync(ctx context.Context, st *store) error {
	var v int64
	if err := st.prepared[storeDataVersionSQL].QueryRowContext(ctx).Scan(&v); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if v != c.version {
		c.version = v
		c.clearLocked()
	}
	return nil
}

// begin registers a read of session id and returns the cached prefix to extend (nil
// when there is none).
func (c *historyCache) begin(id string) (*historyLoad, []sessionItem) {
	c.mu.Lock()
	defer c.mu.Unlock()
	l := &historyLoad{id: id}
	c.loads[l] = true
	if el := c.byID[id]; el != nil {
		c.lru.MoveToFront(el)
		l.entry = el.Value.(*historyEntry)
		return l, l.entry.items
	}
	return l, nil
}

// end unregisters l and caches prefix+more as session l.id's history unless a write
// made it stale meanwhile. It returns the whole history.
func (c *historyCache) end(l *historyLoad, prefix, more []sessionItem) []sessionItem {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.loads, l)
	subs := historySubs(more, nil)
	if l.entry != nil {
		subs = append(subs, l.entry.subs...)
	}
	el := c.byID[l.id]
	current := (l.entry == nil && el == nil) || (el != nil && el.Value.(*historyEntry) == l.entry && len(l.entry.items) == len(prefix))
	if l.stale || !current || slices.ContainsFunc(l.touched, func(id string) bool { return slices.Contains(subs, id) }) {
		return slices.Clip(slices.Concat(prefix, more))
	}
	if len(more) == 0 && l.entry != nil {
		return prefix
	}
	// Appending writes only beyond every handed-out slice's capacity.
	items := slices.Clip(append(prefix[:len(prefix):len(prefix)], more...))
	if el != nil {
		c.removeLocked(el)
	}
	e := &historyEntry{id: l.id, items: items, subs: subs, size: historySize(items)}
	if e.size > c.max {
		return items
	}
	c.byID[l.id] = c.lru.PushFront(e)
	c.size += e.size
	for _, s := range subs {
		if c.embeds[s] == nil {
			c.embeds[s] = map[string]bool{}
		}
		c.embeds[s][l.id] = true
	}
	for c.size > c.max {
		c.removeLocked(c.lru.Back())
	}
	return items
}

// abandon unregisters a read that failed.
func (c *historyCache) abandon(l *historyLoad) {
	c.mu.Lock()
	delete(c.loads, l)
	c.mu.Unlock()
}

// written is called after every write to session id (whether or not it committed):
// the histories embedding id are dropped, and reads in flight learn of it.
func (c *historyCache) written(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writtenLocked(id)
}

func (c *historyCache) writtenLocked(id string) {
	for l := range c.loads {
		l.touched = append(l.touched, id)
	}
	for owner := range c.embeds[id] {
		if el := c.byID[owner]; el != nil {
			c.removeLocked(el)
		}
	}
}

// updated is called after the message item at position pos of session id was
// changed in place: the cached prefix is cut before it, and reads in flight of the
// session are stale.
func (c *historyCache) updated(id string, pos int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writtenLocked(id)
	for l := range c.loads {
		if l.id == id {
			l.stale = true
		}
	}
	el := c.byID[id]
	if el == nil {
		return
	}
	e := el.Value.(*historyEntry)
	i, _ := slices.BinarySearchFunc(e.items, pos, func(it sessionItem, pos int) int { return it.Position - pos })
	if i == len(e.items) {
		return
	}
	c.removeLocked(el)
	if i > 0 && len(e.subs) == 0 {
		cut := &historyEntry{id: id, items: e.items[:i:i], size: historySize(e.items[:i])}
		c.byID[id] = c.lru.PushFront(cut)
		c.size += cut.size
	}
}

// clear drops everything, and makes every read in flight stale.
func (c *historyCache) clear() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.clearLocked()
}

func (c *historyCache) clearLocked() {
	for l := range c.loads {
		l.stale = true
	}
	c.lru.Init()
	clear(c.byID)
	clear(c.embeds)
	c.size = 0
}

func (c *historyCache) removeLocked(el *list.Element) {
	e := c.lru.Remove(el).(*historyEntry)
	delete(c.byID, e.id)
	c.size -= e.size
	for _, s := range e.subs {
		delete(c.embeds[s], e.id)
		if len(c.embeds[s]) == 0 {
			delete(c.embeds, s)
		}
	}
}

// historySubs appends the ids of the sessions embedded in items, at any depth.
func historySubs(items []sessionItem, out []string) []string {
	for _, it := range items {
		if it.SubSession != nil {
			out = historySubs(it.SubItems, append(out, it.SubSession.ID))
		}
	}
	return out
}

// historySize estimates the memory items hold: their text plus a fixed overhead per
// item and per part.
func historySize(items []sessionItem) int64 {
	const overhead = 256
	n := int64(0)
	for _, it := range items {
		n += overhead + int64(len(it.AgentName)+len(it.Summary))
		if m := it.Message; m != nil {
			n += int64(len(m.Content) + len(m.ReasoningContent) + len(m.ThinkingSignature) + len(m.ThoughtSignature) + len(m.CreatedAt) + len(m.ToolCallID) + len(m.Model))
			for _, p := range m.MultiContent {
				n += overhead + int64(len(p.Text))
				if p.ImageURL != nil {
					n += int64(len(p.ImageURL.URL))
				}
			}
			for _, tc := range m.ToolCalls {
				n += overhead + int64(len(tc.ID)+len(tc.Function.Name)+len(tc.Function.Arguments))
			}
			for _, d := range m.ToolDefinitions {
				n += overhead + int64(len(d.Name)+len(d.Description)+len(d.Parameters))
			}
		}
		if it.SubSession != nil {
			n += overhead + historySize(it.SubItems)
		}
	}
	return n
}
