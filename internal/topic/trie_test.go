package topic

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
)

// subKeys renders m.Subs as sorted "filter|key" strings.
func subKeys[V any](m *Matches[string, V]) []string {
	var out []string
	for _, e := range m.Subs {
		out = append(out, e.Filter+"|"+e.Key)
	}
	slices.Sort(out)
	return out
}

// groupKeys renders m.Groups as sorted "name|filter|k1,k2" strings (members in order).
func groupKeys[V any](t *testing.T, m *Matches[string, V]) []string {
	t.Helper()
	var out []string
	for _, g := range m.Groups {
		if g.Start >= g.End || g.End > len(m.Shared) || g.Next == nil {
			t.Fatalf("bad group %+v (len(Shared) = %d)", g, len(m.Shared))
		}
		var keys []string
		for _, e := range m.Shared[g.Start:g.End] {
			keys = append(keys, e.Key)
			if _, inner, _, _ := ParseShared(e.Filter); !strings.HasPrefix(e.Filter, "$share/"+g.Name+"/") || inner == "" {
				t.Fatalf("member filter %q not in group %q", e.Filter, g.Name)
			}
		}
		out = append(out, m.Shared[g.Start].Filter+"|"+strings.Join(keys, ","))
	}
	slices.Sort(out)
	return out
}

func nodeCount[K comparable, V any](tr *Trie[K, V]) int {
	tr.mu.RLock()
	defer tr.mu.RUnlock()
	return tr.nodes
}

func TestTrieAddReplaceRemove(t *testing.T) {
	tr := NewTrie[string, int]()
	subs := []struct {
		filter, key string
	}{
		{"a/b", "c1"}, {"a/+", "c1"}, {"a/#", "c2"}, {"#", "c3"}, {"+/b", "c4"},
		{"a/b", "c2"}, {"x/y/z", "c1"}, {"$SYS/#", "c5"}, {"+/+/+", "c6"},
	}
	for i, s := range subs {
		if replaced := tr.Add(s.filter, s.key, i); replaced {
			t.Errorf("Add(%q, %q) replaced = true, want false", s.filter, s.key)
		}
	}
	if got := tr.Add("a/b", "c1", 100); !got {
		t.Errorf("Add(%q, %q) again replaced = false, want true", "a/b", "c1")
	}
	if got, want := tr.Len(), len(subs); got != want {
		t.Errorf("Len() = %d, want %d", got, want)
	}

	tests := []struct {
		name string
		want []string
	}{
		{"a/b", []string{"#|c3", "+/b|c4", "a/#|c2", "a/+|c1", "a/b|c1", "a/b|c2"}},
		{"a", []string{"#|c3", "a/#|c2"}},
		{"a/c", []string{"#|c3", "a/#|c2", "a/+|c1"}},
		{"x/y/z", []string{"#|c3", "+/+/+|c6", "x/y/z|c1"}},
		{"$SYS/x", []string{"$SYS/#|c5"}},
		{"$SYS", []string{"$SYS/#|c5"}},
		{"q", []string{"#|c3"}},
	}
	var m Matches[string, int]
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m.Reset()
			tr.Match(tt.name, &m)
			if got := subKeys(&m); !slices.Equal(got, tt.want) {
				t.Errorf("Match(%q) = %v, want %v", tt.name, got, tt.want)
			}
		})
	}
	m.Reset()
	tr.Match("a/b", &m)
	for _, e := range m.Subs {
		if e.Filter == "a/b" && e.Key == "c1" && e.Value != 100 {
			t.Errorf("replaced value = %d, want 100", e.Value)
		}
	}

	if tr.Remove("a/b", "nobody") {
		t.Errorf("Remove(%q, %q) = true, want false", "a/b", "nobody")
	}
	if tr.Remove("no/such/filter", "c1") {
		t.Errorf("Remove(%q, %q) = true, want false", "no/such/filter", "c1")
	}
	if tr.Remove("$share/g/a/b", "c1") {
		t.Errorf("Remove(%q, %q) = true, want false", "$share/g/a/b", "c1")
	}
	for _, s := range subs {
		if !tr.Remove(s.filter, s.key) {
			t.Errorf("Remove(%q, %q) = false, want true", s.filter, s.key)
		}
		if tr.Remove(s.filter, s.key) {
			t.Errorf("second Remove(%q, %q) = true, want false", s.filter, s.key)
		}
	}
	if got := tr.Len(); got != 0 {
		t.Errorf("Len() after removing all = %d, want 0", got)
	}
	if got := nodeCount(tr); got != 0 {
		t.Errorf("nodes after removing all = %d, want 0", got)
	}
	if tr.root.children != nil || tr.root.plus != nil || tr.root.hash != nil {
		t.Errorf("root not empty after removing all: %+v", tr.root)
	}
}

