package broker_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"runtime"
	"sync"
	"testing"
	"time"

	"vitalmq/internal/broker"
	"vitalmq/internal/packet"
)

// Connections with nothing to read hold no reader goroutine ("dormant", unless
// Config.KeepReaders): these tests check that a dormant connection still receives, wakes
// on data (also the rest of a TLS record), ends at its keep alive, and is closed by a
// takeover and by a shutdown.

// testCert returns a self-signed certificate for 127.0.0.1 and a pool that trusts it.
func testCert(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "broker"},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, NotBefore: time.Now().Add(-time.Hour),
		NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// dormantServer starts a broker with the default configuration (connections go dormant), on plain
// TCP or TLS, and returns it with a dialer for raw clients (the dialer's plain TCP
// connection is passed to wrap, when not nil, before TLS goes over it).
func dormantServer(t *testing.T, useTLS bool) (*testServer, func(wrap func(net.Conn) net.Conn) *rawConn) {
	t.Helper()
	return dormantServerCfg(t, useTLS, broker.Config{})
}

// dormantServerCfg is dormantServer with cfg.
func dormantServerCfg(t *testing.T, useTLS bool, cfg broker.Config) (*testServer, func(wrap func(net.Conn) net.Conn) *rawConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if !useTLS {
		s := serveOn(t, cfg, ln, ln, nil)
		return s, func(func(net.Conn) net.Conn) *rawConn { return dialRaw(t, s.Addr) }
	}
	cert, pool := testCert(t)
	s := serveOn(t, cfg, ln, ln, &tls.Config{Certificates: []tls.Certificate{cert}})
	return s, func(wrap func(net.Conn) net.Conn) *rawConn {
		t.Helper()
		nc, err := net.Dial("tcp", s.Addr)
		if err != nil {
			t.Fatal(err)
		}
		if wrap != nil {
			nc = wrap(nc)
		}
		// One record per write, up to 16 KiB (Go's client otherwise starts with records of
		// about 1.2 KB): the tests split records and grow crypto/tls's buffers with them.
		tc := tls.Client(nc, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", DynamicRecordSizingDisabled: true})
		t.Cleanup(func() { tc.Close() })
		return &rawConn{t: t, nc: tc}
	}
}

// overTCPAndTLS runs f as two subtests, over plain TCP and over TLS.
func overTCPAndTLS(t *testing.T, f func(t *testing.T, useTLS bool)) {
	for _, useTLS := range []bool{false, true} {
		t.Run(map[bool]string{false: "tcp", true: "tls"}[useTLS], func(t *testing.T) { f(t, useTLS) })
	}
}

// dialDevices connects n clients over dial, each with a clean start, keep alive 60 and the
// client id fmt.Sprintf(id, i); will, when not nil, gives client i's will.
func dialDevices(dial func(func(net.Conn) net.Conn) *rawConn, v byte, n int, id string, will func(i int) *packet.Will) []*rawConn {
	devs := make([]*rawConn, n)
	for i := range devs {
		p := &packet.Connect{Version: v, CleanStart: true, KeepAlive: 60, ClientID: fmt.Sprintf(id, i)}
		if will != nil {
			p.HasWill, p.Will = true, *will(i)
		}
		devs[i] = dial(nil)
		devs[i].connect(p)
	}
	return devs
}

func allDormant(t *testing.T, s *testServer, n int) {
	t.Helper()
	eventually(t, 10*time.Second, fmt.Sprintf("%d dormant connections", n), func() bool { return s.Dormant() == n })
}

func TestDormantConnectionsServeAndWake(t *testing.T) {
	overTCPAndTLS(t, func(t *testing.T, useTLS bool) {
		const devices = 40
		v := packet.Version311
		s, dial := dormantServer(t, useTLS)
		base := runtime.NumGoroutine()
		sub := dial(nil)
		sub.connect(&packet.Connect{Version: v, CleanStart: true, KeepAlive: 60, ClientID: "dashboard"})
		sub.ftSub(v, "d/#", 1)
		devs := dialDevices(dial, v, devices, "dev-%d", nil)
		allDormant(t, s, devices+1)
		// The point: 41 connections, no goroutine each (the test's clients have none).
		if n := runtime.NumGoroutine(); n > base+10 {
			t.Fatalf("%d goroutines with %d dormant connections, %d before them", n, devices+1, base)
		}
		// A dormant subscriber is written to; a dormant publisher wakes on its PUBLISH.
		for round := range 2 {
			for i, d := range devs {
				d.ftPublish(v, &packet.Publish{QoS: 1, PacketID: uint16(round + 1), Topic: fmt.Sprintf("d/%d", i), Payload: []byte("72 bpm")})
			}
			for _, d := range devs {
				d.expect(fmt.Sprintf("40 02 00 %02x", round+1))
			}
			seen := map[string]bool{}
			for range devs {
				p := sub.ftReadPublish(v)
				seen[p.Topic] = true
				sub.write(packet.AppendAck(nil, &packet.Ack{Type: packet.PUBACK, PacketID: p.PacketID}, v))
			}
			if len(seen) != devices {
				t.Fatalf("round %d: %d distinct topics delivered, want %d", round, len(seen), devices)
			}
			allDormant(t, s, devices+1) // and back to sleep
		}
		sub.send("C0 00") // PINGREQ wakes it too
		sub.expect("D0 00")
	})
}

// TestDormantKeepAliveExpiry: a dormant client that sends nothing is disconnected at 1.5 ×
// its keep alive [MQTT-3.1.2-22] and its will is published, as when a reader waits.
func TestDormantKeepAliveExpiry(t *testing.T) {
	v := packet.Version311
	s, dial := dormantServer(t, false)
	watch := dial(nil)
	watch.connect(&packet.Connect{Version: v, CleanStart: true, KeepAlive: 60, ClientID: "nurse"})
	watch.ftSub(v, "will/#", 0)
	silent := dial(nil)
	start := time.Now()
	silent.connect(&packet.Connect{Version: v, CleanStart: true, KeepAlive: 1, ClientID: "pump",
		HasWill: true, Will: packet.Will{Topic: "will/pump", Payload: []byte("offline")}})
	allDormant(t, s, 2)
	silent.expectClosed(5 * time.Second)
	if d := time.Since(start); d < 1500*time.Millisecond {
		t.Fatalf("closed after %v, before 1.5 × keep alive", d)
	}
	if p := watch.ftReadPublish(v); p.Topic != "will/pump" || string(p.Payload) != "offline" {
		t.Fatalf("got %s %q, want the will", p.Topic, p.Payload)
	}
}

// TestDormantTakeoverAndShutdown: a dormant 5.0 client hears why it is closed, by a
// takeover (0x8E) and by a shutdown (0x8B), and the shutdown waits for it.
func TestDormantTakeoverAndShutdown(t *testing.T) {
	v := packet.Version5
	s, dial := dormantServer(t, true)
	first := dial(nil)
	first.connect(&packet.Connect{Version: v, CleanStart: true, KeepAlive: 60, ClientID: "monitor-7"})
	allDormant(t, s, 1)
	second := dial(nil)
	second.connect(&packet.Connect{Version: v, CleanStart: false, KeepAlive: 60, ClientID: "monitor-7"})
	first.expectClosed(5*time.Second, "E0 01 8E")
	allDormant(t, s, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown with a dormant connection: %v", err)
	}
	second.expectClosed(5*time.Second, "E0 01 8B")
}

// splitConn writes the next record it is given in two parts: the first at once, the
// second when the test sends it.
type splitConn struct {
	net.Conn
	mu    sync.Mutex
	split bool
	rest  []byte
}

func (c *splitConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.split {
		return c.Conn.Write(b)
	}
	c.split = false
	c.rest = append([]byte(nil), b[len(b)/2:]...)
	if _, err := c.Conn.Write(b[:len(b)/2]); err != nil {
		return 0, err
	}
	return len(b), nil
}

// TestDormantPartialTLSRecord: a connection that goes dormant holding half a TLS record
// (crypto/tls keeps it) completes the record when the rest arrives: a small record, and
// one large enough that its buffer would be given back if it held nothing.
func TestDormantPartialTLSRecord(t *testing.T) {
	v := packet.Version311
	s, dial := dormantServer(t, true)
	sub := dial(nil)
	sub.connect(&packet.Connect{Version: v, CleanStart: true, KeepAlive: 60, ClientID: "dashboard"})
	sub.ftSub(v, "d/#", 0)
	var sc *splitConn
	dev := dial(func(nc net.Conn) net.Conn { sc = &splitConn{Conn: nc}; return sc })
	dev.connect(&packet.Connect{Version: v, CleanStart: true, KeepAlive: 60, ClientID: "oximeter"})
	large := make([]byte, 8<<10)
	for i := range large {
		large[i] = byte(i)
	}
	for i, payload := range [][]byte{[]byte("97"), large} {
		allDormant(t, s, 2)
		sc.mu.Lock()
		sc.split = true
		sc.mu.Unlock()
		woke := s.Wakes()
		id := uint16(9 + i)
		dev.ftPublish(v, &packet.Publish{QoS: 1, PacketID: id, Topic: "d/spo2", Payload: payload})
		// It wakes on the first half, reads it, and goes dormant again waiting for the rest.
		eventually(t, 10*time.Second, "a wake, then dormant again", func() bool { return s.Wakes() > woke && s.Dormant() == 2 })
		sc.mu.Lock()
		rest := sc.rest
		sc.mu.Unlock()
		if len(rest) == 0 {
			t.Fatal("the record was not split")
		}
		if _, err := sc.Conn.Write(rest); err != nil {
			t.Fatal(err)
		}
		dev.expect(fmt.Sprintf("40 02 00 %02x", id))
		if p := sub.ftReadPublish(v); p.Topic != "d/spo2" || !bytes.Equal(p.Payload, payload) {
			t.Fatalf("%d-byte message: got %s with %d bytes", len(payload), p.Topic, len(p.Payload))
		}
	}
}

// TestKeepReaders: with KeepReaders, no connection goes dormant, and every one keeps
// its reader goroutine while it waits.
func TestKeepReaders(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := serveOn(t, broker.Config{KeepReaders: true}, ln, ln, nil)
	v := packet.Version311
	const devices = 20
	for i := range devices {
		d := dialRaw(t, s.Addr)
		d.connect(&packet.Connect{Version: v, CleanStart: true, KeepAlive: 60, ClientID: fmt.Sprintf("dev-%d", i)})
		d.ftPublish(v, &packet.Publish{QoS: 1, PacketID: 1, Topic: "d/x", Payload: []byte("72")})
		d.expect("40 02 00 01")
	}
	eventually(t, 10*time.Second, "a reader goroutine per connection", func() bool { return readLoops() >= devices })
	if n := s.Dormant(); n != 0 {
		t.Fatalf("%d dormant connections with KeepReaders", n)
	}
}

// readLoops counts the goroutines in a connection's read loop (not a count against one
// taken before: a goroutine of an earlier test may still be ending then).
func readLoops() int {
	buf := make([]byte, 1<<20)
	return bytes.Count(buf[:runtime.Stack(buf, true)], []byte("vitalmq/internal/broker.(*conn).loop("))
}

// TestDormantHangUpAfterData: devices that send a packet and hang up at once (no
// DISCONNECT, no TLS close_notify) are seen gone at once, not at their keep alive: their
// wills go out. The read of the packet is short and leaves the end of the stream unread,
// and the hang-up's wake finds the connection awake; it must not sleep through it.
func TestDormantHangUpAfterData(t *testing.T) {
	overTCPAndTLS(t, func(t *testing.T, useTLS bool) {
		const devices = 40
		v := packet.Version311
		s, dial := dormantServer(t, useTLS)
		watch := dial(nil)
		watch.connect(&packet.Connect{Version: v, CleanStart: true, KeepAlive: 60, ClientID: "nurse"})
		watch.ftSub(v, "will/#", 0)
		devs := dialDevices(dial, v, devices, "pump-%d", func(i int) *packet.Will {
			return &packet.Will{Topic: fmt.Sprintf("will/%d", i), Payload: []byte("offline")}
		})
		allDormant(t, s, devices+1)
		for i, d := range devs {
			d.write(packet.AppendPublish(nil, &packet.Publish{Topic: fmt.Sprintf("d/%d", i), Payload: []byte("72")}, v))
			if tc, ok := d.nc.(*tls.Conn); ok {
				tc.NetConn().Close() // abruptly: no close_notify
			} else {
				d.nc.Close()
			}
		}
		wills := map[string]bool{}
		for range devs {
			p := watch.ftReadPublish(v) // waits 2 s at most; the keep alive is 90
			wills[p.Topic] = true
		}
		if len(wills) != devices {
			t.Fatalf("%d distinct wills, want %d", len(wills), devices)
		}
	})
}

// TestDormantPooledPacketsCarryNothing: a dormant connection gives its decoded PUBLISH back
// to a pool, and the next connection to publish may take it: that one's message carries
// none of the first one's properties. (sync.Pool keeps a cache per processor, so one round
// may not hand the same packet over; twenty rounds do, all but surely.) Two things keep it
// so, and this fails only if both go: sleep empties the packet, and DecodePublish sets
// every field.
func TestDormantPooledPacketsCarryNothing(t *testing.T) {
	v := packet.Version5
	s, dial := dormantServer(t, false)
	sub := dial(nil)
	sub.connect(&packet.Connect{Version: v, CleanStart: true, KeepAlive: 60, ClientID: "dash"})
	sub.ftSub(v, "p/#", 0)
	a, b := dial(nil), dial(nil)
	a.connect(&packet.Connect{Version: v, CleanStart: true, KeepAlive: 60, ClientID: "dev-a"})
	b.connect(&packet.Connect{Version: v, CleanStart: true, KeepAlive: 60, ClientID: "dev-b"})
	allDormant(t, s, 3)
	props := packet.Properties{ContentType: "application/json", CorrelationData: []byte("req-1"),
		User: []packet.UserProperty{{Key: "patient", Value: "bed-4"}}}
	props.Set(packet.PropContentType)
	props.Set(packet.PropCorrelationData)
	for round := range 20 {
		a.ftPublish(v, &packet.Publish{Topic: "p/a", Payload: []byte("spo2 97"), Props: props})
		if p := sub.ftReadPublish(v); p.Topic != "p/a" || p.Props.ContentType != "application/json" || len(p.Props.User) != 1 {
			t.Fatalf("round %d, first message: %q with %+v, want its properties", round, p.Topic, p.Props)
		}
		allDormant(t, s, 3) // dev-a's decoded PUBLISH is back in the pool
		b.ftPublish(v, &packet.Publish{Topic: "p/b", Payload: []byte("hr 71")})
		p := sub.ftReadPublish(v)
		if p.Topic != "p/b" || string(p.Payload) != "hr 71" || p.Props.ContentType != "" || p.Props.CorrelationData != nil || len(p.Props.User) != 0 {
			t.Fatalf("round %d, second message: %q %q with %+v, want no properties", round, p.Topic, p.Payload, p.Props)
		}
		allDormant(t, s, 3)
	}
}

// TestDormantTLSGivesBackHandshakeBuffers: crypto/tls keeps the buffers its handshake grew
// to the ClientHello (1.5 KB and more with Go's post-quantum key share) for a connection's
// life; a dormant TLS connection holds none of them. After that it keeps a raw-record buffer
// its messages need, up to 2 KiB (not growing one again at every wake), and gives back one a
// large message grew. The connections work on after each release.
func TestDormantTLSGivesBackHandshakeBuffers(t *testing.T) {
	if !broker.TLSBuffersFound() {
		t.Fatalf("releaseTLSBuffers does nothing with %s: read its crypto/tls's uses of rawInput, input and hand, and add the release to tlsAudited (tlsbuf.go)", runtime.Version())
	}
	const devices, small, busy = 8, broker.TLSKeepRaw, broker.TLSKeepBusy
	v := packet.Version311
	s, dial := dormantServer(t, true)
	sub := dial(nil)
	sub.connect(&packet.Connect{Version: v, CleanStart: true, KeepAlive: 60, ClientID: "dashboard"})
	sub.ftSub(v, "d/#", 0)
	payload := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i)
		}
		return b
	}
	// A 1 KiB will makes a CONNECT record of over 1 KB: its raw-record buffer goes back too,
	// whether the CONNECT came with the client's Finished or after it.
	devs := dialDevices(dial, v, devices, "ecg-%d", func(i int) *packet.Will {
		return &packet.Will{Topic: fmt.Sprintf("will/%d", i), Payload: payload(1 << 10)}
	})
	// check: every dormant connection has no handshake-message buffer, and a raw-record
	// buffer of at most most bytes; a device's, of more than least.
	check := func(when string, least, most int) {
		t.Helper()
		var bufs map[string][2]int
		// The count of dormant connections goes up just before each one is marked so.
		eventually(t, 10*time.Second, fmt.Sprintf("%s: %d dormant TLS connections", when, devices+1), func() bool {
			bufs = s.TLSReadBuffers()
			return len(bufs) == devices+1
		})
		for id, b := range bufs {
			if b[0] != 0 || b[1] > most || id != "dashboard" && b[1] <= least {
				t.Fatalf("%s: %s keeps %d bytes of handshake buffer and %d of raw-record buffer, want 0 and %d < raw ≤ %d", when, id, b[0], b[1], least, most)
			}
		}
	}
	check("after CONNECT", -1, small)
	rounds := []struct {
		payload     []byte
		least, most int
	}{
		{[]byte("72 bpm"), -1, small},
		{payload(1 << 10), small, busy}, // grown, and kept
		{[]byte("71 bpm"), small, busy}, // still kept
		{payload(40 << 10), -1, busy},   // three 16 KiB records: grown, and given back
		{[]byte("70 bpm"), -1, small},
	}
	for round, r := range rounds {
		for i, d := range devs {
			d.ftPublish(v, &packet.Publish{Topic: fmt.Sprintf("d/%d", i), Payload: r.payload})
			p := sub.ftReadPublish(v)
			if p.Topic != fmt.Sprintf("d/%d", i) || !bytes.Equal(p.Payload, r.payload) {
				t.Fatalf("round %d: got %q with %d bytes, want d/%d with %d", round, p.Topic, len(p.Payload), i, len(r.payload))
			}
		}
		check(fmt.Sprintf("after round %d (%d-byte messages)", round, len(r.payload)), r.least, r.most)
	}
}
