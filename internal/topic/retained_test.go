package topic

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func retainedNodes[V any](r *Retained[V]) int {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.nodes
}

func retainNames[V any](rs []Retain[V]) []string {
	var out []string
	for _, r := range rs {
		out = append(out, r.Name)
	}
	slices.Sort(out)
	return out
}

func TestRetainedSetGetDelete(t *testing.T) {
	r := NewRetained[int]()
	names := []string{"a", "a/b", "a/b/c", "/", "$SYS/x", "a//c"}
	for i, n := range names {
		r.Set(n, i)
	}
	r.Set("a/b", 100)
	if got, want := r.Len(), len(names); got != want {
		t.Errorf("Len() = %d, want %d", got, want)
	}
	for i, n := range names {
		want := i
		if n == "a/b" {
			want = 100
		}
		if v, ok := r.Get(n); !ok || v != want {
			t.Errorf("Get(%q) = %d, %v, want %d, true", n, v, ok, want)
		}
	}
	for _, n := range []string{"b", "a/b/c/d", "a/x", "$SYS"} {
		if v, ok := r.Get(n); ok {
			t.Errorf("Get(%q) = %d, true, want false", n, v)
		}
		if r.Delete(n) {
			t.Errorf("Delete(%q) = true, want false", n)
		}
	}
	// Deleting an inner name keeps the names below it.
	if !r.Delete("a/b") {
		t.Errorf("Delete(%q) = false, want true", "a/b")
	}
	if _, ok := r.Get("a/b/c"); !ok {
		t.Errorf("Get(%q) after Delete(%q) = false, want true", "a/b/c", "a/b")
	}
	for _, n := range names {
		if r.Delete(n) != (n != "a/b") {
			t.Errorf("Delete(%q) = %v, want %v", n, !(n != "a/b"), n != "a/b")
		}
	}
	if r.Len() != 0 || retainedNodes(r) != 0 || r.root.children != nil {
		t.Errorf("Len() = %d, nodes = %d after deleting all, want 0, 0", r.Len(), retainedNodes(r))
	}
}

func TestRetainedMatch(t *testing.T) {
	r := NewRetained[int]()
	for i, n := range []string{"a", "a/b", "a/c", "a/b/c", "a//c", "/", "b", "$SYS/x", "$SYS", "x/$SYS"} {
		r.Set(n, i)
	}
	tests := []struct {
		filter string
		want   []string
	}{
		{"#", []string{"/", "a", "a//c", "a/b", "a/b/c", "a/c", "b", "x/$SYS"}},
		{"+", []string{"a", "b"}},
		{"+/+", []string{"/", "a/b", "a/c", "x/$SYS"}},
		{"a/#", []string{"a", "a//c", "a/b", "a/b/c", "a/c"}},
		{"a/+", []string{"a/b", "a/c"}},
		{"a/+/c", []string{"a//c", "a/b/c"}},
		{"+/x", nil},
		{"$SYS/#", []string{"$SYS", "$SYS/x"}},
		{"$SYS/+", []string{"$SYS/x"}},
		{"+/$SYS", []string{"x/$SYS"}},
		{"a/b", []string{"a/b"}},
		{"a/b/c/d", nil},
		{"/#", []string{"/"}},
		{"q/#", nil},
	}
	for _, tt := range tests {
		t.Run(tt.filter, func(t *testing.T) {
			if got := retainNames(r.Match(tt.filter, nil)); !slices.Equal(got, tt.want) {
				t.Errorf("Match(%q) = %v, want %v", tt.filter, got, tt.want)
			}
		})
	}
	got := r.Match("a/b", []Retain[int]{{Name: "keep"}})
	if len(got) != 2 || got[0].Name != "keep" || got[1].Name != "a/b" || got[1].Value != 1 {
		t.Errorf("Match appended = %+v, want [keep a/b=1]", got)
	}
}

func TestRetainedDeep(t *testing.T) {
	r := NewRetained[int]()
	deep := strings.Repeat("a/", 100000) + "a"
	r.Set(deep, 1)
	r.Set("a", 2)
	if got := len(r.Match("#", nil)); got != 2 {
		t.Errorf("len(Match(%q)) = %d, want 2", "#", got)
	}
	if got := len(r.Match(strings.Repeat("+/", 100000)+"+", nil)); got != 1 {
		t.Errorf("len(Match(deep plus)) = %d, want 1", got)
	}
	r.Delete(deep)
	r.Delete("a")
	if retainedNodes(r) != 0 {
		t.Errorf("nodes = %d, want 0", retainedNodes(r))
	}
}

func TestRetainedDifferential(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	r := NewRetained[int]()
	want := map[string]int{}
	check := func(phase string) {
		t.Helper()
		for range 1000 {
			f := randFilter(rnd)
			if _, inner, ok, _ := ParseShared(f); ok {
				f = inner
			}
			var exp []string
			for n := range want {
				if Match(f, n) {
					exp = append(exp, n)
				}
			}
			slices.Sort(exp)
			got := r.Match(f, nil)
			for _, g := range got {
				if g.Value != want[g.Name] {
					t.Fatalf("%s: Match(%q) value of %q = %d, want %d", phase, f, g.Name, g.Value, want[g.Name])
				}
			}
			if names := retainNames(got); !slices.Equal(names, exp) {
				t.Fatalf("%s: Match(%q) = %v, want %v", phase, f, names, exp)
			}
		}
		if r.Len() != len(want) {
			t.Fatalf("%s: Len() = %d, want %d", phase, r.Len(), len(want))
		}
	}
	for i := range 500 {
		n := randName(rnd)
		r.Set(n, i)
		want[n] = i
	}
	check("after set")
	i := 0
	for n := range want {
		if i++; i%2 == 0 {
			r.Delete(n)
			delete(want, n)
		}
	}
	check("after delete")
	for n := range want {
		r.Delete(n)
	}
	if r.Len() != 0 || retainedNodes(r) != 0 {
		t.Errorf("Len() = %d, nodes = %d after deleting all, want 0, 0", r.Len(), retainedNodes(r))
	}
}

func TestRetainedMatchNoAlloc(t *testing.T) {
	r := NewRetained[int]()
	for i := range 1000 {
		r.Set(fmt.Sprintf("dev/%d/hr", i), i)
	}
	for _, f := range []string{"dev/7/+", "dev/+/hr", "#"} { // narrow, wide and whole-store walks
		dst := r.Match(f, nil)
		allocs := testing.AllocsPerRun(100, func() {
			dst = r.Match(f, dst[:0])
		})
		if allocs != 0 {
			t.Errorf("Match(%q) allocates %v times per run, want 0", f, allocs)
		}
	}
}
