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

func (w *Waiter) Key() uint64                                           { return 0 }
func (w *Waiter) Arm(rc syscall.RawConn, key uint64, wake func()) error { return errors.ErrUnsupported }
func (w *Waiter) Disarm(key uint64)                                     {}
func (w *Waiter) Run()                                                  {}
func (w *Waiter) Close() error                                          { return nil }
