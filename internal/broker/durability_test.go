package broker_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"vitalmq/internal/broker"
	"vitalmq/internal/packet"
	"vitalmq/internal/session"
	"vitalmq/internal/state"
)

// Durability tests (issue 4): the broker on the Pebble persister, stopped and started
// again on the same data directory.

const (
	durV5  = packet.Version5
	durV31 = packet.Version311
)

// durServer is a broker on loopback that a test stops (and replaces) mid-test.
type durServer struct {
	*broker.Server
	addr string
	done chan error
	once sync.Once
}

func durStart(t testing.TB, cfg broker.Config) *durServer {
	t.Helper()
	if cfg.SysInterval == 0 {
		cfg.SysInterval = -1
	}
	srv, err := broker.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &durServer{Server: srv, addr: ln.Addr().String(), done: make(chan error, 1)}
	go func() { d.done <- srv.Serve(ln, broker.ListenerOptions{Name: "dur", AllowAnonymous: true}) }()
	t.Cleanup(func() { d.stop(t) })
	return d
}

// stop shuts the broker down gracefully (as on SIGTERM); safe to call twice.
func (d *durServer) stop(t testing.TB) {
	d.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := d.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
		if err := <-d.done; !errors.Is(err, broker.ErrServerClosed) {
			t.Errorf("Serve returned %v", err)
		}
	})
}

