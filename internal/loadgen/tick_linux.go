//go:build linux

package loadgen

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// startTick wakes the process every period until the returned stop is called, so that the
// Go runtime's timers fire on time. An idle Go process waits for its next timer in
// epoll_wait, whose timeout is in whole milliseconds: a timer due in 30 µs fires about
// 1.1 ms late, and every publisher due meanwhile sends at once. Paced publishers then send
// in bursts shaped by the tool and by when the broker's deliveries happen to wake it, not
// at the rate asked for (docs/PERFORMANCE.md, session 20). A timerfd in the runtime's
// poller ends each such wait within a period.
func startTick(period time.Duration) (stop func(), err error) {
	fd, err := unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_NONBLOCK|unix.TFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("pacing tick: timerfd_create: %w", err)
	}
	ts := unix.NsecToTimespec(period.Nanoseconds())
	if err := unix.TimerfdSettime(fd, 0, &unix.ItimerSpec{Interval: ts, Value: ts}, nil); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("pacing tick: timerfd_settime: %w", err)
	}
	f := os.NewFile(uintptr(fd), "pacing-tick") // non-blocking: reads wait in the runtime's poller
	done := make(chan struct{})
	go func() {
		defer close(done)
		var b [8]byte // the count of expirations since the last read
		for {
			if _, err := f.Read(b[:]); err != nil {
				return // closed by stop
			}
		}
	}()
	return func() { f.Close(); <-done }, nil
}
