package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"vitalmq/internal/loadgen"
	"vitalmq/internal/packet"
	"vitalmq/internal/pki"
)

// start runs a forwarder on 127.0.0.1:0 (over TLS when tc is set) until the test ends.
func start(t *testing.T, tc *tls.Config) string {
	t.Helper()
	ln, err := listenLoopback("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	if tc != nil {
		ln = tls.NewListener(ln, tc)
	}
	done := make(chan struct{})
	go func() { new(forwarder).serve(ln); close(done) }()
	t.Cleanup(func() { ln.Close(); <-done })
	return addr
}

func TestListenLoopbackOnly(t *testing.T) {
	if ln, err := listenLoopback("0.0.0.0:0"); err == nil {
		ln.Close()
		t.Fatal("listened on 0.0.0.0")
	}
}

// The load tool, as bench/compare.sh runs it, loses nothing through the forwarder: every
// publication acknowledged and delivered to every subscriber, over TCP and TLS, 3.1.1 and 5.0.
func TestForwardsLoadTool(t *testing.T) {
	ca, err := pki.Init(t.TempDir(), nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile := ca.ServerCertFiles()
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	plain := start(t, nil)
	tlsAddr := start(t, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	clientTLS, err := loadgen.TLSOptions{}.Config("127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	clientTLS.RootCAs = ca.Pool()
	for _, c := range []struct {
		name string
		cfg  loadgen.PubSubConfig
	}{
		{"qos0 fan-in", loadgen.PubSubConfig{Target: loadgen.Target{Addr: plain}, Publishers: 4, Subscribers: 1, QoS: 0, Rate: 500}},
		{"qos1 fan-in tls", loadgen.PubSubConfig{Target: loadgen.Target{Addr: tlsAddr, TLS: clientTLS, Persistent: true},
			Publishers: 3, Subscribers: 2, QoS: 1, TotalRate: 2000, PersistentSubs: true}},
		{"qos2 fan-out mqtt5", loadgen.PubSubConfig{Target: loadgen.Target{Addr: plain, Version: packet.Version5},
			Publishers: 1, Subscribers: 3, QoS: 2, TopicMode: loadgen.TopicShared, Rate: 1000, PayloadSize: 200}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.cfg
			cfg.Warmup = 100 * time.Millisecond
			cfg.Duration = 500 * time.Millisecond
			cfg.Drain = 10 * time.Second
			cfg.BrokerPID = os.Getpid()
			res, err := loadgen.RunPubSub(t.Context(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			res.WriteTable(&buf)
			t.Logf("\n%s", buf.String())
			switch {
			case res.Sent == 0 || res.Latency.Count == 0:
				t.Errorf("nothing measured: sent %d, latency samples %d", res.Sent, res.Latency.Count)
			case res.Lost != 0 || res.Undelivered != 0 || res.Received != res.Expected || res.DuplicateOrLate != 0:
				t.Errorf("lost %d, undelivered %d, duplicate %d, received %d of %d",
					res.Lost, res.Undelivered, res.DuplicateOrLate, res.Received, res.Expected)
			case cfg.QoS > 0 && (res.Acked != res.Sent || res.AckFailed != 0):
				t.Errorf("acked %d (failed %d) of %d", res.Acked, res.AckFailed, res.Sent)
			}
		})
	}
}

// rawClient is a connection speaking MQTT packet by packet.
type rawClient struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

func dial(t *testing.T, addr string) *rawClient { return dialVersion(t, addr, packet.Version311) }

// dialVersion connects with the protocol level v and reads the CONNACK.
func dialVersion(t *testing.T, addr string, v byte) *rawClient {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	c := &rawClient{t: t, nc: nc, r: bufio.NewReader(nc)}
	c.send(packet.AppendConnect(nil, &packet.Connect{Version: v, CleanStart: true, ClientID: "c"}))
	if h, _ := c.next(); h.Type != packet.CONNACK {
		t.Fatalf("got %v, want CONNACK", h.Type)
	}
	return c
}

func (c *rawClient) send(b []byte) {
	c.t.Helper()
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatal(err)
	}
}

func (c *rawClient) next() (packet.FixedHeader, []byte) {
	c.t.Helper()
	h, err := packet.ReadHeader(c.r)
	if err != nil {
		c.t.Fatal(err)
	}
	body := make([]byte, h.Remaining)
	if _, err := io.ReadFull(c.r, body); err != nil {
		c.t.Fatal(err)
	}
	return h, body
}

// A subscription's QoS caps a delivery's, and a delivery carries the subscriber's own packet
// identifier: a QoS 1 publication reaches a QoS 0 subscriber without one, a QoS 1 subscriber
// with its next identifier, whatever the length of the topic.
func TestDeliveryQoSAndIdentifiers(t *testing.T) {
	addr := start(t, nil)
	subs := map[byte]*rawClient{}
	for _, q := range []byte{0, 1} {
		c := dial(t, addr)
		c.send(packet.AppendSubscribe(nil, &packet.Subscribe{PacketID: 7, Subs: []packet.Subscription{{Filter: "#", QoS: q}}}, packet.Version311))
		if h, body := c.next(); h.Type != packet.SUBACK || !bytes.Equal(body, []byte{0, 7, q}) {
			t.Fatalf("SUBACK %v % x, want granted QoS %d", h.Type, body, q)
		}
		subs[q] = c
	}
	pub := dial(t, addr)
	for i, topic := range []string{"vitals/abc", "v/hr/patient-0042"} { // lengths 10 and 17
		payload := []byte("beat")
		pub.send(packet.AppendPublish(nil, &packet.Publish{Topic: topic, QoS: 1, PacketID: 0x0102, Payload: payload}, packet.Version311))
		if h, body := pub.next(); h.Type != packet.PUBACK || !bytes.Equal(body, []byte{1, 2}) {
			t.Fatalf("publisher got %v % x, want PUBACK for 0x0102", h.Type, body)
		}
		for q, c := range subs {
			h, body := c.next()
			var p packet.Publish
			if h.Type != packet.PUBLISH {
				t.Fatalf("subscriber QoS %d got %v", q, h.Type)
			}
			if err := packet.DecodePublish(&p, h.Flags, body, packet.Version311); err != nil {
				t.Fatalf("subscriber QoS %d: % x: %v", q, body, err)
			}
			wantID := uint16(0)
			if q == 1 {
				wantID = uint16(i + 1)
			}
			if p.Topic != topic || p.QoS != q || p.PacketID != wantID || !bytes.Equal(p.Payload, payload) {
				t.Errorf("subscriber QoS %d got %q QoS %d id %d %q; want %q QoS %d id %d %q",
					q, p.Topic, p.QoS, p.PacketID, p.Payload, topic, q, wantID, payload)
			}
		}
	}
}

// A packet larger than the forwarder reads, one before CONNECT, or a PUBLISH whose topic
// runs past its end closes that connection, and only that one.
func TestRefusesBadInput(t *testing.T) {
	addr := start(t, nil)
	sub := dial(t, addr)
	sub.send(packet.AppendSubscribe(nil, &packet.Subscribe{PacketID: 1, Subs: []packet.Subscription{{Filter: "#"}}}, packet.Version311))
	if h, _ := sub.next(); h.Type != packet.SUBACK {
		t.Fatalf("got %v, want SUBACK", h.Type)
	}
	connect := packet.AppendConnect(nil, &packet.Connect{Version: packet.Version311, CleanStart: true, ClientID: "bad"})
	for name, b := range map[string][]byte{
		"before CONNECT":     packet.AppendPing(nil, packet.PINGREQ),
		"too large":          {0x10, 0xff, 0xff, 0xff, 0x7f},
		"topic past the end": append(connect, 0x30, 4, 0, 9, 'a', 'b'), // QoS 0, topic length 9 in 4 bytes
	} {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		nc.SetDeadline(time.Now().Add(10 * time.Second))
		if bytes.HasPrefix(b, connect) {
			if _, err := nc.Write(connect); err != nil {
				t.Fatal(err)
			}
			if _, err := io.ReadFull(nc, make([]byte, 4)); err != nil { // the CONNACK
				t.Fatalf("%s: %v", name, err)
			}
			b = b[len(connect):]
		}
		if _, err := nc.Write(b); err != nil {
			t.Fatal(err)
		}
		if n, err := nc.Read(make([]byte, 1)); !errors.Is(err, io.EOF) && !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("%s: read %d bytes, %v; want the connection closed", name, n, err)
		}
		nc.Close()
	}
	sub.send(packet.AppendPing(nil, packet.PINGREQ)) // the forwarder still serves the others
	if h, _ := sub.next(); h.Type != packet.PINGRESP {
		t.Errorf("got %v, want PINGRESP", h.Type)
	}
}

// In 5.0, a QoS 2 publication with properties and a body over 127 bytes (a two-byte Remaining
// Length) reaches subscribers at QoS 0, 1 and 2 with its properties, and both QoS 2 flows
// complete: PUBREC, PUBREL (flags 2), PUBCOMP.
func TestMQTT5QoS2(t *testing.T) {
	const v = packet.Version5
	addr := start(t, nil)
	subs := map[byte]*rawClient{}
	for _, q := range []byte{0, 1, 2} {
		c := dialVersion(t, addr, v)
		c.send(packet.AppendSubscribe(nil, &packet.Subscribe{PacketID: 7, Subs: []packet.Subscription{{Filter: "vitals/#", QoS: q}}}, v))
		if h, body := c.next(); h.Type != packet.SUBACK || !bytes.Equal(body, []byte{0, 7, 0, q}) {
			t.Fatalf("SUBACK %v % x, want granted QoS %d with no properties", h.Type, body, q)
		}
		subs[q] = c
	}
	pub := dialVersion(t, addr, v)
	p := packet.Publish{Topic: "vitals/ecg", QoS: 2, PacketID: 0x0a0b, Payload: bytes.Repeat([]byte{0xec}, 200)}
	p.Props.ContentType = "application/cbor"
	p.Props.Set(packet.PropContentType)
	pub.send(packet.AppendPublish(nil, &p, v))
	if h, body := pub.next(); h.Type != packet.PUBREC || !bytes.Equal(body, []byte{0x0a, 0x0b}) {
		t.Fatalf("publisher got %v % x, want PUBREC for 0x0a0b", h.Type, body)
	}
	pub.send([]byte{0x62, 2, 0x0a, 0x0b})
	if h, body := pub.next(); h.Type != packet.PUBCOMP || !bytes.Equal(body, []byte{0x0a, 0x0b}) {
		t.Fatalf("publisher got %v % x, want PUBCOMP for 0x0a0b", h.Type, body)
	}
	for q, c := range subs {
		h, body := c.next()
		var got packet.Publish
		if h.Type != packet.PUBLISH {
			t.Fatalf("subscriber QoS %d got %v", q, h.Type)
		}
		if err := packet.DecodePublish(&got, h.Flags, body, v); err != nil {
			t.Fatalf("subscriber QoS %d: % x: %v", q, body, err)
		}
		wantID := uint16(0)
		if q > 0 {
			wantID = 1
		}
		if got.Topic != p.Topic || got.QoS != q || got.PacketID != wantID || got.Props.ContentType != p.Props.ContentType ||
			!bytes.Equal(got.Payload, p.Payload) {
			t.Errorf("subscriber QoS %d got %q QoS %d id %d content type %q, %d bytes", q, got.Topic, got.QoS, got.PacketID,
				got.Props.ContentType, len(got.Payload))
		}
	}
	c := subs[2]
	c.send([]byte{0x50, 2, 0, 1}) // PUBREC
	if h, body := c.next(); h.Type != packet.PUBREL || h.Flags != 2 || !bytes.Equal(body, []byte{0, 1}) {
		t.Errorf("QoS 2 subscriber got %v flags %d % x, want PUBREL (flags 2) for 1", h.Type, h.Flags, body)
	}
}
