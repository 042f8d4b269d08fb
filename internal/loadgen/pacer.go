package loadgen

import "time"

// Pacer hands out send permits at a fixed rate: token k is due at start + k/rate. A sender
// takes every token already due (at most a burst), sends them in one batch, and sleeps until
// Next when none is due, so a paced sender never busy-spins and still holds its rate when
// its timer oversleeps. A sender that falls more than a burst behind loses the backlog
// instead of bursting to catch up. The caller passes the time, so it is deterministic to test.
type Pacer struct {
	start    time.Time
	interval float64 // nanoseconds per token
	issued   int64   // tokens handed out (or skipped)
	burst    int64
}

// NewPacer returns a pacer for rate tokens per second from start; burst (≥ 1) caps how many
// tokens one Take may return.
func NewPacer(rate float64, start time.Time, burst int) *Pacer {
	if burst < 1 {
		burst = 1
	}
	return &Pacer{start: start, interval: float64(time.Second) / rate, burst: int64(burst)}
}

// due is how many tokens are due at now.
func (p *Pacer) due(now time.Time) int64 {
	if now.Before(p.start) {
		return 0
	}
	return int64(float64(now.Sub(p.start))/p.interval) + 1
}

// Take returns how many tokens (at most limit and at most the burst) may be used at now,
// and consumes them.
func (p *Pacer) Take(now time.Time, limit int) int {
	due := p.due(now)
	if due-p.issued > p.burst {
		p.issued = due - p.burst // too far behind: drop the backlog
	}
	n := min(due-p.issued, int64(limit))
	if n <= 0 {
		return 0
	}
	p.issued += n
	return int(n)
}

// Give returns n unused tokens taken by the last Take.
func (p *Pacer) Give(n int) { p.issued -= int64(n) }

// Next is when the next token is due.
func (p *Pacer) Next() time.Time {
	return p.start.Add(time.Duration(float64(p.issued) * p.interval))
}