func TestTrieChurnDoesNotGrow(t *testing.T) {
	tr := NewTrie[int, struct{}]()
	tr.Add("keep/+", 0, struct{}{})
	base := nodeCount(tr)
	for i := range 1000 {
		f := fmt.Sprintf("dev/%d/+/x", i)
		tr.Add(f, i, struct{}{})
		tr.Add("$share/g/"+f, i, struct{}{})
		tr.Remove(f, i)
		tr.Remove("$share/g/"+f, i)
	}
	if got := nodeCount(tr); got != base {
		t.Errorf("nodes after churn = %d, want %d", got, base)
	}
	if got := tr.Len(); got != 1 {
		t.Errorf("Len() after churn = %d, want 1", got)
	}
}

func TestTrieEntrySetIndex(t *testing.T) {
	// Enough keys on one filter to switch the entry set to its index, then back.
	tr := NewTrie[int, int]()
	const n = 100
	for i := range n {
		tr.Add("a/+", i, i)
		tr.Add("$share/g/a/+", i, i)
	}
	for i := range n {
		if !tr.Add("a/+", i, i+1) || !tr.Add("$share/g/a/+", i, i+1) {
			t.Fatalf("Add(%d) again replaced = false, want true", i)
		}
	}
	for i := 0; i < n; i += 2 {
		if !tr.Remove("a/+", i) || !tr.Remove("$share/g/a/+", i) {
			t.Fatalf("Remove(%d) = false, want true", i)
		}
	}
	var m Matches[int, int]
	tr.Match("a/b", &m)
	if len(m.Subs) != n/2 || len(m.Groups) != 1 || len(m.Shared) != n/2 {
		t.Fatalf("Match: %d subs, %d groups, %d shared, want %d, 1, %d", len(m.Subs), len(m.Groups), len(m.Shared), n/2, n/2)
	}
	for i, e := range m.Shared {
		if want := 2*i + 1; e.Key != want || e.Value != want+1 {
			t.Errorf("Shared[%d] = %d=%d, want %d=%d", i, e.Key, e.Value, want, want+1)
		}
	}
	for i := 1; i < n; i += 2 {
		if !tr.Remove("a/+", i) || !tr.Remove("$share/g/a/+", i) {
			t.Fatalf("Remove(%d) = false, want true", i)
		}
		if tr.Remove("a/+", i) {
			t.Fatalf("second Remove(%d) = true, want false", i)
		}
	}
	if tr.Len() != 0 || nodeCount(tr) != 0 {
		t.Errorf("Len() = %d, nodes = %d, want 0, 0", tr.Len(), nodeCount(tr))
	}
}

