package broker_test

import (
	"context"
	"math"
	"net"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	paho "github.com/eclipse/paho.golang/paho"
	mqtt "github.com/eclipse/paho.mqtt.golang"

	"vitalmq/internal/broker"
	"vitalmq/internal/packet"
)

// TestFtCleanSession311 (paho.mqtt.golang): with Clean Session=0 the subscription and
// the QoS 1 messages published while offline survive the disconnection and Session
// Present is 1; with Clean Session=1 the session is discarded and Session Present is 0.
// 3.1.1: [MQTT-3.1.2-4] [MQTT-3.1.2-5] [MQTT-3.1.2-6] [MQTT-3.2.2-1] [MQTT-3.2.2-2] [MQTT-4.4.0-1]
func TestFtCleanSession311(t *testing.T) {
	s := startServer(t, broker.Config{})
	persistent := func(o *mqtt.ClientOptions) { o.SetCleanSession(false) }
	c, _ := ftPaho3(t, s.Addr, "cs-client", persistent)
	ftWait(t, c.Subscribe("cs/#", 1, nil))
	c.Disconnect(50)
	pub, _ := ftPaho3(t, s.Addr, "cs-pub", nil)
	for _, m := range []string{"a", "b", "c"} {
		ftWait(t, pub.Publish("cs/t", 1, false, m))
	}
	c2, in := ftPaho3(t, s.Addr, "cs-client", persistent)
	got := in.waitN(t, 3)
	for i, want := range []string{"a", "b", "c"} {
		if got[i].Payload != want || got[i].QoS != 1 {
			t.Fatalf("queued message %d: %+v, want %q at QoS 1", i, got[i], want)
		}
	}
	c2.Disconnect(50)

	// Session Present on the wire, then a clean session discards it.
	raw := dialRaw(t, s.Addr)
	if ack := raw.ftConnect(&packet.Connect{Version: packet.Version311, KeepAlive: 60, ClientID: "cs-client"}); !ack.SessionPresent {
		t.Fatalf("CONNACK %+v, want Session Present=1 [MQTT-3.2.2-2]", ack)
	}
	raw.ftDisconnect(packet.Version311)
	raw = dialRaw(t, s.Addr)
	if ack := raw.ftConnect(&packet.Connect{Version: packet.Version311, CleanStart: true, KeepAlive: 60, ClientID: "cs-client"}); ack.SessionPresent {
		t.Fatalf("CONNACK %+v, want Session Present=0 with Clean Session [MQTT-3.2.2-1]", ack)
	}
	ftWait(t, pub.Publish("cs/t", 1, false, "lost"))
	raw.expectSilence(300 * time.Millisecond) // the old subscription is gone [MQTT-3.1.2-6]
	raw.ftDisconnect(packet.Version311)
	raw = dialRaw(t, s.Addr)
	if ack := raw.ftConnect(&packet.Connect{Version: packet.Version311, KeepAlive: 60, ClientID: "cs-client"}); ack.SessionPresent {
		t.Fatalf("CONNACK %+v after a clean session ended, want Session Present=0", ack)
	}
	checkAlive(t, s.Addr)
}

