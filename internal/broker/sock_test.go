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
