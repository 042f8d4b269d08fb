package topic

import (
	"strings"
	"sync"
)

// Retain is one retained message returned by Retained.Match.
type Retain[V any] struct {
	Name  string
	Value V
}

// Retained is the retained-message store: at most one value per topic name, kept in a
// trie of topic levels so that a subscription's filter finds its retained messages by
// walking only the matching subtrees. It is safe for concurrent use. The zero value is
// not usable; call NewRetained.
type Retained[V any] struct {
	mu    sync.RWMutex
	root  retainNode[V]
	count int
	nodes int // nodes besides root, for tests of pruning
}

type retainNode[V any] struct {
	parent   *retainNode[V]
	seg      string
	children map[string]*retainNode[V] // lookup by level
	kids     []*retainNode[V]          // the same children, for iteration with a cursor
	idx      int                       // position in parent.kids
	has      bool
	name     string
	value    V
}

// Frame modes of Retained.Match.
const (
	visit    = iota // match the filter level at pos against n's children
	iterPlus        // visit each child of n at the next filter level ("+")
	iterAll         // collect each child of n and its whole subtree ("#")
)

type retainFrame[V any] struct {
	n    *retainNode[V]
	pos  int   // start of the filter level to match; > len(filter) once all are consumed
	i    int   // cursor into n.kids for the iterating modes
	mode uint8 // visit, iterPlus or iterAll
	skip bool  // skip children whose level starts with '$' (first level only)
}

// NewRetained returns an empty store.
func NewRetained[V any]() *Retained[V] {
	return &Retained[V]{}
}

// Len returns the number of retained messages.
func (r *Retained[V]) Len() int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.count
}

// find returns the node of name, or nil.
func (r *Retained[V]) find(name string) *retainNode[V] {
	n := &r.root
	for rest := name; n != nil; {
		level, next, more := cut(rest)
		n = n.children[level]
		if !more {
			return n
		}
		rest = next
	}
	return nil
}

// Set stores v as the retained message of the topic name (which must have passed
// Limits.CheckName), replacing any previous one.
func (r *Retained[V]) Set(name string, v V) {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := &r.root
	for rest := name; ; {
		level, next, more := cut(rest)
		c := n.children[level]
		if c == nil {
			level = strings.Clone(level) // do not pin the caller's whole name
			c = &retainNode[V]{parent: n, seg: level, idx: len(n.kids)}
			if n.children == nil {
				n.children = make(map[string]*retainNode[V])
			}
			n.children[level] = c
			n.kids = append(n.kids, c)
			r.nodes++
		}
		n = c
		if !more {
			break
		}
		rest = next
	}
	if !n.has {
		r.count++
		n.has = true
		n.name = strings.Clone(name)
	}
	n.value = v
}

// Get returns the retained message of the topic name.
func (r *Retained[V]) Get(name string) (V, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if n := r.find(name); n != nil && n.has {
		return n.value, true
	}
	var zero V
	return zero, false
}

// Delete removes the retained message of the topic name and reports whether there was
// one. Nodes left empty are pruned.
func (r *Retained[V]) Delete(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := r.find(name)
	if n == nil || !n.has {
		return false
	}
	var zero V
	n.has, n.name, n.value = false, "", zero
	r.count--
	for n != &r.root && !n.has && len(n.children) == 0 {
		p := n.parent
		delete(p.children, n.seg)
		last := len(p.kids) - 1
		p.kids[n.idx] = p.kids[last]
		p.kids[n.idx].idx = n.idx
		p.kids[last] = nil
		p.kids = p.kids[:last]
		if last == 0 {
			p.children, p.kids = nil, nil // a map never shrinks; drop it
		}
		n.parent = nil
		r.nodes--
		n = p
	}
	return true
}

// Match appends to dst the retained messages whose topic name matches filter (a valid,
// non-shared filter; pass the inner filter of a shared subscription) and returns the
// extended slice, in no particular order. Wildcards in the first level do not match
// names starting with '$' ([MQTT-4.7.2-1]). The walk visits only the subtrees the filter
// can match (all of them below a "#"). It uses an explicit stack of at most two frames
// per level, whatever the fan-out, so it allocates only when dst must grow or when a
// walk goes deeper than 32 levels.
func (r *Retained[V]) Match(filter string, dst []Retain[V]) []Retain[V] {
	if filter == "" {
		return dst
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	var buf [64]retainFrame[V]
	stack := append(buf[:0], retainFrame[V]{n: &r.root})
	for len(stack) > 0 {
		top := &stack[len(stack)-1]
		n := top.n
		if top.mode != visit {
			if top.i == len(n.kids) {
				stack = stack[:len(stack)-1]
				continue
			}
			c := n.kids[top.i]
			top.i++
			if top.skip && strings.HasPrefix(c.seg, "$") {
				continue // [MQTT-4.7.2-1]
			}
			if top.mode == iterPlus {
				stack = append(stack, retainFrame[V]{n: c, pos: top.pos})
				continue
			}
			if c.has {
				dst = append(dst, Retain[V]{Name: c.name, Value: c.value})
			}
			if len(c.kids) > 0 {
				stack = append(stack, retainFrame[V]{n: c, mode: iterAll})
			}
			continue
		}
		pos := top.pos
		stack = stack[:len(stack)-1]
		if pos > len(filter) {
			if n.has {
				dst = append(dst, Retain[V]{Name: n.name, Value: n.value})
			}
			continue
		}
		var level string
		next := len(filter) + 1
		if i := strings.IndexByte(filter[pos:], '/'); i >= 0 {
			level, next = filter[pos:pos+i], pos+i+1
		} else {
			level = filter[pos:]
		}
		switch level {
		case "#":
			if n.has { // "a/#" matches "a"
				dst = append(dst, Retain[V]{Name: n.name, Value: n.value})
			}
			if len(n.kids) > 0 {
				stack = append(stack, retainFrame[V]{n: n, mode: iterAll, skip: pos == 0})
			}
		case "+":
			if len(n.kids) > 0 {
				stack = append(stack, retainFrame[V]{n: n, pos: next, mode: iterPlus, skip: pos == 0})
			}
		default:
			if c := n.children[level]; c != nil {
				stack = append(stack, retainFrame[V]{n: c, pos: next})
			}
		}
	}
	return dst
}
