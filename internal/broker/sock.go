package broker

import (
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
)

// sock is an accepted TCP connection whose reads can be probed: with probe set, Read
// does not wait. It returns errWouldBlock at once when the last read left the socket
// empty (it returned less than asked: what came since has been counted in arrivals, see
// conn.sleep), and otherwise makes one read(2), returning errWouldBlock when there was
// nothing. On a TLS listener it sits under crypto/tls, so that a probe also takes the
// records crypto/tls already holds (see conn.await). Its reads and writes are raw system
// calls (see rawRead); everything else is the TCPConn's.
type sock struct {
	// The TCPConn's ReadFrom, WriteTo and writev (net.Buffers) would bypass Read and Write:
	// the broker uses none of them on a sock.
	*net.TCPConn
	rc      syscall.RawConn
	probe   bool // set and cleared by the reader goroutine around a probe
	drained bool // the last read returned less than asked
	// arrivals counts the Server's Waiter's calls (data or a hang-up arrived); seen is
	// what it was before the last read, so that data which came since is not slept through.
	arrivals atomic.Uint32
	seen     uint32
	// hup: the client hung up (or the socket failed). A short read then does not mean
	// that the socket is empty: the end of the stream is still to be read.
	hup atomic.Bool

	// Writes: wmu orders them and guards backlog; it is held across a write that may wait,
	// so only Write and drain take it. With nowait set (noWait), a Write does not wait for
	// room: what the socket does not take now is kept in backlog (left: backlog is not
	// empty), and the next Write that may wait (a flusher's) or drain writes it first.
	// writes counts the Writes under way: noWait sets nowait only when none is, since one
	// that waits could hold crypto/tls's write lock meanwhile.
	wmu     sync.Mutex
	backlog []byte
	left    atomic.Bool
	nowait  atomic.Bool
	writes  atomic.Int32
}

// wake is c's wake function for the Server's Waiter.
func (s *sock) wake(c *conn) func(hup bool) {
	return func(hup bool) {
		if hup {
			s.hup.Store(true) // before the count: see conn.sleep
		}
		s.arrivals.Add(1)
		c.resume()
	}
}

func newSock(tc *net.TCPConn) (*sock, error) {
	rc, err := tc.SyscallConn()
	if err != nil {
		return nil, err
	}
	return &sock{TCPConn: tc, rc: rc}, nil
}

func (s *sock) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	if s.probe && s.drained && !s.hup.Load() {
		s.drained = false // the next probe reads
		return 0, errWouldBlock
	}
	r := rawReads.Get().(*rawRead)
	r.b, r.n, r.errno = b, 0, 0 // Control and Read may fail without calling r's function
	s.seen = s.arrivals.Load()
	var err error
	if s.probe {
		// Control, not Read: no deadline applies to a probe (the keep alive is
		// conn.await's), and nothing waits. Only the reader goroutine reads this socket.
		err = s.rc.Control(r.once)
	} else {
		err = s.rc.Read(r.wait) // the poller waits while there is nothing, to the deadline
	}
	n, errno := r.n, r.errno
	r.b = nil
	rawReads.Put(r)
	if !s.probe {
		s.drained = n < len(b)
	}
	switch {
	case err != nil:
		return 0, s.opError("read", err) // closed, or past the deadline
	case errno == syscall.EAGAIN:
		return 0, errWouldBlock // a probe's
	case errno != 0:
		return 0, s.opError("read", os.NewSyscallError("read", errno))
	case n == 0:
		return 0, io.EOF
	}
	s.drained = n < len(b)
	return n, nil
}

// opError is err as the TCPConn would have said it: RawConn's calls name their operation
// "raw-read" or "raw-write".
func (s *sock) opError(op string, err error) error {
	if oe, ok := err.(*net.OpError); ok {
		err = oe.Err
	}
	return &net.OpError{Op: op, Net: "tcp", Source: s.LocalAddr(), Addr: s.RemoteAddr(), Err: err}
}

// A sock's reads and writes are raw system calls, made through RawConn's Control, Read
// and Write: the socket is non-blocking, so none blocks, and the runtime's poller waits
// when there is nothing to read or no room to write (keeping the deadlines). Told of each
// (syscall.Syscall), the runtime wakes its monitor thread from its sleep at every one made
// after the process had gone idle, and the monitor then polls every 20 µs for the next
// millisecond: at 10,000 devices sending one message a second each, on a core of its own
// shared by all the broker's threads, that was a fifth of the broker's CPU
// (docs/PERFORMANCE.md, session 14). The calls are sysRead and sysWrite (sysio.go); with
// the race detector or a sanitizer they go through package syscall (sysio_checked.go).
//
// rawRead is a read(2)'s buffer and results, for RawConn's functions. Closures made at
// each read would escape through RawConn and cost three allocations a message.
type rawRead struct {
	b     []byte
	n     int
	errno syscall.Errno
	once  func(fd uintptr)      // read, bound once
	wait  func(fd uintptr) bool // read, false when there was nothing
}

var rawReads = sync.Pool{New: func() any {
	r := new(rawRead)
	r.once = r.read
	r.wait = func(fd uintptr) bool { r.read(fd); return r.errno != syscall.EAGAIN }
	return r
}}