func TestTrieShared(t *testing.T) {
	tr := NewTrie[string, int]()
	tr.Add("$share/g/a/+", "c1", 1)
	tr.Add("$share/g/a/+", "c2", 2)
	tr.Add("$share/g/a/+", "c3", 3)
	tr.Add("$share/g/a/#", "c4", 4) // same share name, different filter: another group
	tr.Add("$share/h/a/+", "c5", 5)
	tr.Add("$share/h/b/+", "c6", 6) // does not match
	tr.Add("a/+", "c1", 7)          // non-shared on the same filter
	if got := tr.Add("$share/g/a/+", "c2", 22); !got {
		t.Errorf("Add(%q, %q) again replaced = false, want true", "$share/g/a/+", "c2")
	}
	if got, want := tr.Len(), 7; got != want {
		t.Errorf("Len() = %d, want %d", got, want)
	}

	var m Matches[string, int]
	tr.Match("a/x", &m)
	want := []string{"$share/g/a/#|c4", "$share/g/a/+|c1,c2,c3", "$share/h/a/+|c5"}
	if got := groupKeys(t, &m); !slices.Equal(got, want) {
		t.Errorf("Match(%q) groups = %v, want %v", "a/x", got, want)
	}
	if got, want := subKeys(&m), []string{"a/+|c1"}; !slices.Equal(got, want) {
		t.Errorf("Match(%q) subs = %v, want %v", "a/x", got, want)
	}
	for _, e := range m.Shared {
		if e.Key == "c2" && e.Value != 22 {
			t.Errorf("replaced shared value = %d, want 22", e.Value)
		}
	}

	// Removing a member keeps the order of the others; a new member goes last.
	tr.Remove("$share/g/a/+", "c2")
	tr.Add("$share/g/a/+", "c2", 2)
	m.Reset()
	tr.Match("a/x", &m)
	want = []string{"$share/g/a/#|c4", "$share/g/a/+|c1,c3,c2", "$share/h/a/+|c5"}
	if got := groupKeys(t, &m); !slices.Equal(got, want) {
		t.Errorf("Match(%q) groups after re-add = %v, want %v", "a/x", got, want)
	}

	// "#" matches the parent for shared groups too.
	m.Reset()
	tr.Match("a", &m)
	if got, want := groupKeys(t, &m), []string{"$share/g/a/#|c4"}; !slices.Equal(got, want) {
		t.Errorf("Match(%q) groups = %v, want %v", "a", got, want)
	}

	for _, f := range []string{"$share/g/a/+|c1", "$share/g/a/+|c2", "$share/g/a/+|c3", "$share/g/a/#|c4", "$share/h/a/+|c5", "$share/h/b/+|c6", "a/+|c1"} {
		filter, key, _ := strings.Cut(f, "|")
		if !tr.Remove(filter, key) {
			t.Errorf("Remove(%q, %q) = false, want true", filter, key)
		}
	}
	if tr.Len() != 0 || nodeCount(tr) != 0 {
		t.Errorf("Len() = %d, nodes = %d after removing all, want 0, 0", tr.Len(), nodeCount(tr))
	}
}

func TestTrieRoundRobin(t *testing.T) {
	tr := NewTrie[string, int]()
	for _, k := range []string{"c1", "c2", "c3"} {
		tr.Add("$share/g/ward/+/hr", k, 0)
	}
	var picked []string
	var m Matches[string, int]
	for range 7 {
		m.Reset()
		tr.Match("ward/7/hr", &m)
		if len(m.Groups) != 1 {
			t.Fatalf("Match: %d groups, want 1", len(m.Groups))
		}
		g := m.Groups[0]
		idx := g.Start + int((g.Next.Add(1)-1)%uint64(g.End-g.Start))
		picked = append(picked, m.Shared[idx].Key)
	}
	want := []string{"c1", "c2", "c3", "c1", "c2", "c3", "c1"}
	if !slices.Equal(picked, want) {
		t.Errorf("round robin picked %v, want %v", picked, want)
	}
}

