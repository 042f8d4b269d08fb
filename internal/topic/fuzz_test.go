package topic

import "testing"

var fuzzSeeds = []string{
	"a", "a/b", "#", "+", "a/#", "+/+", "/", "//", "$SYS/#", "$SYS/x", "a/#/b", "a+",
	"$share/g/a/+", "$share/g", "$share//x", "$share/g/", "\x00", "\xed\xa0\x80", "é/+",
}

func FuzzCheckFilter(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, filter string) {
		if (Limits{}).CheckFilter(filter) != nil {
			ParseShared(filter)
			return
		}
		tr := NewTrie[int, int]()
		tr.Add(filter, 1, 1)
		if tr.Len() != 1 {
			t.Fatalf("Len() after Add(%q) = %d, want 1", filter, tr.Len())
		}
		if !tr.Remove(filter, 1) {
			t.Fatalf("Remove(%q) = false, want true", filter)
		}
		if tr.Len() != 0 || nodeCount(tr) != 0 {
			t.Fatalf("after Add+Remove(%q): Len() = %d, nodes = %d, want 0, 0", filter, tr.Len(), nodeCount(tr))
		}
	})
}

func FuzzCheckName(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		if (Limits{}).CheckName(name) != nil {
			return
		}
		r := NewRetained[int]()
		r.Set(name, 1)
		if v, ok := r.Get(name); !ok || v != 1 {
			t.Fatalf("Get(%q) = %d, %v, want 1, true", name, v, ok)
		}
		if !r.Delete(name) || r.Len() != 0 || retainedNodes(r) != 0 {
			t.Fatalf("Delete(%q) left Len() = %d, nodes = %d", name, r.Len(), retainedNodes(r))
		}
	})
}

func FuzzMatch(f *testing.F) {
	for _, filter := range fuzzSeeds {
		for _, name := range fuzzSeeds {
			f.Add(filter, name)
		}
	}
	f.Fuzz(func(t *testing.T, filter, name string) {
		if (Limits{}).CheckFilter(filter) != nil || (Limits{}).CheckName(name) != nil {
			Match(filter, name) // must not panic
			return
		}
		inner := filter
		if _, in, ok, _ := ParseShared(filter); ok {
			inner = in
		}
		want := Match(inner, name)

		tr := NewTrie[int, int]()
		tr.Add(filter, 1, 1)
		var m Matches[int, int]
		tr.Match(name, &m)
		if got := len(m.Subs)+len(m.Shared) == 1; got != want || len(m.Subs)+len(m.Shared) > 1 {
			t.Fatalf("Trie.Match(%q) with filter %q: %d subs, %d shared, want match %v", name, filter, len(m.Subs), len(m.Shared), want)
		}

		r := NewRetained[int]()
		r.Set(name, 1)
		if got := len(r.Match(inner, nil)) == 1; got != want {
			t.Fatalf("Retained.Match(%q) with name %q = %v, want %v", inner, name, got, want)
		}
		if !Covers(inner, inner) {
			t.Fatalf("Covers(%q, %q) = false, want true", inner, inner)
		}
		if want && !Covers("#", inner) && name[0] != '$' {
			t.Fatalf("Covers(%q, %q) = false though it matches %q", "#", inner, name)
		}
	})
}
