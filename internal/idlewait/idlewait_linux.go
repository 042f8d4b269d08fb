//go:build linux

package idlewait

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Waiter calls wake functions when their sockets receive data. Run delivers the calls;
// Close ends Run. The zero value is not usable: New makes one.
type Waiter struct {
	ep  *os.File        // a non-blocking epoll descriptor: the runtime's poller tells Run when it has events
	erc syscall.RawConn // ep's

	mu   sync.Mutex
	wake map[uint64]func(hup bool) // added sockets by key
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
	ep := os.NewFile(uintptr(fd), "idlewait-epoll")
	erc, err := ep.SyscallConn()
	if err != nil {
		ep.Close()
		return nil, fmt.Errorf("idlewait: %w", err)
	}
	return &Waiter{ep: ep, erc: erc, wake: make(map[uint64]func(bool))}, nil
}

// Add calls wake from Run's goroutine each time data arrives on the socket behind rc, or
// it is hung up or fails (then with hup true), until Remove(key). Closing the socket also
// ends the calls (the kernel takes a closed descriptor out of the set); Remove forgets
// wake.
func (w *Waiter) Add(rc syscall.RawConn, wake func(hup bool)) (key uint64, err error) {
	w.mu.Lock()
	w.next++
	key = w.next
	w.wake[key] = wake
	w.mu.Unlock()
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLET,
		Fd: int32(uint32(key)), Pad: int32(uint32(key >> 32))} // Fd and Pad are epoll_data
	// Both Controls hold their descriptor open meanwhile: a number closed under them could
	// name another file by then.
	var serr, cerr error
	err = w.erc.Control(func(ep uintptr) {
		serr = rc.Control(func(fd uintptr) { cerr = epollCtl(int(ep), unix.EPOLL_CTL_ADD, int(fd), &ev) })
	})
	if err = errors.Join(err, serr, cerr); err != nil {
		w.Remove(key)
		return 0, fmt.Errorf("idlewait: add: %w", err)
	}
	return key, nil
}

// Remove forgets key's wake function: it is not called after Remove returns, unless Run
// had already taken it.
func (w *Waiter) Remove(key uint64) {
	w.mu.Lock()
	delete(w.wake, key)
	w.mu.Unlock()
}

// Run calls the wake functions of sockets as data arrives, until Close.
func (w *Waiter) Run() {
	events := make([]unix.EpollEvent, 256)
	type call struct {
		wake func(bool)
		hup  bool
	}
	var due []call
	// The callback never reports done: it drains the set, then waits for the runtime's
	// poller to report the epoll descriptor readable again. Read returns when Close closes it.
	w.erc.Read(func(ep uintptr) bool {
		for {
			n, err := epollPoll(int(ep), events)
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return false
			}
			w.mu.Lock()
			for _, ev := range events[:n] {
				if f, ok := w.wake[uint64(uint32(ev.Fd))|uint64(uint32(ev.Pad))<<32]; ok {
					due = append(due, call{f, ev.Events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLERR) != 0})
				}
			}
			w.mu.Unlock()
			for i, d := range due {
				d.wake(d.hup)
				due[i] = call{}
			}
			due = due[:0]
			if n < len(events) {
				return false
			}
		}
	})
}

// Close ends Run. Added sockets are not called.
func (w *Waiter) Close() error {
	return w.ep.Close()
}

// epollCtl and epollPoll are epoll_ctl and a non-blocking epoll_pwait as raw system calls:
// neither waits, so they need not tell the Go scheduler (unix.EpollCtl and EpollWait do,
// at a cost per wake).
func epollCtl(ep, op, fd int, ev *unix.EpollEvent) error {
	_, _, e := unix.RawSyscall6(unix.SYS_EPOLL_CTL, uintptr(ep), uintptr(op), uintptr(fd), uintptr(unsafe.Pointer(ev)), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

func epollPoll(ep int, events []unix.EpollEvent) (int, error) {
	n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(ep), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}
