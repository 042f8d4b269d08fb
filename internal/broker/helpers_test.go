package broker_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"vitalmq/internal/broker"
	"vitalmq/internal/packet"
)

// testServer is a real broker on 127.0.0.1:0.
type testServer struct {
	*broker.Server
	Addr string
}

// startServer starts a broker with cfg on a plain TCP loopback listener (anonymous allowed
// unless cfg has an Authenticator) and stops it at the end of the test, checking that no
// goroutine outlives it.
func startServer(t testing.TB, cfg broker.Config) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveOn(t, cfg, ln, ln, nil)
}

// serveOn runs a broker with cfg on serve (which may wrap ln, e.g. a WebSocket listener),
// over TLS with tcfg when not nil, until the end of the test, then shuts it down and checks
// that no goroutine outlives it.
func serveOn(t testing.TB, cfg broker.Config, ln, serve net.Listener, tcfg *tls.Config) *testServer {
	t.Helper()
	base := runtime.NumGoroutine()
	if cfg.SysInterval == 0 {
		cfg.SysInterval = -1
	}
	srv, err := broker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- srv.Serve(serve, broker.ListenerOptions{Name: "test", AllowAnonymous: cfg.Authenticator == nil, TLS: tcfg})
	}()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, broker.ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
		waitGoroutines(t, base)
	})
	return &testServer{Server: srv, Addr: ln.Addr().String()}
}

// waitGoroutines waits until the goroutine count is back to base (±2): a leak check.
func waitGoroutines(t testing.TB, base int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= base+2 {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Errorf("goroutines: %d, want at most %d (leak)\n%s", n, base+2, buf)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// eventually polls cond until it holds or the timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// rawConn is a raw TCP client that speaks hex.
type rawConn struct {
	t  testing.TB
	nc net.Conn
}

func dialRaw(t testing.TB, addr string) *rawConn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	return &rawConn{t: t, nc: nc}
}

// unhex decodes a hex string with optional spaces.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// send writes hex bytes.
func (c *rawConn) send(h string) {
	c.t.Helper()
	c.write(unhex(c.t, h))
}

func (c *rawConn) write(b []byte) {
	c.t.Helper()
	c.nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// readPacket reads one whole packet (header and body) within timeout.
func (c *rawConn) readPacket(timeout time.Duration) ([]byte, error) {
	c.nc.SetReadDeadline(time.Now().Add(timeout))
	var hdr [5]byte
	if _, err := io.ReadFull(c.nc, hdr[:1]); err != nil {
		return nil, err
	}
	n, mult, i := 0, 1, 1
	for ; i < 5; i++ {
		if _, err := io.ReadFull(c.nc, hdr[i:i+1]); err != nil {
			return nil, err
		}
		n += int(hdr[i]&0x7f) * mult
		mult <<= 7
		if hdr[i]&0x80 == 0 {
			break
		}
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(c.nc, body); err != nil {
		return nil, err
	}
	return append(hdr[:i+1:i+1], body...), nil
}

// expect reads one packet and compares it with hex.
func (c *rawConn) expect(h string) {
	c.t.Helper()
	got, err := c.readPacket(2 * time.Second)
	if err != nil {
		c.t.Fatalf("read: %v, want % x", err, unhex(c.t, h))
	}
	if want := unhex(c.t, h); !bytes.Equal(got, want) {
		c.t.Fatalf("got % x, want % x", got, want)
	}
}

// expectType reads one packet and checks its type; it returns the packet.
func (c *rawConn) expectType(typ packet.Type) []byte {
	c.t.Helper()
	got, err := c.readPacket(2 * time.Second)
	if err != nil {
		c.t.Fatalf("read: %v, want %v", err, typ)
	}
	if packet.Type(got[0]>>4) != typ {
		c.t.Fatalf("got % x, want a %v", got, typ)
	}
	return got
}

// expectClosed reads until EOF, failing if it sees anything other than the packets in allowed (hex).
func (c *rawConn) expectClosed(timeout time.Duration, allowed ...string) {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(timeout))
	var got []byte
	buf := make([]byte, 4096)
	for {
		n, err := c.nc.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				c.t.Fatalf("connection still open after %v (received % x)", timeout, got)
			}
			break
		}
	}
	if len(got) == 0 {
		return
	}
	for _, a := range allowed {
		if sameDisconnect(got, unhex(c.t, a)) {
			return
		}
	}
	c.t.Fatalf("before close got % x, want one of %v or nothing", got, allowed)
}

// expectSilence checks that nothing arrives within d.
func (c *rawConn) expectSilence(d time.Duration) {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(d))
	var b [1]byte
	n, err := c.nc.Read(b[:])
	if n > 0 {
		c.t.Fatalf("unexpected data % x", b[:n])
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		c.t.Fatalf("connection closed (%v), want it open and silent", err)
	}
}

// connect sends a CONNECT built from p and expects a successful CONNACK.
func (c *rawConn) connect(p *packet.Connect) {
	c.t.Helper()
	c.write(packet.AppendConnect(nil, p))
	ack := c.expectType(packet.CONNACK)
	if p.Version == packet.Version5 && ack[3] != 0 || p.Version < packet.Version5 && ack[3] != 0 {
		c.t.Fatalf("CONNACK % x, want success", ack)
	}
}

// checkAlive is the "broker alive" post-check: a fresh client connects and pings within 1 s.
func checkAlive(t testing.TB, addr string) {
	t.Helper()
	c := dialRaw(t, addr)
	c.write(packet.AppendConnect(nil, &packet.Connect{Version: packet.Version311, CleanStart: true, KeepAlive: 60, ClientID: "alive-check"}))
	got, err := c.readPacket(time.Second)
	if err != nil || !bytes.Equal(got, []byte{0x20, 2, 0, 0}) {
		t.Fatalf("alive check: CONNACK % x, %v", got, err)
	}
	c.send("C0 00")
	got, err = c.readPacket(time.Second)
	if err != nil || !bytes.Equal(got, []byte{0xD0, 0}) {
		t.Fatalf("alive check: PINGRESP % x, %v", got, err)
	}
	c.nc.Close()
}

// sameDisconnect compares received bytes with an expected packet; a 5.0 DISCONNECT
// matches when its reason code is the expected one, whatever properties (a Reason
// String) it carries.
func sameDisconnect(got, want []byte) bool {
	if bytes.Equal(got, want) {
		return true
	}
	if len(want) != 3 || want[0] != 0xE0 || len(got) < 3 || got[0] != 0xE0 {
		return false
	}
	n, i := 0, 1
	for mult := 1; i < len(got) && i < 5; i++ {
		n += int(got[i]&0x7f) * mult
		mult <<= 7
		if got[i]&0x80 == 0 {
			break
		}
	}
	return i+1 < len(got) && len(got) == i+1+n && got[i+1] == want[2]
}
