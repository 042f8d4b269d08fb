package topic

import (
	"strings"
	"sync"
	"sync/atomic"
)

// Entry is one subscription: Filter is the full filter as given to Trie.Add (with its
// "$share/group/" prefix for a shared subscription), Key identifies the subscriber.
type Entry[K comparable, V any] struct {
	Filter string
	Key    K
	Value  V
}

// Group is one matching shared subscription group, identified by its share name and its
// inner filter. Its members are Matches.Shared[Start:End], in insertion order. Next is
// the group's own round-robin counter, kept in the trie for the group's lifetime, so a
// broker can pick a member fairly:
//
//	idx := g.Start + int((g.Next.Add(1)-1)%uint64(g.End-g.Start))
type Group struct {
	Name       string
	Start, End int
	Next       *atomic.Uint64
}

// Matches receives the result of Trie.Match. It is owned by the caller and meant to be
// reused: call Reset between uses, and Match appends without allocating once the slices
// have grown to the needed capacity. The zero value is ready to use. A Matches must not
// be used by two goroutines at once.
type Matches[K comparable, V any] struct {
	Subs   []Entry[K, V] // non-shared matches, one per matching (filter, key)
	Shared []Entry[K, V] // members of all matching shared groups, flattened
	Groups []Group       // one per matching (share name, inner filter) group

	stack []trieFrame[K, V] // scratch for Trie.Match, reused across calls
}

// Reset empties m, keeping its capacity. It clears the previous contents so m does not
// keep the previous values reachable.
func (m *Matches[K, V]) Reset() {
	clear(m.Subs)
	clear(m.Shared)
	clear(m.Groups)
	m.Subs, m.Shared, m.Groups = m.Subs[:0], m.Shared[:0], m.Groups[:0]
}

// Trie is the subscription index: it maps topic filters (wildcards and shared
// subscriptions included) to subscribers, and finds every subscription whose filter
// matches a topic name. It is safe for concurrent use. The zero value is not usable;
// call NewTrie.
type Trie[K comparable, V any] struct {
	mu    sync.RWMutex
	root  trieNode[K, V]
	count int // (filter, key) entries
	nodes int // nodes besides root, for tests of pruning
}

type trieNode[K comparable, V any] struct {
	parent   *trieNode[K, V]
	seg      string // level under parent ("+" and "#" for the wildcard children)
	children map[string]*trieNode[K, V]
	plus     *trieNode[K, V]
	hash     *trieNode[K, V]
	filter   string // the non-shared filter of subs, shared by their entries
	subs     entrySet[K, V]
	groups   []*shareGroup[K, V]
}

type shareGroup[K comparable, V any] struct {
	name    string
	filter  string // "$share/name/inner"
	members entrySet[K, V]
	next    atomic.Uint64
}

type trieFrame[K comparable, V any] struct {
	n   *trieNode[K, V]
	pos int // start of the next name level; > len(name) once every level is consumed
}

// NewTrie returns an empty Trie.
func NewTrie[K comparable, V any]() *Trie[K, V] {
	return &Trie[K, V]{}
}

// Len returns the number of (filter, key) entries, shared subscriptions included.
func (t *Trie[K, V]) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.count
}

// split separates a validated filter into its share name (if any) and the filter the
// trie is keyed on.
func split(filter string) (group, inner string, shared bool) {
	if g, in, ok, err := ParseShared(filter); ok && err == nil {
		return g, in, true
	}
	return "", filter, false
}

