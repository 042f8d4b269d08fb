package state

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"vitalmq/internal/packet"
	"vitalmq/internal/session"
)

func openT(t *testing.T, dir string) *DB {
	t.Helper()
	d, err := Open(dir, Config{})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func commitT(t *testing.T, d *DB, ops ...session.Op) {
	t.Helper()
	done := make(chan error, 1)
	d.Commit(&session.ChangeSet{Ops: ops}, func(err error) { done <- err })
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Commit: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Commit did not complete")
	}
}

func msg(topic, payload string, qos byte) *session.Message {
	m := &session.Message{Topic: topic, Payload: []byte(payload), QoS: qos, Origin: "pub", Props: &packet.Properties{}}
	m.Props.ContentType = "application/senml+cbor"
	m.Props.Set(packet.PropContentType)
	m.Props.User = []packet.UserProperty{{Key: "k", Value: "v"}}
	return m
}

var cmpMsg = cmp.Options{
	cmpopts.IgnoreUnexported(session.Message{}),
	cmpopts.EquateEmpty(),
	cmp.Comparer(func(a, b time.Time) bool { return a.Equal(b) }),
	cmpopts.IgnoreFields(packet.Properties{}, "Present"),
}

// Everything written survives close and reopen, in order; deletes and session removal take effect.
func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	d := openT(t, dir)
	exp := time.Unix(1_900_000_000, 123)
	will := msg("dev/a/status", "offline", 1)
	meta := session.Meta{ClientID: "a", ExpiryInterval: 3600, ExpireAt: exp, Username: "u", Attrs: map[string]string{"role": "device"}, Will: will, WillDelay: 5}
	sub := session.Subscription{Subscription: packet.Subscription{Filter: "cmd/a", QoS: 1, NoLocal: true, RetainAsPublished: true, RetainHandling: 2}, ID: 7}
	e1 := session.Entry{Seq: 1, ID: 10, Delivery: session.Delivery{Msg: msg("dev/b/hr", "72", 1), QoS: 1, SubIDs: []uint32{7}}}
	e2 := session.Entry{Seq: 2, ID: 11, Delivery: session.Delivery{Msg: msg("dev/b/hr", "73", 2), QoS: 2, Group: "$share/g/dev/#"}, Released: true}
	e3 := session.Entry{Seq: 300, ID: 12, Delivery: session.Delivery{Msg: msg("dev/b/hr", "74", 1), QoS: 1, Retain: true}}
	ret := msg("dev/b/last", "99", 0)
	ret.Retain = true
	ret.Expiry = exp
	commitT(t, d,
		session.Op{Kind: session.PutMeta, Meta: meta},
		session.Op{Kind: session.PutSub, ClientID: "a", Sub: sub},
		session.Op{Kind: session.PutSub, ClientID: "a", Sub: session.Subscription{Subscription: packet.Subscription{Filter: "gone"}}},
		session.Op{Kind: session.PutEntry, ClientID: "a", Entry: e1},
		session.Op{Kind: session.PutEntry, ClientID: "a", Entry: e2, Sent: true},
		session.Op{Kind: session.PutEntry, ClientID: "a", Entry: e3},
		session.Op{Kind: session.PutAwaitRel, ClientID: "a", PacketID: 513},
		session.Op{Kind: session.PutAwaitRel, ClientID: "a", PacketID: 4},
		session.Op{Kind: session.PutRetained, Msg: ret},
		session.Op{Kind: session.PutRetained, Msg: msg("x/cleared", "1", 0)},
		// a second session, removed whole
		session.Op{Kind: session.PutMeta, Meta: session.Meta{ClientID: "ab", ExpiryInterval: 10}},
		session.Op{Kind: session.PutEntry, ClientID: "ab", Entry: e1},
	)
	commitT(t, d,
		session.Op{Kind: session.DeleteSub, ClientID: "a", Sub: session.Subscription{Subscription: packet.Subscription{Filter: "gone"}}},
		session.Op{Kind: session.DeleteAwaitRel, ClientID: "a", PacketID: 4},
		session.Op{Kind: session.DeleteRetained, Topic: "x/cleared"},
		session.Op{Kind: session.DeleteSession, ClientID: "ab"},
	)
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}

	d = openT(t, dir)
	defer d.Close()
	snap, err := d.Load()
	if err != nil {
		t.Fatal(err)
	}
	want := &session.Snapshot{
		Sessions: []session.Stored{{
			Meta:        meta,
			Subs:        []session.Subscription{sub},
			Entries:     []session.StoredEntry{{Entry: e1}, {Entry: e2, Sent: true}, {Entry: e3}},
			AwaitingRel: []uint16{513},
		}},
		Retained: []*session.Message{ret},
	}
	if diff := cmp.Diff(want, snap, cmpMsg); diff != "" {
		t.Fatalf("Load after reopen (-want +got):\n%s", diff)
	}
}