// TestFtSessionExpiry5: a session with Session Expiry Interval 2 s is kept while the
// client is offline (QoS 1 messages queued, Session Present=1 on return), and is gone
// once the interval passed (Session Present=0, no messages). Session expiry 0 ends the
// session with the connection.
// [MQTT-3.1.2-23] [MQTT-3.1.2-4] [MQTT-3.1.2-5] [MQTT-3.2.2-2] [MQTT-3.2.2-3] [MQTT-4.1.0-1]
func TestFtSessionExpiry5(t *testing.T) {
	const v = packet.Version5
	s := startServer(t, broker.Config{})
	persist := func(p *packet.Connect) { ftPersist(p, 2); p.CleanStart = false }
	c, ack := ftDial(t, s.Addr, v, "se-client", persist)
	if ack.SessionPresent {
		t.Fatal("Session Present=1 for a new session [MQTT-3.2.2-3]")
	}
	c.ftSub(v, "se/#", 1)
	c.ftDisconnect(v)
	pub, _ := ftDial(t, s.Addr, v, "se-pub", nil)
	pub.ftPub1(v, &packet.Publish{QoS: 1, Topic: "se/t", PacketID: 1, Payload: []byte("queued1")})
	pub.ftPub1(v, &packet.Publish{QoS: 1, Topic: "se/t", PacketID: 2, Payload: []byte("queued2")})

	c, ack = ftDial(t, s.Addr, v, "se-client", persist)
	if !ack.SessionPresent {
		t.Fatal("Session Present=0 for a kept session [MQTT-3.2.2-2]")
	}
	for _, want := range []string{"queued1", "queued2"} {
		m := c.ftReadPublish(v)
		if string(m.Payload) != want || m.QoS != 1 {
			t.Fatalf("queued delivery %q QoS %d, want %q QoS 1", m.Payload, m.QoS, want)
		}
		c.ftAck(v, packet.PUBACK, m.PacketID)
	}
	c.ftDisconnect(v)
	// Wait for expiry: the session disappears from the broker (the publisher's ends with its connection).
	sessions := s.Stats().Sessions
	eventually(t, 5*time.Second, "session expiry", func() bool { return s.Stats().Sessions == sessions-1 })
	pub.ftPublish(v, &packet.Publish{QoS: 1, Topic: "se/t", PacketID: 3, Payload: []byte("after")})
	if a := pub.ftReadAck(v, packet.PUBACK); a.Reason != packet.NoMatchingSubscribers {
		t.Errorf("PUBACK reason %#x after expiry, want 0x10 No matching subscribers", byte(a.Reason))
	}
	c, ack = ftDial(t, s.Addr, v, "se-client", persist)
	if ack.SessionPresent {
		t.Fatal("Session Present=1 after the session expired [MQTT-3.1.2-23]")
	}
	c.expectSilence(300 * time.Millisecond)
	c.ftDisconnect(v)

	// Expiry 0 (absent): the session ends at the close.
	c, _ = ftDial(t, s.Addr, v, "se-zero", func(p *packet.Connect) { p.CleanStart = false })
	c.ftSub(v, "se/#", 1)
	c.ftDisconnect(v)
	_, ack = ftDial(t, s.Addr, v, "se-zero", func(p *packet.Connect) { p.CleanStart = false })
	if ack.SessionPresent {
		t.Fatal("Session Present=1 though Session Expiry Interval was 0 [MQTT-3.1.2-23]")
	}
	checkAlive(t, s.Addr)
}

// TestFtSessionExpiryAutopaho: an autopaho client with a 30 s session and a QoS 1
// subscription loses its connection; messages published meanwhile arrive after it
// reconnects by itself with Clean Start=0. [MQTT-3.1.2-4] [MQTT-3.2.2-2] [MQTT-4.4.0-1]
func TestFtSessionExpiryAutopaho(t *testing.T) {
	s := startServer(t, broker.Config{})
	u, _ := url.Parse("mqtt://" + s.Addr)
	in := &ftInbox{}
	var ups, presents atomic.Int32
	var (
		mu sync.Mutex
		nc net.Conn
	)
	cm, err := autopaho.NewConnection(t.Context(), autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{u},
		KeepAlive:                     30,
		CleanStartOnInitialConnection: true,
		SessionExpiryInterval:         30,
		ReconnectBackoff:              autopaho.NewConstantBackoff(200 * time.Millisecond),
		AttemptConnection: func(ctx context.Context, _ autopaho.ClientConfig, u *url.URL) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, "tcp", u.Host)
			mu.Lock()
			nc = c
			mu.Unlock()
			return c, err
		},
		ConnectTimeout: 5 * time.Second,
		OnConnectionUp: func(cm *autopaho.ConnectionManager, ack *paho.Connack) {
			if ack.SessionPresent {
				presents.Add(1)
			}
			ups.Add(1)
		},
		ClientConfig: paho.ClientConfig{
			ClientID: "ap-client",
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){
				func(pr paho.PublishReceived) (bool, error) { in.add(pr.Packet); return true, nil },
			},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cm.Disconnect(ftCtx(t))
		<-cm.Done()
	})
	if err := cm.AwaitConnection(ftCtx(t)); err != nil {
		t.Fatal(err)
	}
	if _, err := cm.Subscribe(ftCtx(t), &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: "ap/#", QoS: 1}}}); err != nil {
		t.Fatal(err)
	}
	pub, _ := ftDial(t, s.Addr, packet.Version5, "ap-pub", nil)
	pub.ftPub1(packet.Version5, &packet.Publish{QoS: 1, Topic: "ap/t", PacketID: 1, Payload: []byte("live")})
	in.waitN(t, 1)
	// Drop the connection under autopaho, publish while it is away (or reconnecting), and
	// wait for the message: it can only arrive through the resumed session, since autopaho
	// does not subscribe again.
	mu.Lock()
	nc.Close()
	mu.Unlock()
	pub.ftPub1(packet.Version5, &packet.Publish{QoS: 1, Topic: "ap/t", PacketID: 2, Payload: []byte("while away")})
	// "live" may come again first, with DUP set: the connection can drop before autopaho's
	// PUBACK for it reaches the broker, and the resumed session must then resend it.
	eventually(t, 5*time.Second, "the message published while away", func() bool {
		return slices.ContainsFunc(in.get(), func(p *paho.Publish) bool { return string(p.Payload) == "while away" })
	})
	for _, p := range in.get()[1:] {
		if string(p.Payload) == "live" && !p.Duplicate() {
			t.Error("\"live\" delivered again without DUP [MQTT-3.3.1-1]")
		}
	}
	eventually(t, 5*time.Second, "reconnect", func() bool { return ups.Load() >= 2 })
	if presents.Load() < 1 {
		t.Error("autopaho reconnect: Session Present=0 [MQTT-3.2.2-2]")
	}
	checkAlive(t, s.Addr)
}