// Add installs the subscription of key on filter, or replaces its value if key already
// has one there; it reports whether it replaced. filter must have passed
// Limits.CheckFilter; it may be a shared subscription "$share/group/inner", which joins
// the group (group, inner) at the end of its member order.
func (t *Trie[K, V]) Add(filter string, key K, v V) (replaced bool) {
	gname, inner, shared := split(filter)
	t.mu.Lock()
	defer t.mu.Unlock()
	n := &t.root
	for rest := inner; ; {
		level, r, more := cut(rest)
		n = t.child(n, level)
		if !more {
			break
		}
		rest = r
	}
	if shared {
		var g *shareGroup[K, V]
		for _, x := range n.groups {
			if x.name == gname {
				g = x
				break
			}
		}
		if g == nil {
			g = &shareGroup[K, V]{name: gname, filter: filter}
			n.groups = append(n.groups, g)
		}
		replaced = g.members.put(Entry[K, V]{Filter: g.filter, Key: key, Value: v})
	} else {
		if n.filter == "" {
			n.filter = filter
		}
		replaced = n.subs.put(Entry[K, V]{Filter: n.filter, Key: key, Value: v})
	}
	if !replaced {
		t.count++
	}
	return replaced
}

// child returns n's child for level, creating it.
func (t *Trie[K, V]) child(n *trieNode[K, V], level string) *trieNode[K, V] {
	var c *trieNode[K, V]
	switch level {
	case "+":
		c = n.plus
	case "#":
		c = n.hash
	default:
		c = n.children[level]
	}
	if c != nil {
		return c
	}
	if level != "+" && level != "#" {
		level = strings.Clone(level) // do not pin the caller's whole filter string
	}
	c = &trieNode[K, V]{parent: n, seg: level}
	switch level {
	case "+":
		n.plus = c
	case "#":
		n.hash = c
	default:
		if n.children == nil {
			n.children = make(map[string]*trieNode[K, V])
		}
		n.children[level] = c
	}
	t.nodes++
	return c
}

// find returns the node of a filter, or nil.
func (t *Trie[K, V]) find(inner string) *trieNode[K, V] {
	n := &t.root
	for rest := inner; n != nil; {
		level, r, more := cut(rest)
		switch level {
		case "+":
			n = n.plus
		case "#":
			n = n.hash
		default:
			n = n.children[level]
		}
		if !more {
			return n
		}
		rest = r
	}
	return nil
}

// Remove deletes key's subscription on filter and reports whether there was one. Nodes
// left empty are pruned, so subscribe/unsubscribe churn does not grow the trie. The
// remaining members of a shared group keep their order.
func (t *Trie[K, V]) Remove(filter string, key K) bool {
	gname, inner, shared := split(filter)
	t.mu.Lock()
	defer t.mu.Unlock()
	n := t.find(inner)
	if n == nil {
		return false
	}
	if shared {
		gi := -1
		for i, x := range n.groups {
			if x.name == gname {
				gi = i
				break
			}
		}
		if gi < 0 || !n.groups[gi].members.remove(key, true) {
			return false
		}
		if len(n.groups[gi].members.list) == 0 {
			last := len(n.groups) - 1
			n.groups[gi] = n.groups[last]
			n.groups[last] = nil
			n.groups = n.groups[:last]
			if len(n.groups) == 0 {
				n.groups = nil
			}
		}
	} else {
		if !n.subs.remove(key, false) {
			return false
		}
		if len(n.subs.list) == 0 {
			n.filter = ""
		}
	}
	t.count--
	t.prune(n)
	return true
}

// prune detaches empty nodes from n up towards the root.
func (t *Trie[K, V]) prune(n *trieNode[K, V]) {
	for n != &t.root && len(n.subs.list) == 0 && len(n.groups) == 0 &&
		len(n.children) == 0 && n.plus == nil && n.hash == nil {
		p := n.parent
		switch n.seg {
		case "+":
			p.plus = nil
		case "#":
			p.hash = nil
		default:
			delete(p.children, n.seg)
			if len(p.children) == 0 {
				p.children = nil // a map never shrinks; drop it
			}
		}
		n.parent = nil
		t.nodes--
		n = p
	}
}