// durOpen opens the state store in dir; it is closed at the end of the test (Close is idempotent).
func durOpen(t testing.TB, dir string) *state.DB {
	t.Helper()
	db, err := state.Open(dir, state.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// durDial connects a raw client; expiry > 0 asks for a persistent session (3.1.1: clean session 0).
func durDial(t testing.TB, addr string, version byte, id string, clean bool, expiry uint32) (*rawConn, packet.Connack) {
	t.Helper()
	c := dialRaw(t, addr)
	p := packet.Connect{Version: version, CleanStart: clean, KeepAlive: 60, ClientID: id}
	if version == durV5 && expiry > 0 {
		p.Props.SessionExpiry = expiry
		p.Props.Set(packet.PropSessionExpiry)
	}
	c.write(packet.AppendConnect(nil, &p))
	typ, _, body := c.durRead()
	if typ != packet.CONNACK {
		t.Fatalf("%s: got %v, want CONNACK", id, typ)
	}
	var ack packet.Connack
	if err := packet.DecodeConnack(&ack, body, version); err != nil || ack.Reason != packet.Success {
		t.Fatalf("%s: CONNACK %v %#x", id, err, byte(ack.Reason))
	}
	return c, ack
}

// durRead reads one packet within 5 s and splits it.
func (c *rawConn) durRead() (packet.Type, byte, []byte) {
	c.t.Helper()
	b, err := c.readPacket(5 * time.Second)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	i := 1
	for b[i]&0x80 != 0 {
		i++
	}
	return packet.Type(b[0] >> 4), b[0] & 0x0f, b[i+1:]
}

func (c *rawConn) durPublish(version byte, p *packet.Publish) {
	c.t.Helper()
	c.write(packet.AppendPublish(nil, p, version))
}

func (c *rawConn) durAck(version byte, typ packet.Type, id uint16) {
	c.t.Helper()
	c.write(packet.AppendAck(nil, &packet.Ack{Type: typ, PacketID: id}, version))
}

// durReadAck reads one packet that must be an acknowledgement of type typ.
func (c *rawConn) durReadAck(version byte, typ packet.Type) packet.Ack {
	c.t.Helper()
	got, _, body := c.durRead()
	if got != typ {
		c.t.Fatalf("got %v, want %v", got, typ)
	}
	var a packet.Ack
	if err := packet.DecodeAck(&a, got, body, version); err != nil {
		c.t.Fatal(err)
	}
	return a
}

// durReadPublish reads one packet that must be a PUBLISH.
func (c *rawConn) durReadPublish(version byte) packet.Publish {
	c.t.Helper()
	typ, flags, body := c.durRead()
	if typ != packet.PUBLISH {
		c.t.Fatalf("got %v (% x), want PUBLISH", typ, body)
	}
	var p packet.Publish
	if err := packet.DecodePublish(&p, flags, body, version); err != nil {
		c.t.Fatal(err)
	}
	return p
}

func (c *rawConn) durSubscribe(version byte, filter string, qos byte) {
	c.t.Helper()
	c.write(packet.AppendSubscribe(nil, &packet.Subscribe{PacketID: 1, Subs: []packet.Subscription{{Filter: filter, QoS: qos}}}, version))
	typ, _, body := c.durRead()
	var sa packet.SubAck
	if err := packet.DecodeSubAck(&sa, typ, body, version); err != nil || typ != packet.SUBACK || len(sa.Reasons) != 1 || sa.Reasons[0] != packet.ReasonCode(qos) {
		c.t.Fatalf("SUBACK %v %v %v", typ, sa.Reasons, err)
	}
}

// durDisconnect sends a normal DISCONNECT and waits for the broker to close the socket.
func (c *rawConn) durDisconnect(version byte) {
	c.t.Helper()
	c.write(packet.AppendDisconnect(nil, &packet.Disconnect{Reason: packet.Success}, version))
	c.expectClosed(5 * time.Second)
}

// durPub1 publishes at QoS 1 and returns the PUBACK reason.
func (c *rawConn) durPub1(version byte, id uint16, topic, payload string, retain bool) packet.ReasonCode {
	c.t.Helper()
	c.durPublish(version, &packet.Publish{QoS: 1, PacketID: id, Topic: topic, Payload: []byte(payload), Retain: retain})
	a := c.durReadAck(version, packet.PUBACK)
	if a.PacketID != id {
		c.t.Fatalf("PUBACK for %d, want %d", a.PacketID, id)
	}
	return a.Reason
}

// durPub2 publishes at QoS 2 through the whole flow and returns the PUBREC reason.
func (c *rawConn) durPub2(version byte, id uint16, topic, payload string) packet.ReasonCode {
	c.t.Helper()
	c.durPublish(version, &packet.Publish{QoS: 2, PacketID: id, Topic: topic, Payload: []byte(payload)})
	rec := c.durReadAck(version, packet.PUBREC)
	if rec.Reason.IsError() {
		return rec.Reason
	}
	c.durAck(version, packet.PUBREL, id)
	if comp := c.durReadAck(version, packet.PUBCOMP); comp.Reason != packet.Success {
		c.t.Fatalf("PUBCOMP %d reason %#x", id, byte(comp.Reason))
	}
	return rec.Reason
}

// durReceive reads until n PUBLISHes arrived, answering each as a correct receiver
// (PUBACK; PUBREC, then PUBCOMP on PUBREL) and returning "qos:payload" in arrival order.
// It also waits for the PUBRELs of the QoS 2 ones.
func (c *rawConn) durReceive(version byte, n int) []string {
	c.t.Helper()
	var got []string
	rels := 0
	for len(got) < n || rels > 0 {
		typ, flags, body := c.durRead()
		switch typ {
		case packet.PUBLISH:
			var p packet.Publish
			if err := packet.DecodePublish(&p, flags, body, version); err != nil {
				c.t.Fatal(err)
			}
			got = append(got, fmt.Sprintf("%d:%s", p.QoS, p.Payload))
			if p.QoS == 1 {
				c.durAck(version, packet.PUBACK, p.PacketID)
			} else if p.QoS == 2 {
				c.durAck(version, packet.PUBREC, p.PacketID)
				rels++
			}
		case packet.PUBREL:
			var a packet.Ack
			packet.DecodeAck(&a, typ, body, version)
			c.durAck(version, packet.PUBCOMP, a.PacketID)
			rels--
		default:
			c.t.Fatalf("got %v while receiving (so far %v)", typ, got)
		}
	}
	return got
}

func durSession(snap *session.Snapshot, id string) *session.Stored {
	for i := range snap.Sessions {
		if snap.Sessions[i].Meta.ClientID == id {
			return &snap.Sessions[i]
		}
	}
	return nil
}

func durLoad(t testing.TB, db *state.DB) *session.Snapshot {
	t.Helper()
	snap, err := db.Load()
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

// durRawKeys lists every live key of a closed store that mentions client, read with Pebble
// itself (Load hides records of a session without metadata).
func durRawKeys(t testing.TB, dir, client string) []string {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{ReadOnly: true, Logger: durQuiet{}})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	it, err := db.NewIter(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer it.Close()
	var keys []string
	for it.First(); it.Valid(); it.Next() {
		if bytes.Contains(it.Key(), []byte(client)) {
			keys = append(keys, fmt.Sprintf("%q", it.Key()))
		}
	}
	return keys
}

type durQuiet struct{}

func (durQuiet) Infof(string, ...any)         {}
func (durQuiet) Errorf(string, ...any)        {}
func (durQuiet) Fatalf(f string, args ...any) { panic(fmt.Sprintf(f, args...)) }

// (a) A persistent session, its subscription, queued QoS 1/2 messages, a retained message
// and a QoS 2 identifier awaiting PUBREL survive a restart. The publisher's resent QoS 2
// PUBLISH (DUP, same identifier) is acknowledged but not delivered again; the subscriber
// gets everything in order, once.
func TestDurabilityRestartRestoresState(t *testing.T) {
	dir := t.TempDir()
	db := durOpen(t, dir)
	srv := durStart(t, broker.Config{Persister: db})

	sub, _ := durDial(t, srv.addr, durV5, "dur-sub", true, 3600)
	sub.durSubscribe(durV5, "dur/#", 2)
	sub.durDisconnect(durV5)

	pub, _ := durDial(t, srv.addr, durV5, "dur-pub", true, 3600)
	for _, step := range []func() packet.ReasonCode{
		func() packet.ReasonCode { return pub.durPub1(durV5, 1, "dur/r", "r", true) },
		func() packet.ReasonCode { return pub.durPub1(durV5, 2, "dur/a", "1", false) },
		func() packet.ReasonCode { return pub.durPub2(durV5, 3, "dur/a", "2") },
		func() packet.ReasonCode { return pub.durPub1(durV5, 4, "dur/a", "3", false) },
	} {
		if rc := step(); rc != packet.Success {
			t.Fatalf("publication acknowledged with %#x", byte(rc))
		}
	}
	// QoS 2 "4": PUBREC, and the connection is lost before PUBREL.
	pub.durPublish(durV5, &packet.Publish{QoS: 2, PacketID: 5, Topic: "dur/a", Payload: []byte("4")})
	if rc := pub.durReadAck(durV5, packet.PUBREC).Reason; rc != packet.Success {
		t.Fatalf("PUBREC %#x", byte(rc))
	}
	pub.nc.Close()
	srv.stop(t)
	db.Close()

	db = durOpen(t, dir)
	snap := durLoad(t, db)
	if s := durSession(snap, "dur-sub"); s == nil || len(s.Subs) != 1 || len(s.Entries) != 5 {
		t.Fatalf("stored subscriber session %+v, want 1 subscription and 5 entries", s)
	}
	if s := durSession(snap, "dur-pub"); s == nil || len(s.AwaitingRel) != 1 || s.AwaitingRel[0] != 5 {
		t.Fatalf("stored publisher session %+v, want identifier 5 awaiting PUBREL", s)
	}
	if len(snap.Retained) != 1 {
		t.Fatalf("stored retained messages: %d, want 1", len(snap.Retained))
	}
	srv = durStart(t, broker.Config{Persister: db})

	pub, ack := durDial(t, srv.addr, durV5, "dur-pub", false, 3600)
	if !ack.SessionPresent {
		t.Fatal("publisher session not present after restart")
	}
	pub.durPublish(durV5, &packet.Publish{Dup: true, QoS: 2, PacketID: 5, Topic: "dur/a", Payload: []byte("4")})
	if rc := pub.durReadAck(durV5, packet.PUBREC).Reason; rc != packet.Success {
		t.Fatalf("PUBREC for the resent QoS 2 PUBLISH: %#x", byte(rc))
	}
	pub.durAck(durV5, packet.PUBREL, 5)
	if rc := pub.durReadAck(durV5, packet.PUBCOMP).Reason; rc != packet.Success {
		t.Fatalf("PUBCOMP after restart: %#x, want success (identifier 5 was stored)", byte(rc))
	}

	sub, ack = durDial(t, srv.addr, durV5, "dur-sub", false, 3600)
	if !ack.SessionPresent {
		t.Fatal("subscriber session not present after restart")
	}
	got := sub.durReceive(durV5, 5)
	if want := []string{"1:r", "1:1", "2:2", "1:3", "2:4"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after restart the subscriber got %v, want %v in order", got, want)
	}
	sub.expectSilence(300 * time.Millisecond) // "4" is not delivered a second time

	// The subscription is live again and the retained message is still there.
	if rc := pub.durPub1(durV5, 6, "dur/a", "5", false); rc != packet.Success {
		t.Fatalf("PUBACK %#x", byte(rc))
	}
	if got := sub.durReceive(durV5, 1); got[0] != "1:5" {
		t.Fatalf("new message after restart: %v", got)
	}
	fresh, _ := durDial(t, srv.addr, durV5, "dur-fresh", true, 0)
	fresh.durSubscribe(durV5, "dur/r", 1)
	if p := fresh.durReadPublish(durV5); string(p.Payload) != "r" || !p.Retain {
		t.Fatalf("retained message after restart: %q retain=%v", p.Payload, p.Retain)
	}
	fresh.durAck(durV5, packet.PUBACK, 1)
	sub.nc.Close()
	pub.nc.Close()
	fresh.nc.Close()
	srv.stop(t)
	db.Close()

	// Completed flows are gone from disk.
	db = durOpen(t, dir)
	snap = durLoad(t, db)
	if s := durSession(snap, "dur-sub"); s == nil || len(s.Entries) != 0 {
		t.Fatalf("subscriber session after everything was acknowledged: %+v, want no entries", s)
	}
	if s := durSession(snap, "dur-pub"); s == nil || len(s.AwaitingRel) != 0 {
		t.Fatalf("publisher session after PUBCOMP: %+v, want nothing awaiting PUBREL", s)
	}
}

// (b) An expired session is gone after a restart, with every key removed from disk:
// whether it expired while the broker ran or while it was down.
func TestDurabilityRestartExpiredSession(t *testing.T) {
	dir := t.TempDir()
	db := durOpen(t, dir)
	srv := durStart(t, broker.Config{Persister: db})
	pub, _ := durDial(t, srv.addr, durV5, "dur-exp-pub", true, 0)

	// A session with a subscription and a queued message, expiring 1 s after its client left.
	offline := func(id string) time.Time {
		c, _ := durDial(t, srv.addr, durV5, id, true, 1)
		c.durSubscribe(durV5, "exp/"+id, 1)
		c.durDisconnect(durV5)
		left := time.Now()
		if rc := pub.durPub1(durV5, 1, "exp/"+id, "queued", false); rc != packet.Success {
			t.Fatalf("PUBACK %#x", byte(rc))
		}
		if durSession(durLoad(t, db), id) == nil {
			t.Fatalf("session %s not stored", id)
		}
		return left
	}

	offline("dur-exp-running")
	eventually(t, 5*time.Second, "session expiry while running", func() bool {
		return durSession(durLoad(t, db), "dur-exp-running") == nil
	})

	left := offline("dur-exp-down")
	pub.nc.Close()
	srv.stop(t)
	if durSession(durLoad(t, db), "dur-exp-down") == nil {
		t.Fatal("session dur-exp-down gone before it expired")
	}
	db.Close()
	time.Sleep(time.Until(left.Add(1100 * time.Millisecond))) // the expiry passes while the broker is down

	db = durOpen(t, dir)
	srv = durStart(t, broker.Config{Persister: db})
	eventually(t, 5*time.Second, "expiry of a session that expired while the broker was down", func() bool {
		return durSession(durLoad(t, db), "dur-exp-down") == nil
	})
	c, ack := durDial(t, srv.addr, durV5, "dur-exp-down", false, 0)
	if ack.SessionPresent {
		t.Error("expired session present on reconnect")
	}
	c.expectSilence(200 * time.Millisecond)
	c.nc.Close()
	srv.stop(t)
	db.Close()
	for _, id := range []string{"dur-exp-running", "dur-exp-down"} {
		if keys := durRawKeys(t, dir, id); len(keys) > 0 {
			t.Errorf("keys of expired session %s still on disk: %v", id, keys)
		}
	}
}

// durQueueLimit queues 10 QoS 1 messages for an offline session limited to 5, restarts,
// and returns the PUBACK reasons and what the subscriber received.
func durQueueLimit(t *testing.T) (reasons []packet.ReasonCode, got []string) {
	dir := t.TempDir()
	db := durOpen(t, dir)
	cfg := broker.Config{Persister: db, MaxQueuedMessages: 5}
	srv := durStart(t, cfg)
	sub, _ := durDial(t, srv.addr, durV5, "dur-q-sub", true, 3600)
	sub.durSubscribe(durV5, "q/#", 1)
	sub.durDisconnect(durV5)
	pub, _ := durDial(t, srv.addr, durV5, "dur-q-pub", true, 0)
	for i := range 10 {
		reasons = append(reasons, pub.durPub1(durV5, uint16(i+1), "q/a", fmt.Sprint(i+1), false))
	}
	pub.nc.Close()
	srv.stop(t)
	db.Close()

	db = durOpen(t, dir)
	if s := durSession(durLoad(t, db), "dur-q-sub"); s == nil || len(s.Entries) != 5 {
		t.Fatalf("stored session %+v, want 5 entries", s)
	}
	cfg.Persister = db
	srv = durStart(t, cfg)
	sub, _ = durDial(t, srv.addr, durV5, "dur-q-sub", false, 3600)
	got = sub.durReceive(durV5, 5)
	sub.expectSilence(300 * time.Millisecond)
	sub.nc.Close()
	return reasons, got
}

// (c) The per-session queue limit holds on disk: 5 of 10 messages kept, the oldest, in order.
func TestDurabilityRestartQueueLimit(t *testing.T) {
	reasons, got := durQueueLimit(t)
	if want := "[1:1 1:2 1:3 1:4 1:5]"; fmt.Sprint(got) != want {
		t.Fatalf("after restart got %v, want %s", got, want)
	}
	for i, rc := range reasons[:5] {
		if rc != packet.Success {
			t.Errorf("PUBACK %d: %#x, want success", i+1, byte(rc))
		}
	}
	t.Logf("PUBACK reasons for the 10 messages (5 kept): % x", reasons)
}

// (c, issue 4) A message dropped because the only matching persistent session's queue is
// full must not be acknowledged as a success: "once the broker has acknowledged a QoS 1/2
// message it is delivered to every matching persistent session".
func TestDurabilityQueueFullNotAcknowledged(t *testing.T) {
	reasons, _ := durQueueLimit(t)
	for i, rc := range reasons[5:] {
		if !rc.IsError() {
			t.Errorf("message %d dropped (queue full) but acknowledged with %#x", i+6, byte(rc))
		}
	}
}

// (d) A second Open of the same directory is refused with ErrLocked and the directory named.
func TestDurabilityLockedDataDir(t *testing.T) {
	dir := t.TempDir()
	durOpen(t, dir)
	_, err := state.Open(dir, state.Config{})
	if !errors.Is(err, state.ErrLocked) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("second Open = %v, want ErrLocked naming %s", err, dir)
	}
}

var errDurInjected = errors.New("injected write failure")

// durFlaky is a Persister over a real state.DB whose commits fail when fail says so; with
// sticky, every later commit fails too (as state.DB after a write error). A failed commit
// still goes through the DB's queue (empty), so callbacks keep their order.
type durFlaky struct {
	*state.DB
	mu     sync.Mutex
	fail   func(*session.ChangeSet) bool
	sticky bool
	failed bool
}

func (f *durFlaky) Commit(cs *session.ChangeSet, done func(error)) {
	f.mu.Lock()
	bad := f.failed || f.fail != nil && f.fail(cs)
	f.failed = bad && f.sticky
	f.mu.Unlock()
	if !bad {
		f.DB.Commit(cs, done)
		return
	}
	f.DB.Commit(&session.ChangeSet{}, func(error) {
		if done != nil {
			done(errDurInjected)
		}
	})
}

func (f *durFlaky) set(fail func(*session.ChangeSet) bool) {
	f.mu.Lock()
	f.fail, f.failed = fail, false
	f.mu.Unlock()
}

func durHasOp(cs *session.ChangeSet, match func(op *session.Op) bool) bool {
	for i := range cs.Ops {
		if match(&cs.Ops[i]) {
			return true
		}
	}
	return false
}

// (e) When a change set cannot be stored, the 5.0 publisher gets a failure reason (PUBACK
// and PUBREC 0x97), the 3.1.1 publisher is disconnected unacknowledged, the message is not
// delivered, and other clients go on.
func TestDurabilityCommitFailure(t *testing.T) {
	db := durOpen(t, t.TempDir())
	flaky := &durFlaky{DB: db}
	flaky.set(func(cs *session.ChangeSet) bool {
		return durHasOp(cs, func(op *session.Op) bool {
			return op.Kind == session.PutEntry && op.Entry.Delivery.Msg != nil && strings.HasPrefix(op.Entry.Delivery.Msg.Topic, "fail/")
		})
	})
	srv := durStart(t, broker.Config{Persister: flaky})
	sub, _ := durDial(t, srv.addr, durV5, "dur-f-sub", true, 3600)
	sub.durSubscribe(durV5, "#", 2)
	pub, _ := durDial(t, srv.addr, durV5, "dur-f-pub5", true, 3600)

	if rc := pub.durPub1(durV5, 1, "fail/1", "f1", false); rc != packet.QuotaExceeded {
		t.Errorf("PUBACK for an unstorable message: %#x, want 0x97", byte(rc))
	}
	if rc := pub.durPub2(durV5, 2, "fail/2", "f2"); rc != packet.QuotaExceeded {
		t.Errorf("PUBREC for an unstorable message: %#x, want 0x97", byte(rc))
	}
	sub.expectSilence(200 * time.Millisecond)

	old, _ := durDial(t, srv.addr, durV31, "dur-f-pub311", true, 0)
	old.durPublish(durV31, &packet.Publish{QoS: 1, PacketID: 1, Topic: "fail/3", Payload: []byte("f3")})
	old.expectClosed(5 * time.Second) // no PUBACK: the 3.1.1 publisher will send again

	// Others are unaffected: a message that can be stored goes through, the broker is alive.
	other, _ := durDial(t, srv.addr, durV5, "dur-f-other", true, 3600)
	if rc := other.durPub1(durV5, 1, "ok/1", "ok1", false); rc != packet.Success {
		t.Errorf("PUBACK for a storable message: %#x", byte(rc))
	}
	if got := sub.durReceive(durV5, 1); got[0] != "1:ok1" {
		t.Errorf("subscriber got %v, want only ok1", got)
	}
	checkAlive(t, srv.addr)

	// Once storage works again, the refused QoS 2 identifier is free: the publication is new.
	flaky.set(nil)
	if rc := pub.durPub2(durV5, 2, "fail/2", "f2"); rc != packet.Success {
		t.Errorf("PUBREC after recovery: %#x", byte(rc))
	}
	if got := sub.durReceive(durV5, 1); got[0] != "2:f2" {
		t.Errorf("after recovery got %v, want f2", got)
	}
	sub.expectSilence(200 * time.Millisecond)
}

// (e, issue 4) The publisher side of QoS 2: if forgetting an identifier (PUBREL) cannot be
// stored, the broker must not answer PUBCOMP as if it had; otherwise, after a restart, the
// stale identifier swallows the next publication that legitimately reuses it: PUBREC
// success, never delivered.
func TestDurabilityReleaseFailureThenRestart(t *testing.T) {
	dir := t.TempDir()
	db := durOpen(t, dir)
	flaky := &durFlaky{DB: db, sticky: true}
	flaky.set(func(cs *session.ChangeSet) bool {
		return durHasOp(cs, func(op *session.Op) bool { return op.Kind == session.DeleteAwaitRel })
	})
	srv := durStart(t, broker.Config{Persister: flaky})
	sub, _ := durDial(t, srv.addr, durV5, "dur-r-sub", true, 3600)
	sub.durSubscribe(durV5, "rel/#", 2)
	pub, _ := durDial(t, srv.addr, durV5, "dur-r-pub", true, 3600)
	pub.durPublish(durV5, &packet.Publish{QoS: 2, PacketID: 7, Topic: "rel/a", Payload: []byte("first")})
	if rc := pub.durReadAck(durV5, packet.PUBREC).Reason; rc != packet.Success {
		t.Fatalf("PUBREC %#x", byte(rc))
	}
	sub.durReceive(durV5, 1)
	pub.durAck(durV5, packet.PUBREL, 7)
	// The release cannot be stored. Acceptable answers: no PUBCOMP (the connection closes and
	// the client sends PUBREL again later) or a PUBCOMP with a failure reason.
	b, err := pub.readPacket(2 * time.Second)
	completed := err == nil && len(b) >= 4 && packet.Type(b[0]>>4) == packet.PUBCOMP && (len(b) == 4 || b[4] < 0x80)
	pub.nc.Close()
	sub.nc.Close()
	srv.stop(t)
	db.Close()

	db = durOpen(t, dir) // storage works again
	srv = durStart(t, broker.Config{Persister: db})
	pub, _ = durDial(t, srv.addr, durV5, "dur-r-pub", false, 3600)
	if !completed {
		pub.durAck(durV5, packet.PUBREL, 7) // finish the first flow
		pub.durReadAck(durV5, packet.PUBCOMP)
	}
	// Identifier 7 is free for the client now: a new message.
	if rc := pub.durPub2(durV5, 7, "rel/a", "second"); rc != packet.Success {
		t.Fatalf("PUBREC %#x", byte(rc))
	}
	sub, _ = durDial(t, srv.addr, durV5, "dur-r-sub", false, 3600)
	if got := sub.durCollect(time.Second); fmt.Sprint(got) != "[2:second]" {
		t.Fatalf("after the restart the subscriber got %v, want [2:second]: a QoS 2 message acknowledged with PUBREC 0x00 was lost (the PUBREL whose release could not be stored was answered with a successful PUBCOMP: %v)", got, completed)
	}
}

// durCollect reads until nothing arrives for quiet, answering as a correct receiver, and
// returns "qos:payload" of every PUBLISH received.
func (c *rawConn) durCollect(quiet time.Duration) []string {
	c.t.Helper()
	var got []string
	for {
		b, err := c.readPacket(quiet)
		if err != nil {
			return got
		}
		switch packet.Type(b[0] >> 4) {
		case packet.PUBLISH:
			p := c.durPublishFrom(b)
			got = append(got, fmt.Sprintf("%d:%s", p.QoS, p.Payload))
			switch p.QoS {
			case 1:
				c.durAck(durV5, packet.PUBACK, p.PacketID)
			case 2:
				c.durAck(durV5, packet.PUBREC, p.PacketID)
			}
		case packet.PUBREL:
			c.durAck(durV5, packet.PUBCOMP, uint16(b[2])<<8|uint16(b[3]))
		}
	}
}

// (e, issue 4) The subscriber side of QoS 2: if recording a PUBREC cannot be stored, the
// broker must not send PUBREL as if it had; otherwise the client completes the flow, and
// after a restart the broker sends the PUBLISH again as new: delivered twice.
func TestDurabilityPubrecFailureThenRestart(t *testing.T) {
	dir := t.TempDir()
	db := durOpen(t, dir)
	flaky := &durFlaky{DB: db, sticky: true}
	flaky.set(func(cs *session.ChangeSet) bool {
		return durHasOp(cs, func(op *session.Op) bool { return op.Kind == session.PutEntry && op.Sent })
	})
	srv := durStart(t, broker.Config{Persister: flaky})
	sub, _ := durDial(t, srv.addr, durV5, "dur-p-sub", true, 3600)
	sub.durSubscribe(durV5, "rec/#", 2)
	pub, _ := durDial(t, srv.addr, durV5, "dur-p-pub", true, 0)
	if rc := pub.durPub2(durV5, 1, "rec/a", "once"); rc != packet.Success {
		t.Fatalf("PUBREC %#x", byte(rc))
	}
	// The subscriber as a Method B receiver: delivered on first receipt, identifier awaiting PUBREL.
	p := sub.durReadPublish(durV5)
	awaiting := map[uint16]bool{p.PacketID: true}
	delivered := 1
	sub.durAck(durV5, packet.PUBREC, p.PacketID)
	if b, err := sub.readPacket(time.Second); err == nil && packet.Type(b[0]>>4) == packet.PUBREL {
		delete(awaiting, p.PacketID)
		sub.durAck(durV5, packet.PUBCOMP, p.PacketID)
	}
	sub.nc.Close()
	pub.nc.Close()
	srv.stop(t)
	db.Close()

	db = durOpen(t, dir)
	srv = durStart(t, broker.Config{Persister: db})
	sub, _ = durDial(t, srv.addr, durV5, "dur-p-sub", false, 3600)
	for {
		b, err := sub.readPacket(500 * time.Millisecond)
		if err != nil {
			break
		}
		switch packet.Type(b[0] >> 4) {
		case packet.PUBLISH:
			p := sub.durPublishFrom(b)
			if !awaiting[p.PacketID] {
				delivered++
				awaiting[p.PacketID] = true
			}
			sub.durAck(durV5, packet.PUBREC, p.PacketID)
		case packet.PUBREL:
			id := uint16(b[2])<<8 | uint16(b[3])
			delete(awaiting, id)
			sub.durAck(durV5, packet.PUBCOMP, id)
		}
	}
	if delivered != 1 {
		t.Fatalf("QoS 2 message delivered %d times", delivered)
	}
}

func (c *rawConn) durPublishFrom(b []byte) packet.Publish {
	c.t.Helper()
	i := 1
	for b[i]&0x80 != 0 {
		i++
	}
	var p packet.Publish
	if err := packet.DecodePublish(&p, b[0]&0x0f, b[i+1:], durV5); err != nil {
		c.t.Fatal(err)
	}
	return p
}

// (f) A full disk, with real Pebble on a 4 MiB tmpfs: QoS 1 publications get a failure
// reason once nothing more can be stored, never a success for a message that is not on
// disk, and the broker stays up. Needs root (mount); skipped otherwise.
func TestDurabilityDiskFull(t *testing.T) {
	if testing.Short() {
		t.Skip("disk full: not in -short")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", mnt).CombinedOutput(); err != nil {
		t.Skipf("disk full test needs a small tmpfs and mount is not permitted here: %v %s", err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", mnt, err, out)
		}
	})
	dir := filepath.Join(mnt, "state")
	db, err := state.Open(dir, state.Config{})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			db.Close()
		}
	})
	srv := durStart(t, broker.Config{Persister: db, MaxQueuedMessages: 1 << 20, MaxQueuedBytes: 1 << 30})
	sub, _ := durDial(t, srv.addr, durV5, "dur-full-sub", true, 3600)
	sub.durSubscribe(durV5, "full/#", 1)
	sub.durDisconnect(durV5)

	pub, _ := durDial(t, srv.addr, durV5, "dur-full-pub", true, 0)
	payload := bytes.Repeat([]byte{'x'}, 32<<10)
	var acked []int
	failures := 0
	for i := 1; i <= 400 && failures < 3; i++ {
		p := append(fmt.Appendf(nil, "%05d", i), payload...)
		pub.durPublish(durV5, &packet.Publish{QoS: 1, PacketID: uint16(i), Topic: "full/a", Payload: p})
		a := pub.durReadAck(durV5, packet.PUBACK)
		switch {
		case a.Reason == packet.Success:
			if failures > 0 {
				t.Errorf("message %d acknowledged after a storage failure", i)
			}
			acked = append(acked, i)
		case a.Reason.IsError():
			failures++
		default:
			t.Fatalf("PUBACK %d: %#x", i, byte(a.Reason))
		}
	}
	if failures == 0 {
		t.Fatalf("400 × 32 KiB acknowledged on a 4 MiB file system")
	}
	t.Logf("disk full after %d acknowledged messages; then PUBACK with a failure reason", len(acked))
	checkAlive(t, srv.addr)
	pub.nc.Close()
	srv.stop(t)
	db.Close()
	closed = true

	// With room again, every acknowledged message is on disk.
	if out, err := exec.Command("mount", "-o", "remount,size=64m", mnt).CombinedOutput(); err != nil {
		t.Fatalf("remount: %v %s", err, out)
	}
	db2 := durOpen(t, dir)
	s := durSession(durLoad(t, db2), "dur-full-sub")
	if s == nil {
		t.Fatal("subscriber session lost")
	}
	stored := map[int]bool{}
	for _, e := range s.Entries {
		var n int
		fmt.Sscanf(string(e.Delivery.Msg.Payload[:5]), "%d", &n)
		stored[n] = true
	}
	for _, i := range acked {
		if !stored[i] {
			t.Errorf("message %d acknowledged but not on disk", i)
		}
	}
}

