package broker_test

import (
	"errors"
	"sync"
	"testing"
	"time"

	"vitalmq/internal/broker"
	"vitalmq/internal/packet"
	"vitalmq/internal/session"
	"vitalmq/internal/state"
)

// [MQTT-3.8.3-3] No Local: a client never gets its own messages back on that subscription,
// retained ones sent on SUBSCRIBE included; other clients still get them.
func TestNoLocalRetained(t *testing.T) {
	s := startServer(t, broker.Config{})
	c, _ := ftDial(t, s.Addr, packet.Version5, "nl-1", nil)
	c.ftPublish(packet.Version5, &packet.Publish{QoS: 1, PacketID: 1, Retain: true, Topic: "nl/t", Payload: []byte("mine")})
	c.ftReadAck(packet.Version5, packet.PUBACK)
	rc := c.ftSubscribe(packet.Version5, 2, packet.Properties{}, packet.Subscription{Filter: "nl/#", QoS: 1, NoLocal: true})
	if rc[0] != packet.GrantedQoS1 {
		t.Fatalf("SUBACK %v", rc)
	}
	c.expectSilence(300 * time.Millisecond)
	o, _ := ftDial(t, s.Addr, packet.Version5, "nl-2", nil)
	o.ftSub(packet.Version5, "nl/#", 1)
	if p := o.ftReadPublish(packet.Version5); string(p.Payload) != "mine" || !p.Retain {
		t.Fatalf("other client got %q retain=%v", p.Payload, p.Retain)
	}
}

// [MQTT-3.8.4-5] (3.1.1) / [MQTT-3.9.3-1]: a SUBACK that reports failure because the
// subscription could not be stored leaves no subscription behind.
func TestSubackFailureLeavesNoSubscription(t *testing.T) {
	db := durOpen(t, t.TempDir())
	flaky := &durFlaky{DB: db}
	flaky.set(func(cs *session.ChangeSet) bool {
		return durHasOp(cs, func(op *session.Op) bool { return op.Kind == session.PutSub && op.Sub.Filter == "fs/t" })
	})
	srv := durStart(t, broker.Config{Persister: flaky})
	sub, _ := durDial(t, srv.addr, durV31, "fs-sub", false, 0)
	sub.write(packet.AppendSubscribe(nil, &packet.Subscribe{PacketID: 1, Subs: []packet.Subscription{{Filter: "fs/t", QoS: 1}}}, durV31))
	sub.expect("90 03 00 01 80")
	pub, _ := durDial(t, srv.addr, durV31, "fs-pub", true, 0)
	if rc := pub.durPub1(durV31, 1, "fs/t", "x", false); rc != packet.Success {
		t.Fatalf("PUBACK %#x", byte(rc))
	}
	sub.expectSilence(300 * time.Millisecond)
}

// durGate holds back the commit of change sets that add a subscription until released.
type durGate struct {
	*state.DB
	open    chan struct{}
	waiting chan struct{}
}

func (g *durGate) Commit(cs *session.ChangeSet, done func(error)) {
	if !durHasOp(cs, func(op *session.Op) bool { return op.Kind == session.PutSub }) {
		g.DB.Commit(cs, done)
		return
	}
	close(g.waiting)
	go func() {
		<-g.open
		g.DB.Commit(cs, done)
	}()
}

// [MQTT-4.6.0-6] A retained message replaced while the SUBSCRIBE is being stored reaches the
// subscriber live; the older retained copy taken at SUBSCRIBE time is not sent after it,
// so the last value the subscriber holds is the newest.
func TestRetainedNotAfterNewer(t *testing.T) {
	g := &durGate{DB: durOpen(t, t.TempDir()), open: make(chan struct{}), waiting: make(chan struct{})}
	srv := durStart(t, broker.Config{Persister: g})
	pub, _ := durDial(t, srv.addr, durV5, "rn-pub", true, 0)
	if rc := pub.durPub1(durV5, 1, "rn/t", "old", true); rc.IsError() {
		t.Fatalf("PUBACK %#x", byte(rc))
	}
	sub, _ := durDial(t, srv.addr, durV5, "rn-sub", false, 60)
	sub.write(packet.AppendSubscribe(nil, &packet.Subscribe{PacketID: 1, Subs: []packet.Subscription{{Filter: "rn/t", QoS: 1}}}, durV5))
	<-g.waiting // the subscription is in the trie, its commit held
	if rc := pub.durPub1(durV5, 2, "rn/t", "new", true); rc != packet.Success {
		t.Fatalf("PUBACK %#x", byte(rc))
	}
	close(g.open)
	var got []string
	for len(got) < 2 {
		typ, flags, body := sub.durRead()
		switch typ {
		case packet.SUBACK:
			got = append(got, "SUBACK")
		case packet.PUBLISH:
			var p packet.Publish
			if err := packet.DecodePublish(&p, flags, body, durV5); err != nil {
				t.Fatal(err)
			}
			got = append(got, string(p.Payload))
			sub.durAck(durV5, packet.PUBACK, p.PacketID)
		}
	}
	sub.expectSilence(300 * time.Millisecond) // never "old" after "new"
	if got[0] != "new" && got[1] != "new" {
		t.Fatalf("got %v, want new and the SUBACK", got)
	}
}

type failPairs struct {
	*state.DB
	mu   sync.Mutex
	held []func(error)
}

func (f *failPairs) Commit(cs *session.ChangeSet, done func(error)) {
	if !durHasOp(cs, func(op *session.Op) bool { return op.Kind == session.PutSub }) {
		f.DB.Commit(cs, done)
		return
	}
	f.mu.Lock()
	f.held = append(f.held, done)
	if len(f.held) < 2 {
		f.mu.Unlock()
		return
	}
	h := f.held
	f.held = nil
	f.mu.Unlock()
	go func() {
		for _, d := range h {
			d(errors.New("injected"))
		}
	}()
}

// [MQTT-3.8.4-5] (3.1.1) Two SUBSCRIBEs of one filter whose commits both fail leave no
// subscription, whatever order their undo runs in (review finding).
func TestSubackFailureTwice(t *testing.T) {
	f := &failPairs{DB: durOpen(t, t.TempDir())}
	srv := durStart(t, broker.Config{Persister: f})
	sub, _ := durDial(t, srv.addr, durV31, "rb-sub", false, 0)
	b := packet.AppendSubscribe(nil, &packet.Subscribe{PacketID: 1, Subs: []packet.Subscription{{Filter: "rb/t", QoS: 1}}}, durV31)
	b = packet.AppendSubscribe(b, &packet.Subscribe{PacketID: 2, Subs: []packet.Subscription{{Filter: "rb/t", QoS: 0}}}, durV31)
	sub.write(b)
	sub.expect("90 03 00 01 80")
	sub.expect("90 03 00 02 80")
	pub, _ := durDial(t, srv.addr, durV31, "rb-pub", true, 0)
	if rc := pub.durPub1(durV31, 1, "rb/t", "x", false); rc != packet.Success {
		t.Fatalf("PUBACK %#x", byte(rc))
	}
	sub.expectSilence(500 * time.Millisecond)
}