func TestTrieDollar(t *testing.T) {
	tr := NewTrie[string, int]()
	for _, f := range []string{"#", "+/x", "+/#", "$SYS/#", "$SYS/+", "$share/g/#", "$share/g/$SYS/x", "+"} {
		tr.Add(f, "c", 0)
	}
	var m Matches[string, int]
	tr.Match("$SYS/x", &m)
	want := []string{"$SYS/#|c", "$SYS/+|c"}
	if got := subKeys(&m); !slices.Equal(got, want) {
		t.Errorf("Match(%q) = %v, want %v", "$SYS/x", got, want)
	}
	if got, want := groupKeys(t, &m), []string{"$share/g/$SYS/x|c"}; !slices.Equal(got, want) {
		t.Errorf("Match(%q) groups = %v, want %v", "$SYS/x", got, want)
	}
	m.Reset()
	tr.Match("a/x", &m)
	want = []string{"#|c", "+/#|c", "+/x|c"}
	if got := subKeys(&m); !slices.Equal(got, want) {
		t.Errorf("Match(%q) = %v, want %v", "a/x", got, want)
	}
}

func TestTrieDeep(t *testing.T) {
	tr := NewTrie[int, int]()
	tr.Add("#", 1, 0)
	tr.Add("a/#", 2, 0)
	tr.Add("+/+/#", 3, 0)
	deepFilter := strings.Repeat("+/", 5000) + "#"
	tr.Add(deepFilter, 4, 0)
	tr.Add(strings.Repeat("a/", 5000)+"a", 5, 0)
	name := strings.Repeat("a/", 100000) + "a"
	var m Matches[int, int]
	tr.Match(name, &m)
	var keys []int
	for _, e := range m.Subs {
		keys = append(keys, e.Key)
	}
	slices.Sort(keys)
	if want := []int{1, 2, 3, 4}; !slices.Equal(keys, want) {
		t.Errorf("Match(deep name) keys = %v, want %v", keys, want)
	}
	tr.Remove(deepFilter, 4)
	tr.Remove(strings.Repeat("a/", 5000)+"a", 5)
	// Left: "#", "a", "a/#", "+", "+/+", "+/+/#".
	if got := nodeCount(tr); got != 6 {
		t.Errorf("nodes = %d, want 6", got)
	}
}

// model is the naive reference for the differential tests.
type model struct {
	subs   map[string][]string // filter -> keys
	groups map[string][]string // "$share/g/inner" -> keys in insertion order
}

func (md *model) add(filter, key string) {
	m := md.subs
	if _, _, ok, _ := ParseShared(filter); ok {
		m = md.groups
	}
	if !slices.Contains(m[filter], key) {
		m[filter] = append(m[filter], key)
	}
}

func (md *model) remove(filter, key string) {
	m := md.subs
	if _, _, ok, _ := ParseShared(filter); ok {
		m = md.groups
	}
	if i := slices.Index(m[filter], key); i >= 0 {
		m[filter] = slices.Delete(m[filter], i, i+1)
		if len(m[filter]) == 0 {
			delete(m, filter)
		}
	}
}

func (md *model) match(name string) (subs, groups []string) {
	for f, keys := range md.subs {
		if Match(f, name) {
			for _, k := range keys {
				subs = append(subs, f+"|"+k)
			}
		}
	}
	for f, keys := range md.groups {
		if _, inner, _, _ := ParseShared(f); Match(inner, name) {
			groups = append(groups, f+"|"+strings.Join(keys, ","))
		}
	}
	slices.Sort(subs)
	slices.Sort(groups)
	return subs, groups
}

func randTopic(r *rand.Rand, levels []string, maxDepth int) string {
	var b strings.Builder
	for i := range 1 + r.IntN(maxDepth) {
		if i > 0 {
			b.WriteByte('/')
		}
		b.WriteString(levels[r.IntN(len(levels))])
	}
	return b.String()
}

func randFilter(r *rand.Rand) string {
	for {
		f := randTopic(r, []string{"a", "b", "c", "", "$s", "+", "+", "#"}, 4)
		switch r.IntN(6) {
		case 0:
			f = "$share/g1/" + f
		case 1:
			f = "$share/g2/" + f
		}
		if (Limits{}).CheckFilter(f) == nil {
			return f
		}
	}
}

func randName(r *rand.Rand) string {
	for {
		n := randTopic(r, []string{"a", "b", "c", "", "$s", "d"}, 5)
		if (Limits{}).CheckName(n) == nil {
			return n
		}
	}
}