// Match appends to m every subscription whose filter matches the topic name: non-shared
// ones to m.Subs, and for every matching shared group its members to m.Shared and the
// group to m.Groups. It does not Reset m. A filter starting with a wildcard does not
// match a name starting with '$' ([MQTT-4.7.2-1]). Once m's slices have the capacity,
// Match does not allocate. The walk uses an explicit stack whose height is bounded by the
// depth of the trie, whatever the number of levels in name.
func (t *Trie[K, V]) Match(name string, m *Matches[K, V]) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	dollar := len(name) > 0 && name[0] == '$'
	stack := append(m.stack[:0], trieFrame[K, V]{n: &t.root})
	high := 1
	for len(stack) > 0 {
		f := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		n := f.n
		if f.pos > len(name) {
			// Every level consumed: n's own filter matches, and so does n/# (parent rule).
			collect(n, m)
			if n.hash != nil {
				collect(n.hash, m)
			}
			continue
		}
		wild := f.pos != 0 || !dollar // [MQTT-4.7.2-1]
		if wild && n.hash != nil {
			collect(n.hash, m)
		}
		var level string
		next := len(name) + 1
		if i := strings.IndexByte(name[f.pos:], '/'); i >= 0 {
			level, next = name[f.pos:f.pos+i], f.pos+i+1
		} else {
			level = name[f.pos:]
		}
		if c := n.children[level]; c != nil {
			stack = append(stack, trieFrame[K, V]{n: c, pos: next})
		}
		if wild && n.plus != nil {
			stack = append(stack, trieFrame[K, V]{n: n.plus, pos: next})
		}
		high = max(high, len(stack))
	}
	clear(stack[:high]) // do not keep nodes reachable from m
	m.stack = stack[:0]
}

func collect[K comparable, V any](n *trieNode[K, V], m *Matches[K, V]) {
	m.Subs = append(m.Subs, n.subs.list...)
	for _, g := range n.groups {
		start := len(m.Shared)
		m.Shared = append(m.Shared, g.members.list...)
		m.Groups = append(m.Groups, Group{Name: g.name, Start: start, End: len(m.Shared), Next: &g.next})
	}
}

// indexAt is the size from which an entrySet keeps a key index; below it a linear scan
// is cheaper than a map.
const indexAt = 16

// entrySet is a list of entries with distinct keys, indexed by key once it is large.
type entrySet[K comparable, V any] struct {
	list  []Entry[K, V]
	index map[K]int
}

func (s *entrySet[K, V]) find(key K) int {
	if s.index != nil {
		if i, ok := s.index[key]; ok {
			return i
		}
		return -1
	}
	for i := range s.list {
		if s.list[i].Key == key {
			return i
		}
	}
	return -1
}

// put replaces the value of e.Key in place, or appends e.
func (s *entrySet[K, V]) put(e Entry[K, V]) (replaced bool) {
	if i := s.find(e.Key); i >= 0 {
		s.list[i].Value = e.Value
		return true
	}
	s.list = append(s.list, e)
	if s.index != nil {
		s.index[e.Key] = len(s.list) - 1
	} else if len(s.list) > indexAt {
		s.index = make(map[K]int, len(s.list))
		for i := range s.list {
			s.index[s.list[i].Key] = i
		}
	}
	return false
}

// remove deletes key; ordered keeps the order of the others (O(n)), otherwise the last
// entry moves into the hole (O(1)).
func (s *entrySet[K, V]) remove(key K, ordered bool) bool {
	i := s.find(key)
	if i < 0 {
		return false
	}
	last := len(s.list) - 1
	if ordered {
		copy(s.list[i:], s.list[i+1:])
	} else {
		s.list[i] = s.list[last]
	}
	var zero Entry[K, V]
	s.list[last] = zero
	s.list = s.list[:last]
	switch {
	case len(s.list) == 0:
		s.list, s.index = nil, nil
	case len(s.list) <= indexAt/2:
		s.index = nil
	case s.index != nil:
		delete(s.index, key)
		if ordered {
			for j := i; j < len(s.list); j++ {
				s.index[s.list[j].Key] = j
			}
		} else if i < len(s.list) {
			s.index[s.list[i].Key] = i
		}
	}
	return true
}
