package loadgen

import (
	"sync"
	"time"
)

// sampler watches the broker process: VmRSS every 100 ms for the peak, and CPU time at
// the marks (the measured window's edges). A zero pid makes it a no-op.
type sampler struct {
	pid   int
	stop  chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	peak  int64 // VmRSS
	anon  int64 // RssAnon
	marks []ProcSample
	// The steal on the broker's CPUs: only mark and close use these, on the goroutine
	// that runs the measurement, so mu does not guard them.
	steal  stealSince // from the first mark
	stolen *float64   // from the first mark to the last
	err    error
}

const sampleEvery = 100 * time.Millisecond

func newSampler(pid int) *sampler {
	s := &sampler{pid: pid, stop: make(chan struct{}), done: make(chan struct{})}
	if pid <= 0 {
		close(s.done)
		return s
	}
	s.sample()
	go func() {
		defer close(s.done)
		t := time.NewTicker(sampleEvery)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				s.sample()
			}
		}
	}()
	return s
}

func (s *sampler) sample() (ProcSample, bool) {
	p, err := ReadProc(s.pid)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if s.err == nil {
			s.err = err
		}
		return p, false
	}
	s.peak = max(s.peak, p.RSS)
	s.anon = max(s.anon, p.RSSAnon)
	return p, true
}

// mark records the broker's CPU time, and its CPUs' steal time, now.
func (s *sampler) mark() {
	if s.pid <= 0 {
		return
	}
	if p, ok := s.sample(); ok {
		s.mu.Lock()
		s.marks = append(s.marks, p)
		first := len(s.marks) == 1
		s.mu.Unlock()
		if first {
			s.steal = startSteal(s.pid)
		} else {
			s.stolen = s.steal.end()
		}
	}
}

// close stops sampling and reports CPU between the first and last marks, the peak VmRSS
// and RssAnon, and the final VmHWM. Nil without a pid.
func (s *sampler) close() (*Broker, error) {
	if s.pid <= 0 {
		return nil, nil
	}
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
	last, _ := s.sample()
	s.mu.Lock()
	defer s.mu.Unlock()
	b := &Broker{PID: s.pid, PeakRSS: s.peak, PeakRSSAnon: s.anon, VmHWM: last.HWM}
	if n := len(s.marks); n >= 2 {
		b.CPUSeconds = (s.marks[n-1].CPU - s.marks[0].CPU).Seconds()
	}
	b.StealPct = s.stolen
	return b, s.err
}
