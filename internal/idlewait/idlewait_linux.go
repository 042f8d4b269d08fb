//go:build linux

package idlewait

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Waiter calls wake functions when their sockets become readable. Run delivers the calls;
// Close ends Run. The zero value is not usable: New makes one.
type Waiter struct {
	ep *os.File // a non-blocking epoll descriptor: the runtime's poller tells Run when it has events

	mu   sync.Mutex
	wake map[uint64]func() // armed sockets by key; an entry is taken out when it is called
	next uint64
}

// New makes a Waiter with an epoll set of its own.
func New() (*Waiter, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("idlewait: epoll_create1: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("idlewait: %w", err)
	}
	return &Waiter{ep: os.NewFile(uintptr(fd), "idlewait-epoll"), wake: make(map[uint64]func())}, nil
}

// Key returns a key for a socket's Arm and Disarm calls, never used before by this Waiter.
func (w *Waiter) Key() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.next++
	return w.next
}

// Arm calls wake once, from Run's goroutine, when the socket behind rc has something to
// read, was hung up or failed, unless Disarm(key) comes first. A socket is armed once at a
// time: arming it again replaces wake. Closing the socket forgets it (the kernel takes a
// closed descriptor out of the set): who closes an armed socket calls its wake himself.
func (w *Waiter) Arm(rc syscall.RawConn, key uint64, wake func()) error {
	w.mu.Lock()
	w.wake[key] = wake
	w.mu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT,
		Fd: int32(uint32(key)), Pad: int32(uint32(key >> 32))} // Fd and Pad are epoll_data
	err := w.control(rc, func(ep, fd int) error {
		err := unix.EpollCtl(ep, unix.EPOLL_CTL_MOD, fd, &ev) // re-arms a socket that fired (one-shot) or not
		if err == unix.ENOENT {
			err = unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &ev)
		}
		return err
	})
	if err != nil {
		w.Disarm(key)
		return fmt.Errorf("idlewait: arm: %w", err)
	}
	return nil
}

// control runs f with the epoll descriptor and the socket's, both held open meanwhile (a
// descriptor number closed under it could name another file by then).
func (w *Waiter) control(rc syscall.RawConn, f func(ep, fd int) error) error {
	erc, err := w.ep.SyscallConn()
	if err != nil {
		return err
	}
	var serr, ferr error
	if err := erc.Control(func(ep uintptr) {
		serr = rc.Control(func(fd uintptr) { ferr = f(int(ep), int(fd)) })
	}); err != nil {
		return err
	}
	return errors.Join(serr, ferr)
}

// Disarm forgets key's wake function: it is not called after Disarm returns, unless Run
// had already taken it.
func (w *Waiter) Disarm(key uint64) {
	w.mu.Lock()
	delete(w.wake, key)
	w.mu.Unlock()
}

// Run calls the wake functions of sockets as they become readable, until Close.
func (w *Waiter) Run() {
	erc, err := w.ep.SyscallConn()
	if err != nil {
		return
	}
	events := make([]unix.EpollEvent, 256)
	var due []func()
	// The callback never reports done: it drains the set, then waits for the runtime's
	// poller to report the epoll descriptor readable again. Read returns when Close closes it.
	erc.Read(func(ep uintptr) bool {
		for {
			n, err := unix.EpollWait(int(ep), events, 0)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return false
			}
			w.mu.Lock()
			for _, ev := range events[:n] {
				key := uint64(uint32(ev.Fd)) | uint64(uint32(ev.Pad))<<32
				if f, ok := w.wake[key]; ok {
					delete(w.wake, key)
					due = append(due, f)
				}
			}
			w.mu.Unlock()
			for i, f := range due {
				f()
				due[i] = nil
			}
			due = due[:0]
			if n < len(events) {
				return false
			}
		}
	})
}

// Close ends Run. Armed sockets are not called.
func (w *Waiter) Close() error {
	return w.ep.Close()
}
