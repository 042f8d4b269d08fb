//go:build !linux

package loadgen

import "time"

// startTick does nothing here: timers keep the runtime's own resolution (see tick_linux.go).
func startTick(time.Duration) (stop func(), err error) { return func() {}, nil }