// A second process on the same directory is refused with a clear error.
func TestLocked(t *testing.T) {
	dir := t.TempDir()
	d := openT(t, dir)
	defer d.Close()
	_, err := Open(dir, Config{})
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open = %v, want ErrLocked", err)
	}
}

// Commits after Close fail; Close is idempotent.
func TestClosed(t *testing.T) {
	d := openT(t, t.TempDir())
	d.Close()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	d.Commit(&session.ChangeSet{Ops: []session.Op{{Kind: session.DeleteRetained, Topic: "x"}}}, func(err error) { done <- err })
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("Commit after Close = %v, want ErrClosed", err)
	}
}

// Callbacks run in Commit order, and a callback may commit again without deadlock.
func TestCommitOrderAndReentrancy(t *testing.T) {
	d := openT(t, t.TempDir())
	defer d.Close()
	var order []int
	done := make(chan struct{})
	for i := range 100 {
		d.Commit(&session.ChangeSet{Ops: []session.Op{{Kind: session.PutRetained, Msg: msg("t", "p", 0)}}}, func(error) {
			order = append(order, i) // committer goroutine only
			if i == 99 {
				d.Commit(&session.ChangeSet{}, func(error) { close(done) })
			}
		})
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("re-entrant commit did not complete")
	}
	for i, v := range order {
		if v != i {
			t.Fatalf("callback %d ran at position %d", v, i)
		}
	}
}

// A corrupt record is reported, not skipped.
func TestCorruptRecord(t *testing.T) {
	dir := t.TempDir()
	d := openT(t, dir)
	commitT(t, d, session.Op{Kind: session.PutMeta, Meta: session.Meta{ClientID: "a", ExpiryInterval: 5}})
	if err := d.db.Set(seqKey("a", 1), []byte{formatVersion, 0xFF}, nil); err != nil {
		t.Fatal(err)
	}
	_, err := d.Load()
	d.Close()
	if !errors.Is(err, errCorrupt) {
		t.Fatalf("Load = %v, want a corrupt-record error", err)
	}
}

// A checkpoint taken while open is a complete, openable copy.
func TestCheckpoint(t *testing.T) {
	d := openT(t, t.TempDir())
	commitT(t, d, session.Op{Kind: session.PutRetained, Msg: msg("a/b", "1", 1)})
	dest := filepath.Join(t.TempDir(), "backup")
	if err := d.Checkpoint(dest); err != nil {
		t.Fatal(err)
	}
	commitT(t, d, session.Op{Kind: session.PutRetained, Msg: msg("a/c", "2", 1)}) // after the backup
	d.Close()
	if _, err := os.Stat(dest); err != nil {
		t.Fatal(err)
	}
	b := openT(t, dest)
	defer b.Close()
	snap, err := b.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Retained) != 1 || snap.Retained[0].Topic != "a/b" {
		t.Fatalf("backup has %d retained messages, want only a/b", len(snap.Retained))
	}
}

func FuzzDecodeEntry(f *testing.F) {
	f.Add(encodeEntry(session.Entry{Seq: 1, ID: 2, Delivery: session.Delivery{Msg: msg("a", "b", 1), QoS: 1}}, true, 7))
	f.Add(encodeMeta(session.Meta{ClientID: "a", ExpiryInterval: 1, Will: msg("w", "x", 0)}))
	f.Fuzz(func(t *testing.T, b []byte) {
		decodeEntry(b, 1)
		decodeMeta(b, "c")
		decodeSub(b, "f")
		decodeRetained(b)
	})
}