// TestFtSessionTakeover5: a second connection with the same client id takes the session
// over: the first gets DISCONNECT 0x8E and is closed; the second gets the session and its
// subscription. [MQTT-3.1.4-2] [MQTT-3.1.4-3] [MQTT-3.2.2-2]
func TestFtSessionTakeover5(t *testing.T) {
	const v = packet.Version5
	s := startServer(t, broker.Config{})
	persist := func(p *packet.Connect) { ftPersist(p, 60); p.CleanStart = false }
	old, _ := ftDial(t, s.Addr, v, "to-client", persist)
	old.ftSub(v, "to/#", 1)
	c, ack := ftDial(t, s.Addr, v, "to-client", persist)
	if !ack.SessionPresent {
		t.Error("takeover: Session Present=0, want 1 [MQTT-3.2.2-2]")
	}
	d := old.ftReadDisconnect()
	if d.Reason != packet.SessionTakenOver {
		t.Errorf("old connection got DISCONNECT %#x, want 0x8E [MQTT-3.1.4-3]", byte(d.Reason))
	}
	old.expectClosed(2 * time.Second)
	pub, _ := ftDial(t, s.Addr, v, "to-pub", nil)
	pub.ftPub1(v, &packet.Publish{QoS: 1, Topic: "to/t", PacketID: 1, Payload: []byte("x")})
	if m := c.ftReadPublish(v); string(m.Payload) != "x" {
		t.Fatalf("new connection got %q", m.Payload)
	}
	checkAlive(t, s.Addr)
}

// TestFtSessionTakeover311: the same in 3.1.1 (the old connection is closed without a
// DISCONNECT, which 3.1.1 servers never send). [MQTT-3.1.4-2 3.1.1]
func TestFtSessionTakeover311(t *testing.T) {
	const v = packet.Version311
	s := startServer(t, broker.Config{})
	persist := func(p *packet.Connect) { p.CleanStart = false }
	old, _ := ftDial(t, s.Addr, v, "to3-client", persist)
	old.ftSub(v, "to3/#", 1)
	c, ack := ftDial(t, s.Addr, v, "to3-client", persist)
	if !ack.SessionPresent {
		t.Error("takeover: Session Present=0, want 1")
	}
	old.expectClosed(2 * time.Second)
	pub, _ := ftDial(t, s.Addr, v, "to3-pub", nil)
	pub.ftPub1(v, &packet.Publish{QoS: 1, Topic: "to3/t", PacketID: 1, Payload: []byte("x")})
	if m := c.ftReadPublish(v); string(m.Payload) != "x" {
		t.Fatalf("new connection got %q", m.Payload)
	}
	checkAlive(t, s.Addr)
}