func TestTrieDifferential(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	tr := NewTrie[string, int]()
	md := &model{subs: map[string][]string{}, groups: map[string][]string{}}
	type sub struct{ filter, key string }
	var all []sub
	var m Matches[string, int]
	check := func(phase string) {
		t.Helper()
		for range 1000 {
			name := randName(r)
			m.Reset()
			tr.Match(name, &m)
			wantSubs, wantGroups := md.match(name)
			if got := subKeys(&m); !slices.Equal(got, wantSubs) {
				t.Fatalf("%s: Match(%q) subs = %v, want %v", phase, name, got, wantSubs)
			}
			if got := groupKeys(t, &m); !slices.Equal(got, wantGroups) {
				t.Fatalf("%s: Match(%q) groups = %v, want %v", phase, name, got, wantGroups)
			}
		}
	}
	for range 400 {
		s := sub{randFilter(r), fmt.Sprint("k", r.IntN(8))}
		tr.Add(s.filter, s.key, 0)
		md.add(s.filter, s.key)
		all = append(all, s)
	}
	check("after add")
	r.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	for _, s := range all[:len(all)/2] {
		tr.Remove(s.filter, s.key)
		md.remove(s.filter, s.key)
	}
	check("after removing half")
	for _, s := range all[:len(all)/4] { // re-add some: new members go last
		tr.Add(s.filter, s.key, 0)
		md.add(s.filter, s.key)
	}
	check("after re-adding")
	for _, s := range all {
		tr.Remove(s.filter, s.key)
	}
	if tr.Len() != 0 || nodeCount(tr) != 0 {
		t.Errorf("Len() = %d, nodes = %d after removing all, want 0, 0", tr.Len(), nodeCount(tr))
	}
}

func TestTrieMatchNoAlloc(t *testing.T) {
	tr := NewTrie[int, int]()
	for i := range 100 {
		tr.Add(fmt.Sprintf("dev/%d/+/x", i), i, i)
	}
	tr.Add("dev/#", 1000, 0)
	tr.Add("$share/g/dev/+/+/x", 1001, 0)
	tr.Add("$share/g/dev/+/+/x", 1002, 0)
	var m Matches[int, int]
	tr.Match("dev/7/hr/x", &m) // warm up
	allocs := testing.AllocsPerRun(100, func() {
		m.Reset()
		tr.Match("dev/7/hr/x", &m)
	})
	if allocs != 0 {
		t.Errorf("Match allocates %v times per run, want 0", allocs)
	}
	if len(m.Subs) != 2 || len(m.Groups) != 1 || len(m.Shared) != 2 {
		t.Errorf("Match: %d subs, %d groups, %d shared, want 2, 1, 2", len(m.Subs), len(m.Groups), len(m.Shared))
	}
}

func TestConcurrent(t *testing.T) {
	tr := NewTrie[int, int]()
	rs := NewRetained[int]()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 7))
			for range 500 {
				f, n := randFilter(r), randName(r)
				tr.Add(f, w, 0)
				rs.Set(n, w)
				tr.Remove(f, w)
				rs.Delete(n)
			}
		})
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(w), 8))
			var m Matches[int, int]
			var dst []Retain[int]
			for range 500 {
				m.Reset()
				tr.Match(randName(r), &m)
				for _, g := range m.Groups {
					g.Next.Add(1)
				}
				dst = rs.Match(randFilter(r), dst[:0])
				rs.Get(randName(r))
				_ = tr.Len() + rs.Len()
			}
		})
	}
	wg.Wait()
	if tr.Len() != 0 || nodeCount(tr) != 0 {
		t.Errorf("trie Len() = %d, nodes = %d, want 0, 0", tr.Len(), nodeCount(tr))
	}
	if rs.Len() != 0 || retainedNodes(rs) != 0 {
		t.Errorf("retained Len() = %d, nodes = %d, want 0, 0", rs.Len(), retainedNodes(rs))
	}
}
