//go:build !linux

package idlewait

import (
	"errors"
	"syscall"
)

// Waiter is Linux only: New reports errors.ErrUnsupported here.
type Waiter struct{}

// New reports errors.ErrUnsupported: callers keep a reader goroutine per connection.
func New() (*Waiter, error) { return nil, errors.ErrUnsupported }

func (w *Waiter) Add(rc syscall.RawConn, wake func(hup bool)) (uint64, error) {
	return 0, errors.ErrUnsupported
}
func (w *Waiter) Remove(key uint64) {}
func (w *Waiter) Run()              {}
func (w *Waiter) Close() error      { return nil }