// (c) After a restart, a QoS 1 message that reached the subscriber before it went away is
// re-sent with DUP set; one queued while it was away is sent with DUP clear
// [MQTT-3.3.1-1] [MQTT-3.3.1-3]. And a session replaced by Clean Start never gets the
// entries of its predecessor back, even when one was stored after the Clean Start.
func TestDurabilityRestartDupAndIncarnation(t *testing.T) {
	dir := t.TempDir()
	db := durOpen(t, dir)
	srv := durStart(t, broker.Config{Persister: db})
	sub, _ := durDial(t, srv.addr, durV5, "dd-sub", true, 3600)
	sub.durSubscribe(durV5, "dd/#", 1)
	pub, _ := durDial(t, srv.addr, durV5, "dd-pub", true, 0)
	if rc := pub.durPub1(durV5, 1, "dd/a", "1", false); rc != packet.Success {
		t.Fatalf("PUBACK %#x", byte(rc))
	}
	if p := sub.durReadPublish(durV5); string(p.Payload) != "1" || p.Dup {
		t.Fatalf("first delivery %q dup=%v", p.Payload, p.Dup)
	}
	sub.durDisconnect(durV5) // without acknowledging "1"
	if rc := pub.durPub1(durV5, 2, "dd/a", "2", false); rc != packet.Success {
		t.Fatalf("PUBACK %#x", byte(rc))
	}
	pub.nc.Close()
	srv.stop(t)
	db.Close()

	db = durOpen(t, dir)
	srv = durStart(t, broker.Config{Persister: db})
	sub, _ = durDial(t, srv.addr, durV5, "dd-sub", false, 3600)
	for _, want := range []struct {
		payload string
		dup     bool
	}{{"1", true}, {"2", false}} {
		p := sub.durReadPublish(durV5)
		if string(p.Payload) != want.payload || p.Dup != want.dup {
			t.Fatalf("after restart got %q dup=%v, want %q dup=%v", p.Payload, p.Dup, want.payload, want.dup)
		}
		sub.durAck(durV5, packet.PUBACK, p.PacketID)
	}
	sub.durDisconnect(durV5)
	srv.stop(t)
	db.Close()

	db = durOpen(t, dir)
	oldGen := durSession(durLoad(t, db), "dd-sub").Meta.Gen
	srv = durStart(t, broker.Config{Persister: db})
	sub, _ = durDial(t, srv.addr, durV5, "dd-sub", true, 3600) // a new incarnation
	sub.durSubscribe(durV5, "dd/#", 1)
	sub.durDisconnect(durV5)
	srv.stop(t)
	// The commit of a publication routed to the old incarnation lands after the Clean Start.
	orphan := session.Entry{Seq: 1000, ID: 77, Delivery: session.Delivery{QoS: 1,
		Msg: &session.Message{Topic: "dd/a", Payload: []byte("orphan"), QoS: 1}}}
	done := make(chan error, 1)
	db.Commit(&session.ChangeSet{Ops: []session.Op{{Kind: session.PutEntry, ClientID: "dd-sub", Entry: orphan, Gen: oldGen}}},
		func(err error) { done <- err })
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	db.Close()

	db = durOpen(t, dir)
	srv = durStart(t, broker.Config{Persister: db})
	sub, ack := durDial(t, srv.addr, durV5, "dd-sub", false, 3600)
	if !ack.SessionPresent {
		t.Fatal("session not present")
	}
	sub.expectSilence(300 * time.Millisecond) // not the old incarnation's entry
	pub, _ = durDial(t, srv.addr, durV5, "dd-pub", true, 0)
	if rc := pub.durPub1(durV5, 3, "dd/a", "3", false); rc != packet.Success {
		t.Fatalf("PUBACK %#x", byte(rc))
	}
	if p := sub.durReadPublish(durV5); string(p.Payload) != "3" {
		t.Fatalf("got %q, want 3", p.Payload)
	}
}
