package loadgen

import (
	"bufio"
	"bytes"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"testing"
	"time"

	"vitalmq/internal/packet"
)

func TestHistogramQuantilesMatchSortedReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	dists := map[string]func() int64{
		"small exact":  func() int64 { return rng.Int64N(128) },
		"uniform 1ms":  func() int64 { return rng.Int64N(1_000_000) },
		"exponential":  func() int64 { return int64(rng.ExpFloat64() * 80_000) },
		"lognormal":    func() int64 { return int64(math.Exp(rng.NormFloat64()*2 + 11)) },
		"with outlier": func() int64 { return rng.Int64N(1000) + 50_000 },
	}
	for name, gen := range dists {
		t.Run(name, func(t *testing.T) {
			var h Histogram
			ref := make([]int64, 0, 100_000)
			for range cap(ref) {
				v := gen()
				h.Record(v)
				ref = append(ref, v)
			}
			if name == "with outlier" {
				h.Record(3_000_000_000)
				ref = append(ref, 3_000_000_000)
			}
			slices.Sort(ref)
			for _, q := range []float64{0.001, 0.1, 0.5, 0.9, 0.99, 0.999, 0.9999, 1} {
				want := ref[int(math.Ceil(q*float64(len(ref))))-1]
				got := h.Quantile(q)
				// The bucket's highest value: never below the truth, at most 1/64 above it.
				if got < want || float64(got) > float64(want)*(1+1.0/64)+1 {
					t.Errorf("q%v = %d, sorted reference %d", q, got, want)
				}
			}
			if h.Min() != ref[0] || h.Max() != ref[len(ref)-1] || h.Count() != uint64(len(ref)) {
				t.Errorf("min/max/count = %d/%d/%d, want %d/%d/%d", h.Min(), h.Max(), h.Count(), ref[0], ref[len(ref)-1], len(ref))
			}
		})
	}
}

func TestHistogramEdges(t *testing.T) {
	var h Histogram
	if h.Quantile(0.5) != 0 || h.Mean() != 0 {
		t.Fatal("empty histogram must report 0")
	}
	h.Record(-5)
	h.Record(math.MaxInt64)
	if h.Min() != 0 || h.Max() != histMax {
		t.Fatalf("min %d max %d: negative values count as 0 and huge ones are clamped", h.Min(), h.Max())
	}
	// Every bucket index is in range and maps back onto its own value range.
	for _, v := range []int64{0, 1, 127, 128, 129, 255, 256, 1000, 1 << 20, histMax} {
		i := histIndex(uint64(v))
		if i < 0 || i >= histLen || histHigh(i) < v || (i > 0 && histHigh(i-1) >= v) {
			t.Errorf("value %d: bucket %d [%d, %d]", v, i, histHigh(i-1)+1, histHigh(i))
		}
	}
	var a, b Histogram
	for i := range int64(1000) {
		a.Record(i)
		b.Record(i + 1000)
	}
	a.Merge(&b)
	if a.Count() != 2000 || a.Min() != 0 || a.Max() != 1999 || a.Mean() != 999.5 {
		t.Fatalf("merged: count %d min %d max %d mean %v", a.Count(), a.Min(), a.Max(), a.Mean())
	}
}

func TestReadProcSelf(t *testing.T) {
	// Burn a little CPU so that at least one clock tick is accounted.
	deadline := time.Now().Add(50 * time.Millisecond)
	for x := 0; time.Now().Before(deadline); x++ {
		_ = x * x
	}
	s, err := readProcDir("/proc/self")
	if err != nil {
		t.Fatal(err)
	}
	if s.CPU <= 0 || s.RSS <= 0 || s.HWM < s.RSS || s.RSSAnon <= 0 || s.RSSAnon >= s.RSS {
		t.Fatalf("/proc/self: cpu %v rss %d (anonymous %d) hwm %d; want cpu > 0, 0 < anonymous < rss ≤ hwm", s.CPU, s.RSS, s.RSSAnon, s.HWM)
	}
	p, err := ReadProc(os.Getpid())
	if err != nil || p.RSS <= 0 {
		t.Fatalf("ReadProc(own pid) = %+v, %v", p, err)
	}
	if _, err := ReadProc(1 << 30); err == nil {
		t.Fatal("ReadProc of a missing pid succeeded")
	}
}