// Entries stored for an earlier incarnation of a session (a publication whose commit
// landed after the Clean Start that replaced the session) are not loaded into the new
// one; Gen and SentThrough round-trip.
func TestIncarnation(t *testing.T) {
	dir := t.TempDir()
	d := openT(t, dir)
	meta := session.Meta{ClientID: "a", ExpiryInterval: 60, Gen: 2, SentThrough: 5}
	old := session.Entry{Seq: 9, ID: 3, Delivery: session.Delivery{Msg: msg("dev/b/hr", "old", 1), QoS: 1}}
	cur := session.Entry{Seq: 1, ID: 1, Delivery: session.Delivery{Msg: msg("dev/b/hr", "cur", 1), QoS: 1}}
	commitT(t, d,
		session.Op{Kind: session.PutMeta, Meta: meta},
		session.Op{Kind: session.PutEntry, ClientID: "a", Entry: cur, Gen: 2},
		session.Op{Kind: session.PutEntry, ClientID: "a", Entry: old, Gen: 1},
	)
	d.Close()
	d = openT(t, dir)
	defer d.Close()
	snap, err := d.Load()
	if err != nil {
		t.Fatal(err)
	}
	want := []session.Stored{{Meta: meta, Entries: []session.StoredEntry{{Entry: cur, Gen: 2}}}}
	if diff := cmp.Diff(want, snap.Sessions, cmpMsg); diff != "" {
		t.Fatalf("Load (-want +got):\n%s", diff)
	}
}

// A Lazy change set is written without a sync of its own and is durable with the next
// synced one, in order: what the broker relies on for deletes of completed entries.
func TestLazyCommit(t *testing.T) {
	dir := t.TempDir()
	d := openT(t, dir)
	meta := session.Meta{ClientID: "a", ExpiryInterval: 60}
	e1 := session.Entry{Seq: 1, ID: 1, Delivery: session.Delivery{Msg: msg("t", "1", 1), QoS: 1}}
	e2 := session.Entry{Seq: 2, ID: 1, Delivery: session.Delivery{Msg: msg("t", "2", 1), QoS: 1}} // the id reused
	commitT(t, d, session.Op{Kind: session.PutMeta, Meta: meta}, session.Op{Kind: session.PutEntry, ClientID: "a", Entry: e1})
	done := make(chan error, 1)
	d.Commit(&session.ChangeSet{Ops: []session.Op{{Kind: session.DeleteEntry, ClientID: "a", Entry: e1}}, Lazy: true},
		func(err error) { done <- err })
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	commitT(t, d, session.Op{Kind: session.PutEntry, ClientID: "a", Entry: e2})
	d.Close()
	d = openT(t, dir)
	defer d.Close()
	snap, err := d.Load()
	if err != nil {
		t.Fatal(err)
	}
	if got := snap.Sessions[0].Entries; len(got) != 1 || got[0].Seq != 2 {
		t.Fatalf("entries %+v, want only seq 2", got)
	}
}

// A change set committed right after a sync waits for Config.SyncInterval (shares the next
// sync) instead of being synced at once. Only the lower bound is checked: how much later
// it completes depends on the machine.
func TestSyncInterval(t *testing.T) {
	const interval = 400 * time.Millisecond
	d, err := Open(t.TempDir(), Config{SyncInterval: interval})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	put := func(seq uint64) *session.ChangeSet {
		e := session.Entry{Seq: seq, ID: uint16(seq), Delivery: session.Delivery{Msg: msg("dev/a/hr", "72", 1), QoS: 1}}
		return &session.ChangeSet{Ops: []session.Op{{Kind: session.PutEntry, ClientID: "c", Entry: e}}}
	}
	type result struct {
		waited time.Duration
		err    error
	}
	second := make(chan result, 1)
	d.Commit(put(1), func(err error) {
		if err != nil {
			second <- result{err: err}
			return
		}
		start := time.Now() // just after the first sync: the second waits for the interval
		d.Commit(put(2), func(err error) { second <- result{time.Since(start), err} })
	})
	select {
	case r := <-second:
		if r.err != nil {
			t.Fatal(r.err)
		}
		if r.waited < interval/2 {
			t.Errorf("second commit durable %v after the first sync, want about %v (SyncInterval)", r.waited, interval)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("commits did not complete")
	}
}
