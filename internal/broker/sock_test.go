package broker

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"
)

// partialAlertConn returns data together with errWouldBlock once, as crypto/tls does when
// a probe finds a record's data followed by part of an alert record, then data alone.
type partialAlertConn struct {
	net.Conn
	reads [][]byte
	errs  []error
}

func (c *partialAlertConn) Read(b []byte) (int, error) {
	if len(c.reads) == 0 {
		return 0, io.EOF
	}
	n := copy(b, c.reads[0])
	err := c.errs[0]
	c.reads, c.errs = c.reads[1:], c.errs[1:]
	return n, err
}

// TestDataFirst: an errWouldBlock that came with data does not stay in bufio to fail the
// next read, which must wait for the rest of the packet instead.
func TestDataFirst(t *testing.T) {
	fake := &partialAlertConn{reads: [][]byte{{0x30, 0x04}, {'d', '/', 'x', '!'}}, errs: []error{errWouldBlock, nil}}
	br := bufio.NewReaderSize(&dataFirst{fake}, 16)
	if _, err := br.Peek(1); err != nil {
		t.Fatalf("probe: %v", err)
	}
	b := make([]byte, 6)
	if _, err := io.ReadFull(br, b); err != nil {
		t.Fatalf("reading the rest of the packet: %v", err)
	}
	if string(b[2:]) != "d/x!" {
		t.Fatalf("read % x", b)
	}
}

// TestSockProbe: a probe on a real socket returns what arrived, errWouldBlock when
// nothing did (without waiting), io.EOF once the peer closed, and allocates nothing: it
// runs for every message a dormant-capable connection reads.
func TestSockProbe(t *testing.T) {
	s, peer := sockPair(t)
	s.probe = true
	b := make([]byte, 8)
	if n, err := s.Read(b); n != 0 || err != errWouldBlock {
		t.Fatalf("empty socket: %d, %v; want errWouldBlock", n, err)
	}
	// The peer sends 4 bytes; a blocking read waits for the first (a probe could come
	// before they arrive), then a probe takes the rest and the next one finds nothing.
	if _, err := peer.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	s.probe = false
	if n, err := s.Read(b[:1]); n != 1 || err != nil {
		t.Fatalf("blocking read: %d, %v", n, err)
	}
	s.probe = true
	if n, err := s.Read(b); n != 3 || err != nil || string(b[:3]) != "ing" {
		t.Fatalf("probe: %d %q, %v; want 3 \"ing\"", n, b[:n], err)
	}
	if n, err := s.Read(b); n != 0 || err != errWouldBlock {
		t.Fatalf("probe after the data: %d, %v; want errWouldBlock", n, err)
	}
	if allocs := testing.AllocsPerRun(50, func() {
		s.drained = false // make each probe a read(2), not the short cut after a short read
		if n, err := s.Read(b); n != 0 || err != errWouldBlock {
			t.Fatalf("probe: %d, %v", n, err)
		}
	}); allocs != 0 && !raceOn {
		t.Errorf("a probe allocates %.1f times; want none", allocs)
	}
	peer.Close()
	s.drained = false
	for {
		n, err := s.Read(b)
		if err == errWouldBlock {
			continue // the FIN may not have arrived yet
		}
		if n != 0 || err != io.EOF {
			t.Fatalf("after the peer closed: %d, %v; want io.EOF", n, err)
		}
		break
	}
}

// sockPair returns a sock over an accepted loopback connection and its peer, both closed
// when the test ends.
func sockPair(t *testing.T) (*sock, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	nc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	s, err := newSock(nc.(*net.TCPConn))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, peer
}