func TestParseStatCPU(t *testing.T) {
	// A command name with spaces and parentheses; utime 250 and stime 50 ticks.
	line := []byte("4242 (evil) name (x)) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 12345 1000000 500\n")
	d, err := parseStatCPU(line)
	if err != nil || d != 3*time.Second {
		t.Fatalf("parseStatCPU = %v, %v; want 3s", d, err)
	}
	if _, err := parseStatCPU([]byte("12 (x) S 1 2")); err == nil {
		t.Fatal("short stat line accepted")
	}
	status := []byte("Name:\tx\nVmHWM:\t  2048 kB\nVmRSS:\t  1024 kB\n")
	if statusKB(status, "VmRSS:") != 1024 || statusKB(status, "VmHWM:") != 2048 || statusKB(status, "VmSwap:") != 0 {
		t.Fatal("statusKB misread /proc/<pid>/status")
	}
}

func TestPacerCounts(t *testing.T) {
	t0 := time.Unix(1000, 0)
	p := NewPacer(1000, t0, 100) // one token per millisecond
	if n := p.Take(t0.Add(-time.Second), 10); n != 0 {
		t.Fatalf("before start: %d tokens", n)
	}
	if n := p.Take(t0, 10); n != 1 {
		t.Fatalf("at start: %d tokens, want 1", n)
	}
	if n := p.Take(t0.Add(500*time.Microsecond), 10); n != 0 {
		t.Fatalf("half an interval later: %d tokens, want 0", n)
	}
	if got := p.Next(); !got.Equal(t0.Add(time.Millisecond)) {
		t.Fatalf("Next = %v, want start + 1ms", got.Sub(t0))
	}
	if n := p.Take(t0.Add(10*time.Millisecond), 4); n != 4 {
		t.Fatalf("limit: %d tokens, want 4", n)
	}
	if n := p.Take(t0.Add(10*time.Millisecond), 100); n != 6 {
		t.Fatalf("rest: %d tokens, want 6 (tokens 0..10 due)", n)
	}
	p.Give(2)
	if n := p.Take(t0.Add(10*time.Millisecond), 100); n != 2 {
		t.Fatalf("after Give(2): %d tokens, want 2", n)
	}
	// Far behind: at most one burst, the backlog is dropped.
	if n := p.Take(t0.Add(10*time.Second), 1000); n != 100 {
		t.Fatalf("after 10 s: %d tokens, want the burst of 100", n)
	}

	// Stepping a simulated second in uneven steps hands out the rate, whatever the steps.
	for _, step := range []time.Duration{37 * time.Microsecond, time.Millisecond, 7 * time.Millisecond} {
		p := NewPacer(5000, t0, 1000)
		total := 0
		for now := t0; now.Before(t0.Add(time.Second)); now = now.Add(step) {
			total += p.Take(now, 1<<30)
		}
		total += p.Take(t0.Add(time.Second), 1<<30)
		if total != 5001 { // tokens 0 … 5000 are due at start + 1 s
			t.Errorf("step %v: %d tokens in 1 s at 5000/s", step, total)
		}
	}
}