// TestFtSessionTakeoverPaho5: paho.golang sees the server's DISCONNECT 0x8E through
// OnServerDisconnect when another client takes its id over. [MQTT-3.1.4-3] [MQTT-3.14.0-1]
func TestFtSessionTakeoverPaho5(t *testing.T) {
	s := startServer(t, broker.Config{})
	got := make(chan byte, 1)
	c, _, _ := ftPaho5(t, s.Addr, "tp-client", nil, func(cc *paho.ClientConfig) {
		cc.OnServerDisconnect = func(d *paho.Disconnect) { got <- d.ReasonCode }
	})
	ftPaho5(t, s.Addr, "tp-client", nil, nil)
	select {
	case rc := <-got:
		if rc != 0x8E {
			t.Errorf("DISCONNECT reason %#x, want 0x8E", rc)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no DISCONNECT from the server")
	}
	select {
	case <-c.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("old client still connected")
	}
	checkAlive(t, s.Addr)
}

// TestJanitorSchedulesOnlyOfflineDeadlines: the janitor keeps exactly the offline sessions
// that have a deadline (session expiry or a delayed will); a session leaves that set when
// it resumes, ends, or is purged, and one kept forever never enters it, so the set neither
// leaks nor misses a session (the janitor no longer scans every session).
func TestJanitorSchedulesOnlyOfflineDeadlines(t *testing.T) {
	const v = packet.Version5
	s := startServer(t, broker.Config{MaxSessionExpiry: math.MaxUint32})
	scheduled := func(want int, what string) {
		t.Helper()
		eventually(t, 5*time.Second, what, func() bool { return s.Scheduled() == want })
	}
	persist := func(expiry uint32) func(*packet.Connect) {
		return func(p *packet.Connect) { ftPersist(p, expiry); p.CleanStart = false }
	}
	for _, id := range []string{"jd-a", "jd-b", "jd-c"} {
		c, _ := ftDial(t, s.Addr, v, id, persist(600))
		c.ftDisconnect(v)
	}
	forever, _ := ftDial(t, s.Addr, v, "jd-forever", persist(math.MaxUint32))
	forever.ftDisconnect(v)
	scheduled(3, "three offline sessions with an expiry scheduled, the one kept forever not")

	c, ack := ftDial(t, s.Addr, v, "jd-a", persist(600))
	if !ack.SessionPresent {
		t.Fatal("jd-a: Session Present=0")
	}
	scheduled(2, "the resumed session unscheduled")
	if !s.Kick("jd-b", packet.AdministrativeAction, true) {
		t.Fatal("Kick jd-b: no session")
	}
	scheduled(1, "the purged session unscheduled")
	ftDial(t, s.Addr, v, "jd-c", func(p *packet.Connect) { p.CleanStart = true })
	scheduled(0, "the session discarded by Clean Start unscheduled")

	c.ftDisconnect(v)
	short, _ := ftDial(t, s.Addr, v, "jd-short", persist(1))
	short.ftDisconnect(v)
	scheduled(2, "jd-a and jd-short scheduled again")
	sessions := s.Stats().Sessions
	eventually(t, 5*time.Second, "jd-short expired", func() bool { return s.Stats().Sessions == sessions-1 })
	scheduled(1, "the expired session unscheduled")
	if _, ack := ftDial(t, s.Addr, v, "jd-forever", persist(math.MaxUint32)); !ack.SessionPresent {
		t.Fatal("the session kept forever was lost")
	}
}

// TestNothingSentToClosingConnection: a message routed to a subscriber whose connection is
// already closing stays queued rather than counting as sent: the resumed session delivers
// it as new (DUP=0), and would drop it had it expired meanwhile [MQTT-3.3.2-5] (it used to
// be resent with DUP=1, exempt from expiry, although it never left).
func TestNothingSentToClosingConnection(t *testing.T) {
	const v = packet.Version5
	s := startServer(t, broker.Config{})
	persist := func(p *packet.Connect) { ftPersist(p, 60); p.CleanStart = false }
	sub, _ := ftDial(t, s.Addr, v, "cl-sub", persist)
	sub.ftSub(v, "cl/#", 1)
	pub, _ := ftDial(t, s.Addr, v, "cl-pub", nil)
	s.StopSending("cl-sub")
	pub.ftPub1(v, &packet.Publish{QoS: 1, Topic: "cl/t", PacketID: 1, Payload: []byte("during close")})
	sub.nc.Close()
	eventually(t, 5*time.Second, "subscriber detached", func() bool { return s.Stats().Connected == 1 })
	sub, ack := ftDial(t, s.Addr, v, "cl-sub", persist)
	if !ack.SessionPresent {
		t.Fatal("session lost")
	}
	m := sub.ftReadPublish(v)
	if string(m.Payload) != "during close" || m.Dup {
		t.Fatalf("got %q DUP=%v, want the message as new (DUP=0): it was never sent", m.Payload, m.Dup)
	}
}
