package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"vitalmq/internal/broker"
	"vitalmq/internal/packet"
	"vitalmq/internal/tlsconfig"
)

// startBroker runs the real broker in-process on 127.0.0.1:0 (anonymous, $SYS off) and
// stops it at the end of the test.
func startBroker(t *testing.T, cfg broker.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return startBrokerOn(t, cfg, ln)
}

// startBrokerOn runs the real broker in-process on ln.
func startBrokerOn(t *testing.T, cfg broker.Config, ln net.Listener) string {
	t.Helper()
	cfg.SysInterval = -1
	srv, err := broker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln, broker.ListenerOptions{Name: "t", AllowAnonymous: true}) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, broker.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

func TestPubSubEndToEnd(t *testing.T) {
	// Queues large enough that a subscriber slowed down by the race detector loses nothing.
	addr := startBroker(t, broker.Config{MaxQueuedMessages: 1 << 20, MaxQueuedBytes: 1 << 30, MaxPendingWrite: 64 << 20, PublishRate: -1, PublishByteRate: -1})
	for _, c := range []struct {
		name string
		cfg  PubSubConfig
	}{
		{"qos0 fan-in paced", PubSubConfig{Publishers: 4, Subscribers: 2, QoS: 0, Rate: 500, PaceTick: 200 * time.Microsecond}},
		{"qos1 fan-in unpaced", PubSubConfig{Publishers: 3, Subscribers: 1, QoS: 1, Inflight: 8}},
		{"qos2 fan-out paced", PubSubConfig{Publishers: 1, Subscribers: 3, QoS: 2, TopicMode: TopicShared, Rate: 1000, PayloadSize: 200}},
		{"qos1 mqtt5", PubSubConfig{Publishers: 2, Subscribers: 2, QoS: 1, TotalRate: 2000, Target: Target{Version: packet.Version5}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := c.cfg
			cfg.Addr = addr
			cfg.TopicPrefix = "e2e/" + c.name[:4]
			cfg.Warmup = 100 * time.Millisecond
			cfg.Duration = time.Second
			cfg.Drain = 10 * time.Second
			cfg.BrokerPID = os.Getpid()
			res, err := RunPubSub(t.Context(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			res.WriteTable(&buf)
			t.Logf("\n%s", buf.String())
			subs := int64(cfg.Subscribers)
			switch {
			case res.Sent == 0 || res.Latency.Count == 0 || res.DeliveredPerSec <= 0:
				t.Errorf("nothing measured: sent %d, latency samples %d, %v msg/s", res.Sent, res.Latency.Count, res.DeliveredPerSec)
			case res.Expected != res.Sent*subs:
				t.Errorf("expected %d, want sent × subscribers = %d", res.Expected, res.Sent*subs)
			case res.Lost != 0 || res.Undelivered != 0 || res.Received != res.Expected || !res.Drained:
				t.Errorf("lost %d, undelivered %d, received %d of %d, drained %v", res.Lost, res.Undelivered, res.Received, res.Expected, res.Drained)
			case res.DuplicateOrLate != 0 || res.Foreign != 0:
				t.Errorf("duplicate/late %d, foreign %d", res.DuplicateOrLate, res.Foreign)
			case cfg.QoS > 0 && (res.Acked != res.Sent || res.AckFailed != 0):
				t.Errorf("acked %d (failed %d) of %d", res.Acked, res.AckFailed, res.Sent)
			case cfg.QoS == 0 && res.Acked != 0:
				t.Errorf("QoS 0 acked %d", res.Acked)
			case res.Latency.P50 > res.Latency.P99 || res.Latency.P99 > res.Latency.P999 || res.Latency.P999 > res.Latency.Max:
				t.Errorf("latency quantiles out of order: %+v", res.Latency)
			case res.Broker == nil || res.Broker.PeakRSS <= 0 || res.Broker.CPUSeconds < 0:
				t.Errorf("broker figures: %+v %s", res.Broker, res.BrokerErr)
			}
			if cfg.Rate > 0 || cfg.TotalRate > 0 { // paced: roughly the rate, never wildly above it
				want := cfg.TotalRate
				if want == 0 {
					want = cfg.Rate * float64(cfg.Publishers)
				}
				if res.SentPerSec > want*1.5 {
					t.Errorf("paced at %v msg/s, sent %v msg/s", want, res.SentPerSec)
				}
				// One lateness per write in the window, and a write carries at most a burst
				// (the rate over 200, at least 1): at least sent / burst of them.
				perPub := want / float64(cfg.Publishers)
				burst := max(1, int(perPub/200))
				sentWin := res.SentPerSec * cfg.Duration.Seconds()
				if l := res.PaceLate; l == nil || float64(l.Count) < sentWin/float64(burst) {
					t.Errorf("pacing lateness: %+v, for %v publications in the window (burst %d)", l, sentWin, burst)
				}
				if tick := float64(cfg.PaceTick.Microseconds()); res.PaceTickUs != tick {
					t.Errorf("pace tick reported %v µs, ran %v µs", res.PaceTickUs, tick)
				}
			} else if res.PaceLate != nil {
				t.Errorf("unpaced, yet pacing lateness %+v", res.PaceLate)
			}
		})
	}
}

func TestConnsEndToEnd(t *testing.T) {
	addr := startBroker(t, broker.Config{})
	res, err := RunConns(t.Context(), ConnsConfig{Target: Target{Addr: addr, KeepAlive: 1}, Conns: 50, Sources: 3,
		Concurrency: 4, Hold: 700 * time.Millisecond, BrokerPID: os.Getpid()})
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	res.WriteTable(&buf)
	t.Logf("\n%s", buf.String())
	if res.Connected != 50 || res.Failed != 0 || res.Alive != 50 || res.ConnectRate <= 0 || res.Handshake.Count != 50 {
		t.Errorf("connected %d failed %d alive %d rate %v handshakes %d; first error %q",
			res.Connected, res.Failed, res.Alive, res.ConnectRate, res.Handshake.Count, res.FirstError)
	}
	if res.Pings < 50 { // keep alive 1 s: one round of PINGREQ at 500 ms
		t.Errorf("pings %d, want ≥ 50", res.Pings)
	}
	if res.Broker == nil || res.Broker.RSSBefore <= 0 || res.Broker.RSSHeld <= 0 {
		t.Errorf("broker figures: %+v %s", res.Broker, res.BrokerErr)
	}
}

// TestConnsCountsBrokerClosures: connections the broker closed are not counted alive.
func TestConnsCountsBrokerClosures(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	// A fake broker: CONNACK, then closes every second connection.
	go func() {
		for i := 0; ; i++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				r := bufio.NewReader(c)
				h, err := packet.ReadHeader(r)
				if err != nil {
					c.Close()
					return
				}
				r.Discard(h.Remaining)
				c.Write(packet.AppendConnack(nil, &packet.Connack{}, packet.Version311))
				if i%2 == 1 {
					c.Close()
					return
				}
				<-t.Context().Done()
				c.Close()
			}()
		}
	}()
	res, err := RunConns(t.Context(), ConnsConfig{Target: Target{Addr: ln.Addr().String()}, Conns: 10, Concurrency: 1,
		Hold: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if res.Connected != 10 || res.Alive != 5 {
		t.Fatalf("connected %d alive %d, want 10 and 5", res.Connected, res.Alive)
	}
}

// TestPubSubPrimesPublishers: at QoS 1/2 every publisher makes a round trip (PINGREQ,
// PINGRESP) before the clock starts, and nothing is published until all have. Against a
// fake broker that answers the PINGREQ of one publisher only, the run fails, having
// published nothing, not even from the publisher that was answered.
func TestPubSubPrimesPublishers(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type seen struct {
		typ    packet.Type
		client int // order of acceptance
	}
	got := make(chan seen, 64)
	var conns sync.WaitGroup
	go func() {
		for i := 0; ; i++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Go(func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					h, err := packet.ReadHeader(r)
					if err != nil {
						return
					}
					body := make([]byte, h.Remaining)
					if _, err := io.ReadFull(r, body); err != nil {
						return
					}
					got <- seen{h.Type, i}
					switch h.Type {
					case packet.CONNECT:
						c.Write(packet.AppendConnack(nil, &packet.Connack{}, packet.Version311))
					case packet.SUBSCRIBE:
						c.Write(packet.AppendSubAck(nil, &packet.SubAck{Type: packet.SUBACK,
							PacketID: uint16(body[0])<<8 | uint16(body[1]), Reasons: []packet.ReasonCode{1}}, packet.Version311))
					case packet.PINGREQ:
						if i == 1 { // the first publisher (the subscriber connects first)
							c.Write(packet.AppendPing(nil, packet.PINGRESP))
						}
					}
				}
			})
		}
	}()
	_, err = RunPubSub(t.Context(), PubSubConfig{Target: Target{Addr: ln.Addr().String(), DialTimeout: 300 * time.Millisecond},
		Publishers: 2, Subscribers: 1, QoS: 1, Warmup: 0, Duration: time.Second})
	if err == nil || !strings.Contains(err.Error(), "publisher 1: no PINGRESP") {
		t.Fatalf("RunPubSub: %v, want publisher 1: no PINGRESP", err)
	}
	conns.Wait() // the tool closed its connections: everything it sent has been read
	pings := map[int]bool{}
	for len(got) > 0 {
		s := <-got
		switch s.typ {
		case packet.PUBLISH:
			t.Errorf("client %d published before every publisher was primed", s.client)
		case packet.PINGREQ:
			pings[s.client] = true
		}
	}
	if len(pings) != 2 {
		t.Errorf("PINGREQ from %d connections, want the 2 publishers'", len(pings))
	}
}

// --classic-kex offers only classic key exchange: the broker's TLS (vitalmq's server
// configuration) then negotiates X25519, as with a device's TLS stack; by default the load
// tool offers Go's post-quantum hybrid, which the broker prefers.
func TestConnsKeyExchange(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := writeCert(t, dir, "broker", false)
	tc, err := tlsconfig.Server(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := startBrokerOn(t, broker.Config{}, tls.NewListener(ln, tc))
	for _, c := range []struct {
		classic bool
		want    string
	}{{false, tls.X25519MLKEM768.String()}, {true, tls.X25519.String()}} {
		cfg, err := TLSOptions{Insecure: true, Classic: c.classic}.Config("127.0.0.1")
		if err != nil {
			t.Fatal(err)
		}
		res, err := RunConns(t.Context(), ConnsConfig{Target: Target{Addr: addr, TLS: cfg}, Conns: 3, Concurrency: 1})
		if err != nil {
			t.Fatal(err)
		}
		if res.Connected != 3 || res.KeyExchange != c.want {
			t.Errorf("classic %v: connected %d, key exchange %q, want %q", c.classic, res.Connected, res.KeyExchange, c.want)
		}
	}
}
