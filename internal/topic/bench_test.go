package topic

import (
	"fmt"
	"testing"
)

func BenchmarkTrieMatch(b *testing.B) {
	for _, n := range []int{1_000, 100_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			tr := NewTrie[int, int]()
			for i := range n {
				tr.Add(fmt.Sprintf("dev/%d/+/x", i), i, i)
			}
			// The few that match "dev/42/hr/x".
			tr.Add("dev/#", -1, 0)
			tr.Add("+/42/hr/x", -2, 0)
			tr.Add("$share/g/dev/+/hr/x", -3, 0)
			tr.Add("$share/g/dev/+/hr/x", -4, 0)
			var m Matches[int, int]
			tr.Match("dev/42/hr/x", &m)
			if len(m.Subs) != 3 || len(m.Groups) != 1 || len(m.Shared) != 2 {
				b.Fatalf("Match: %d subs, %d groups, %d shared, want 3, 1, 2", len(m.Subs), len(m.Groups), len(m.Shared))
			}
			b.ReportAllocs()
			for b.Loop() {
				m.Reset()
				tr.Match("dev/42/hr/x", &m)
			}
		})
	}
}

func BenchmarkRetainedMatch(b *testing.B) {
	r := NewRetained[int]()
	for i := range 100_000 {
		r.Set(fmt.Sprintf("dev/%d/%s", i/10, []string{"hr", "spo2", "rr", "bp", "temp", "ecg", "etco2", "nibp", "ibp", "pr"}[i%10]), i)
	}
	for _, f := range []string{"dev/42/hr", "dev/42/+", "dev/+/hr"} {
		b.Run(f, func(b *testing.B) {
			dst := r.Match(f, nil)
			b.ReportAllocs()
			for b.Loop() {
				dst = r.Match(f, dst[:0])
			}
		})
	}
}

func BenchmarkCheckFilter(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if (Limits{}).CheckFilter("$share/g/ward/+/bed/+/hr/#") != nil {
			b.Fatal("rejected")
		}
	}
}