// TestSockReadWrite: a sock's raw reads and writes behave as the TCPConn's: a read waits
// for data and honours its deadline, a write larger than the socket's buffers waits for
// room and writes it all, honours its deadline when the peer reads nothing, and fails once
// the peer is gone or the sock closed; errors say read or write, as the TCPConn's do; a
// write allocates nothing.
func TestSockReadWrite(t *testing.T) {
	s, peer := sockPair(t)
	b := make([]byte, 8)
	s.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	n, err := s.Read(b)
	var oe *net.OpError
	if n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &oe) || oe.Op != "read" {
		t.Fatalf("read past its deadline: %d, %v; want a read error, deadline exceeded", n, err)
	}
	s.SetReadDeadline(time.Time{})
	go peer.Write([]byte("pong"))
	if n, err := io.ReadFull(s, b[:4]); n != 4 || err != nil || string(b[:4]) != "pong" {
		t.Fatalf("read: %d %q, %v", n, b[:n], err)
	}

	// Small socket buffers, so that 4 MiB is far more than they hold and the write waits
	// for room.
	s.SetWriteBuffer(64 << 10)
	peer.(*net.TCPConn).SetReadBuffer(64 << 10)
	big := make([]byte, 4<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	s.SetWriteDeadline(time.Now().Add(500 * time.Millisecond))
	n, err = s.Write(big)
	if n == 0 || n == len(big) || !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &oe) || oe.Op != "write" {
		t.Fatalf("write to a peer that reads nothing: %d of %d, %v; want part, then a write error, deadline exceeded", n, len(big), err)
	}
	s.SetWriteDeadline(time.Time{})
	got := make(chan []byte, 1)
	go func() {
		all := make([]byte, len(big)+51*64) // AllocsPerRun runs its function once more
		io.ReadFull(peer, all)
		got <- all
	}()
	if m, err := s.Write(big[n:]); m != len(big)-n || err != nil {
		t.Fatalf("write while the peer reads: %d of %d, %v", m, len(big)-n, err)
	}
	if allocs := testing.AllocsPerRun(50, func() {
		if _, err := s.Write(big[:64]); err != nil {
			t.Fatal(err)
		}
	}); allocs != 0 && !raceOn {
		t.Errorf("a write allocates %.1f times; want none", allocs)
	}
	all := <-got
	if want := append(big[:len(big):len(big)], bytes.Repeat(big[:64], 51)...); !bytes.Equal(all, want) {
		t.Fatalf("the peer did not read the %d bytes written, in order", len(want))
	}

	// The peer is gone: once its RST is back, a write fails (the first may still be
	// accepted by the socket).
	peer.Close()
	for i := 0; ; i++ {
		if _, err = s.Write(big[:64]); err != nil {
			break
		}
		if i == 1000 {
			t.Fatal("1,000 writes to a closed peer succeeded")
		}
	}
	if !errors.Is(err, syscall.EPIPE) && !errors.Is(err, syscall.ECONNRESET) || !errors.As(err, &oe) || oe.Op != "write" {
		t.Fatalf("write after the peer closed: %v; want a write error, EPIPE or ECONNRESET", err)
	}

	// Closed: both say net.ErrClosed.
	s.Close()
	if _, err := s.Read(b); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("read after Close: %v; want net.ErrClosed", err)
	}
	if _, err := s.Write(b); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("write after Close: %v; want net.ErrClosed", err)
	}
}

// TestSockNoWait: after noWait, a write to a socket whose peer reads nothing returns at
// once, all of it accepted, and keeps what the socket did not take; the next write that
// may wait (or drain) writes that first, so the peer reads every byte once, in order.
// noWait refuses, changing nothing, while a backlog waits or a write is under way (one
// waiting for room could hold crypto/tls's write lock).
func TestSockNoWait(t *testing.T) {
	s, peer := sockPair(t)
	s.SetWriteBuffer(64 << 10)
	peer.(*net.TCPConn).SetReadBuffer(64 << 10)
	big := make([]byte, 4<<20)
	for i := range big {
		big[i] = byte(i * 7)
	}
	tail := []byte("after the backlog")
	// A write that waited would fail at this deadline: the peer reads nothing yet.
	s.SetWriteDeadline(time.Now().Add(2 * time.Second))
	if !s.noWait() {
		t.Fatal("noWait on an idle socket: false")
	}
	if n, err := s.Write(big[:1<<20]); n != 1<<20 || err != nil {
		t.Fatalf("write without waiting: %d of %d, %v", n, 1<<20, err)
	}
	if n, err := s.Write(big[1<<20:]); n != len(big)-1<<20 || err != nil {
		t.Fatalf("second write without waiting: %d of %d, %v", n, len(big)-1<<20, err)
	}
	if !s.waitAgain() {
		t.Fatal("4 MiB into a socket of 64 KiB left no backlog")
	}
	if s.noWait() || s.nowait.Load() {
		t.Fatal("noWait with a backlog waiting: true")
	}

	got := make(chan []byte, 1)
	go func() {
		all := make([]byte, len(big)+len(tail))
		io.ReadFull(peer, all)
		got <- all
	}()
	s.SetWriteDeadline(time.Time{})
	if n, err := s.Write(tail); n != len(tail) || err != nil {
		t.Fatalf("write after the backlog: %d of %d, %v", n, len(tail), err)
	}
	if s.backlogged() {
		t.Fatal("a write that may wait left the backlog")
	}
	if all := <-got; !bytes.Equal(all, append(big[:len(big):len(big)], tail...)) {
		t.Fatal("the peer did not read the backlog, then the next write, in order")
	}

	// A write under way (waiting for room): noWait refuses, and leaves writes waiting.
	done := make(chan error, 1)
	go func() {
		_, err := s.Write(big)
		done <- err
	}()
	for s.writes.Load() == 0 {
		time.Sleep(time.Millisecond) // until the write is under way
	}
	if s.noWait() || s.nowait.Load() {
		t.Fatal("noWait while a write is under way: true")
	}
	go func() {
		all := make([]byte, len(big))
		io.ReadFull(peer, all)
		got <- all
	}()
	if err := <-done; err != nil {
		t.Fatalf("the write under way: %v", err)
	}
	if !bytes.Equal(<-got, big) {
		t.Fatal("the peer did not read the write under way")
	}

	// drain writes a backlog on its own.
	if !s.noWait() {
		t.Fatal("noWait on an idle socket: false")
	}
	s.Write(big)
	if !s.waitAgain() {
		t.Fatal("4 MiB into a socket of 64 KiB left no backlog")
	}
	go func() {
		all := make([]byte, len(big))
		io.ReadFull(peer, all)
		got <- all
	}()
	if err := s.drain(); err != nil || s.backlogged() {
		t.Fatalf("drain: %v, backlog left: %v", err, s.backlogged())
	}
	if !bytes.Equal(<-got, big) {
		t.Fatal("the peer did not read the drained backlog")
	}
}