func TestCheckLoopback(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"127.0.0.1:1883", "127.0.0.1:1883"},
		{"127.1.2.3:8883", "127.1.2.3:8883"},
		{"localhost:1883", "127.0.0.1:1883"},
		{"LOCALHOST:1", "127.0.0.1:1"},
		{"[::1]:1883", "[::1]:1883"},
		{"[::ffff:127.0.0.1]:1883", "127.0.0.1:1883"},
	} {
		got, err := CheckLoopback(c.in)
		if err != nil || got != c.want {
			t.Errorf("CheckLoopback(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
	for _, in := range []string{"10.0.0.1:1883", "0.0.0.0:1883", "[::]:1883", "192.168.1.10:1883",
		"broker.example.com:1883", "8.8.8.8:53", ":1883", "[2001:db8::1]:1883"} {
		_, err := CheckLoopback(in)
		if !errors.Is(err, ErrNotLoopback) {
			t.Errorf("CheckLoopback(%q) = %v; want ErrNotLoopback", in, err)
		}
	}
	for _, in := range []string{"127.0.0.1", "127.0.0.1:0", "127.0.0.1:99999", "127.0.0.1:http"} {
		if _, err := CheckLoopback(in); err == nil {
			t.Errorf("CheckLoopback(%q) accepted a bad port", in)
		}
	}
	// The runners refuse before dialling anything.
	if _, err := RunPubSub(t.Context(), PubSubConfig{Target: Target{Addr: "10.1.2.3:1883"}}); !errors.Is(err, ErrNotLoopback) {
		t.Errorf("RunPubSub to 10.1.2.3 = %v; want ErrNotLoopback", err)
	}
	if _, err := RunConns(t.Context(), ConnsConfig{Target: Target{Addr: "example.org:1883"}}); !errors.Is(err, ErrNotLoopback) {
		t.Errorf("RunConns to example.org = %v; want ErrNotLoopback", err)
	}
}

func TestSourceAddr(t *testing.T) {
	if a := sourceAddr("127.0.0.1:1883", 0, 3); a.String() != "127.0.0.2:0" {
		t.Errorf("first source %v", a)
	}
	if a := sourceAddr("127.0.0.1:1883", 5, 3); a.String() != "127.0.0.4:0" {
		t.Errorf("sixth of three sources %v, want 127.0.0.4", a)
	}
	if a := sourceAddr("[::1]:1883", 0, 3); a != nil {
		t.Errorf("IPv6 target: %v, want nil", a)
	}
}

func TestParsePublishAndStamp(t *testing.T) {
	payload := make([]byte, 64)
	stamp(payload, 1234567890123, 200, 77, 42)
	for _, v := range []byte{packet.Version311, packet.Version5} {
		for qos := range byte(3) {
			p := packet.Publish{QoS: qos, Topic: "bench/77", Payload: payload}
			if qos > 0 {
				p.PacketID = 513
			}
			if v == packet.Version5 {
				p.Props.ContentType = "application/octet-stream"
				p.Props.Set(packet.PropContentType)
			}
			enc := packet.AppendPublish(nil, &p, v)
			r := bufio.NewReader(bytes.NewReader(enc))
			c := &client{r: r}
			h, body, err := c.next()
			if err != nil || h.Type != packet.PUBLISH {
				t.Fatalf("next: %v %v", h, err)
			}
			topic, id, pl, ok := parsePublish(h.Flags, body, v == packet.Version5)
			if !ok || string(topic) != "bench/77" || id != p.PacketID || !bytes.Equal(pl, payload) {
				t.Fatalf("v%d qos %d: topic %q id %d ok %v", v, qos, topic, id, ok)
			}
			ts, tag, pub, n, ok := unstamp(pl)
			if !ok || ts != 1234567890123 || tag != 200 || pub != 77 || n != 42 {
				t.Fatalf("unstamp = %d %d %d %d %v", ts, tag, pub, n, ok)
			}
		}
	}
	for _, bad := range [][]byte{nil, {0}, {0, 5, 'a'}, {0, 1, 'a', 0}} {
		if _, _, _, ok := parsePublish(2, bad, false); ok {
			t.Errorf("parsePublish(%x) accepted a truncated body", bad)
		}
	}
	if _, _, _, _, ok := unstamp(make([]byte, 15)); ok {
		t.Error("unstamp accepted 15 bytes")
	}
}

func TestParseSteal(t *testing.T) {
	set, err := parseCPUList("0,2-3\n")
	if err != nil || len(set) != 3 || !set[0] || set[1] || !set[2] || !set[3] {
		t.Fatalf("parseCPUList = %v, %v; want {0,2,3}", set, err)
	}
	for _, bad := range []string{"", "x", "3-1", "1-", "-1"} {
		if _, err := parseCPUList(bad); err == nil {
			t.Errorf("parseCPUList(%q) accepted", bad)
		}
	}
	// The all-CPU line is skipped; cpu1 is not in the set; a line without steal counts 0.
	stat := []byte("cpu  9 0 9 9 0 0 0 900 0 0\ncpu0 1 0 1 1 0 0 0 150 0 0\ncpu1 1 0 1 1 0 0 0 700 0 0\n" +
		"cpu2 1 0 1 1 0 0 0 50 0 0\ncpu3 1 0 1 1\nintr 5 0\n")
	d, n, err := parseSteal(stat, set)
	if err != nil || d != 2*time.Second || n != 3 {
		t.Fatalf("parseSteal = %v, %d lines, %v; want 2s (150 + 50 ticks) from 3 lines", d, n, err)
	}
	if _, _, err := parseSteal([]byte("cpu0 1 0 1 1 0 0 0 x\n"), set); err == nil {
		t.Fatal("a bad steal value was accepted")
	}
	// CPUs the list allows but /proc/stat does not list (offline) do not count.
	if _, n, err := parseSteal([]byte("cpu  1 0 1 1 0 0 0 5\ncpu1 1 0 1 1 0 0 0 5\n"), set); err != nil || n != 0 {
		t.Fatalf("parseSteal of other CPUs = %d lines, %v; want 0", n, err)
	}
	// The share: 1 s stolen of 2 CPUs × 5 s is 10 %; unknown when the CPUs changed.
	t0 := time.Now()
	a, b := stealMark{t0, stealTime{time.Second, 2}}, stealMark{t0.Add(5 * time.Second), stealTime{2 * time.Second, 2}}
	if p := stealPct(a, b); p == nil || *p < 9.999 || *p > 10.001 {
		t.Fatalf("stealPct = %v; want 10", p)
	}
	b.CPUs = 1
	if p := stealPct(a, b); p != nil {
		t.Fatalf("stealPct over a change of CPUs = %v; want unknown", *p)
	}
	st, err := readSteal(os.Getpid())
	if err != nil || st.CPUs < 1 || st.Time < 0 {
		t.Fatalf("readSteal(own pid) = %+v, %v", st, err)
	}
	if p := startSteal(os.Getpid()).end(); p == nil || *p < 0 {
		t.Fatalf("steal of its own CPUs = %v; want a share", p)
	}
	if p := startSteal(1 << 30).end(); p != nil {
		t.Fatalf("steal of a missing pid = %v; want unknown", *p)
	}
}

func TestStartTickStops(t *testing.T) {
	// The process's timerfds (the runtime's own poller descriptors come and go with the
	// first pollable file: not counted).
	timerfds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Skip("no /proc/self/fd:", err)
		}
		n := 0
		for _, e := range ents {
			if l, err := os.Readlink("/proc/self/fd/" + e.Name()); err == nil && l == "anon_inode:[timerfd]" {
				n++
			}
		}
		return n
	}
	before := timerfds()
	stop, err := startTick(100 * time.Microsecond)
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS == "linux" && timerfds() != before+1 {
		t.Errorf("timerfds: %d with the tick running, %d before: want one more", timerfds(), before)
	}
	stop() // returns once its goroutine has ended
	if got := timerfds(); got != before {
		t.Errorf("timerfds: %d after stop, %d before", got, before)
	}
}
