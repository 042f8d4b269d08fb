package broker

import (
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"unsafe"
)

// sock is an accepted TCP connection whose reads can be probed: with probe set, Read
// does not wait. It returns errWouldBlock at once when the last read left the socket
// empty (it returned less than asked: what came since has been counted in arrivals, see
// conn.sleep), and otherwise makes one read(2), returning errWouldBlock when there was
// nothing. It sits under crypto/tls, so that a probe also takes the records crypto/tls
// already holds (see conn.await). Writes and everything else are the TCPConn's.
type sock struct {
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
	if !s.probe || len(b) == 0 {
		s.seen = s.arrivals.Load()
		n, err := s.TCPConn.Read(b)
		s.drained = n < len(b)
		return n, err
	}
	if s.drained && !s.hup.Load() {
		s.drained = false // the next probe reads
		return 0, errWouldBlock
	}
	// Control, not Read: no deadline applies to a probe (the keep alive is conn.await's),
	// and nothing waits, so a raw system call does (the scheduler need not know). Only the
	// reader goroutine reads this socket.
	r := rawReads.Get().(*rawRead)
	r.b = b
	s.seen = s.arrivals.Load()
	err := s.rc.Control(r.fn)
	n, errno := r.n, r.errno
	r.b = nil
	rawReads.Put(r)
	if err != nil {
		return 0, err // closed
	}
	switch {
	case errno == syscall.EAGAIN:
		return 0, errWouldBlock
	case errno != 0:
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: s.LocalAddr(), Addr: s.RemoteAddr(), Err: os.NewSyscallError("read", errno)}
	case n == 0:
		return 0, io.EOF
	}
	s.drained = int(n) < len(b)
	return int(n), nil
}

// rawRead is a probe's read(2), run by RawConn.Control: its buffer and results. A closure
// made at each probe would escape through Control and cost three allocations a message.
type rawRead struct {
	b     []byte
	n     uintptr
	errno syscall.Errno
	fn    func(fd uintptr) // read, bound once
}

var rawReads = sync.Pool{New: func() any {
	r := new(rawRead)
	r.fn = r.read
	return r
}}

func (r *rawRead) read(fd uintptr) {
	for {
		if r.n, _, r.errno = syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&r.b[0])), uintptr(len(r.b))); r.errno != syscall.EINTR {
			return
		}
	}
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