func (r *rawRead) read(fd uintptr) {
	for {
		if r.n, r.errno = sysRead(fd, r.b); r.errno != syscall.EINTR {
			return
		}
	}
}

// Write writes all of b, as the TCPConn would (see rawRead for why raw); with nowait set,
// what the socket takes now, the rest left in backlog (see noWait).
func (s *sock) Write(b []byte) (int, error) {
	s.writes.Add(1) // before nowait is read: see noWait
	defer s.writes.Add(-1)
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.writeLocked(b)
}

func (s *sock) writeLocked(b []byte) (int, error) {
	if s.nowait.Load() {
		all := len(b)
		if len(s.backlog) == 0 {
			n, err := s.write(b, false)
			if err != nil {
				return n, err
			}
			b = b[n:]
		}
		if len(b) > 0 {
			s.backlog = append(s.backlog, b...) // in order, after what is left already
			s.left.Store(true)
		}
		return all, nil
	}
	if err := s.drainLocked(); err != nil {
		return 0, err
	}
	return s.write(b, true)
}

// drainLocked writes backlog, waiting for room (to the write deadline). Called with wmu
// held.
func (s *sock) drainLocked() error {
	if len(s.backlog) == 0 {
		return nil
	}
	_, err := s.write(s.backlog, true)
	s.backlog = nil
	s.left.Store(false)
	return err
}

// drain writes what Writes that did not wait left (see noWait), waiting for room.
func (s *sock) drain() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.drainLocked()
}

// noWait makes the Writes that follow not wait for room in the socket (until waitAgain):
// a reader that writes another connection's deliveries (conn.writeNow) must never wait
// for that client, which may have stopped reading (T76). It reports false, changing
// nothing, while a Write is under way (it may be waiting, and hold crypto/tls's write
// lock) or a backlog waits to be written.
func (s *sock) noWait() bool {
	s.nowait.Store(true)
	// A Write counted before this load is seen here; one counted after reads nowait set.
	if s.writes.Load() != 0 || s.backlogged() {
		s.nowait.Store(false)
		return false
	}
	return true
}

// waitAgain ends noWait: Writes wait for room again. It reports whether the Writes
// meanwhile left a backlog, for a flusher to drain. (Not waiting for wmu, it may miss what
// one of crypto/tls's own writes, a KeyUpdate or an alert made by the reader at the same
// time, leaves: that is written first by the next Write that may wait.)
func (s *sock) waitAgain() bool {
	s.nowait.Store(false)
	return s.left.Load()
}

// backlogged reports whether a backlog waits to be written; it never waits for wmu, so
// that it may be called under conn.outMu.
func (s *sock) backlogged() bool { return s.left.Load() }

// write writes b with raw write(2)s: all of it, waiting for room (to the write deadline),
// or (wait false) what the socket takes now, without looking at the deadline.
func (s *sock) write(b []byte, wait bool) (int, error) {
	w := rawWrites.Get().(*rawWrite)
	w.b, w.n, w.err = b, 0, nil
	var err error
	if wait {
		err = s.rc.Write(w.fn)
	} else {
		err = s.rc.Control(w.once)
	}
	n := w.n
	if err == nil {
		err = w.err
	}
	w.b, w.err = nil, nil
	rawWrites.Put(w)
	if err != nil {
		return n, s.opError("write", err)
	}
	return n, nil
}

// rawWrite is a Write's state for RawConn.Write's function, pooled as rawRead is.
type rawWrite struct {
	b    []byte
	n    int
	err  error
	fn   func(fd uintptr) bool // write, bound once
	once func(fd uintptr)      // write, not waiting
}

var rawWrites = sync.Pool{New: func() any {
	w := new(rawWrite)
	w.fn = w.write
	w.once = func(fd uintptr) { w.write(fd) }
	return w
}}

// write writes what is left of b; false when the socket's buffer is full.
func (w *rawWrite) write(fd uintptr) bool {
	for w.n < len(w.b) {
		n, errno := sysWrite(fd, w.b[w.n:])
		switch errno {
		case 0:
			if n == 0 {
				w.err = io.ErrUnexpectedEOF // as internal/poll says it; never seen on a socket
				return true
			}
			w.n += n
		case syscall.EINTR:
		case syscall.EAGAIN:
			return false
		default:
			w.err = os.NewSyscallError("write", errno)
			return true
		}
	}
	return true
}

// errWouldBlock is a probe's answer when the socket has nothing to read. crypto/tls keeps
// a temporary net.Error to itself (it does not make the connection fail for good), and
// keeps what part of a record it has read.
var errWouldBlock error = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "nothing to read yet" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

// dataFirst is what the bufio.Reader of a dormant-capable connection reads: its net.Conn,
// less an errWouldBlock that comes with data. crypto/tls returns a record's data with the
// error of its look at a following alert record that arrived in part; bufio would keep
// that error and hand it to a later read that is meant to wait. The next probe asks again.
type dataFirst struct{ net.Conn }

func (d *dataFirst) Read(b []byte) (int, error) {
	n, err := d.Conn.Read(b)
	if n > 0 && err == errWouldBlock {
		err = nil
	}
	return n, err
}
