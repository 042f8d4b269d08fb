package broker

import (
	"bufio"
	"io"
	"net"
	"testing"
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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	peer, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	nc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	s, err := newSock(nc.(*net.TCPConn))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
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
