// Package state is the broker's durable state on Pebble, the embedded default behind
// broker.Persister: sessions, subscriptions, QoS 1/2 entries, QoS 2 identifiers awaiting
// release and retained messages.
//
// Commits are group commits: one goroutine (the committer) takes every change set
// waiting, writes them as one batch with one fsync, then runs their callbacks in order.
// Many connections' acknowledgements therefore share one sync, and change sets are
// applied in the order Commit was called. Syncs are at least Config.SyncInterval apart,
// so under load more change sets share each one.
//
// Keys (client ids and topics are UTF-8 without U+0000, so 0x00 separates safely):
//
//	s\x00<client>                 session metadata
//	u\x00<client>\x00<filter>     subscription
//	e\x00<client>\x00<seq:8 BE>   QoS 1/2 entry
//	r\x00<client>\x00<id:2 BE>    QoS 2 packet identifier awaiting PUBREL
//	t\x00<topic>                  retained message
//
// The data directory is locked by Pebble: a second process on it is refused.
package state

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"vitalmq/internal/session"
)

// DB is the broker state store. Create it with Open; Close it after the broker stopped.
type DB struct {
	db   *pebble.DB
	log  *slog.Logger
	wake chan struct{} // capacity 1: "the queue is not empty"
	wg   sync.WaitGroup

	mu     sync.Mutex
	queue  []request // waiting for the committer; never blocks Commit, even from a callback
	closed bool
	failed error // a write failed: every later commit fails too (safe state); committer only
}

type request struct {
	cs   *session.ChangeSet
	done func(error)
}

// ErrLocked is returned by Open when another process holds the data directory.
var ErrLocked = errors.New("state: data directory is in use by another vitalmq process")

// ErrClosed is returned for commits after Close.
var ErrClosed = errors.New("state: closed")

// DefaultSyncInterval is Config.SyncInterval's default.
const DefaultSyncInterval = time.Millisecond

// Config tunes a DB; the zero value is the default.
type Config struct {
	// Log receives Pebble's messages (at debug level) and write failures. Default: discard.
	Log *slog.Logger
	// SyncInterval is the least time between two syncs of the write-ahead log: change sets
	// committed meanwhile wait and share the next sync. Under load this trades latency for
	// CPU: with one sync per change set a sync costs tens of µs of CPU where system calls
	// are dear (a VM), and every durable QoS 1 publication needs one. A change set arriving
	// after a quiet spell is synced at once; under load each waits at most about twice
	// this. Default DefaultSyncInterval (1 ms; docs/PERFORMANCE.md has what it changed);
	// negative: sync as soon as the sync in progress ends.
	SyncInterval time.Duration
}

// Open opens (or creates) the state store in dir.
func Open(dir string, cfg Config) (*DB, error) {
	log := cfg.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	interval := cfg.SyncInterval
	switch {
	case interval == 0:
		interval = DefaultSyncInterval
	case interval < 0:
		interval = 0
	}
	pdb, err := pebble.Open(dir, &pebble.Options{
		Logger:             quietLogger{log},
		WALMinSyncInterval: func() time.Duration { return interval },
	})
	if err != nil {
		if errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK) || strings.Contains(err.Error(), "lock") {
			return nil, fmt.Errorf("%w (%s): %w", ErrLocked, dir, err)
		}
		return nil, fmt.Errorf("state: open %s: %w", dir, err)
	}
	d := &DB{db: pdb, log: log, wake: make(chan struct{}, 1)}
	d.wg.Go(d.committer)
	return d, nil
}

// Close stops the committer after the change sets already queued and closes the store.
// It is safe to call more than once.
func (d *DB) Close() error {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	d.mu.Unlock()
	d.signal()
	d.wg.Wait()
	return d.db.Close()
}

// Commit queues cs; done (if not nil) runs on the committer goroutine once cs is durable
// (a Lazy one: written, durable with the next synced one), or with the error that kept it
// from being stored. Change sets are applied in the order they are committed.
func (d *DB) Commit(cs *session.ChangeSet, done func(error)) {
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		if done != nil {
			done(ErrClosed)
		}
		return
	}
	d.queue = append(d.queue, request{cs, done})
	d.mu.Unlock()
	d.signal()
}

func (d *DB) signal() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// committer writes everything queued as one batch with one sync, then runs the callbacks.
func (d *DB) committer() {
	var batch []request
	for range d.wake {
		for {
			d.mu.Lock()
			batch, d.queue = d.queue, batch[:0]
			closed := d.closed
			d.mu.Unlock()
			if len(batch) == 0 {
				if closed {
					return
				}
				break
			}
			err := d.write(batch)
			for _, r := range batch {
				if r.done != nil {
					d.callback(r.done, err)
				}
			}
			clear(batch)
		}
	}
}

// callback runs one completion callback; a panic in it is logged, never fatal to the
// process or to the other callbacks of the batch.
func (d *DB) callback(done func(error), err error) {
	defer func() {
		if r := recover(); r != nil {
			d.log.Error("panic in a commit callback", "panic", fmt.Sprint(r))
		}
	}()
	done(err)
}

func (d *DB) write(reqs []request) (err error) {
	if d.failed != nil {
		return d.failed
	}
	defer func() {
		// Pebble reports a failed commit (a full disk) through Logger.Fatalf, which must not
		// return (the commit would look successful): quietLogger panics, and this turns the
		// panic into a failed write and a store that refuses every later one.
		if r := recover(); r != nil {
			d.failed = fmt.Errorf("state: write failed, refusing further writes until restart: %v", r)
			d.log.Error("broker state write failed; QoS 1/2 publications are refused until restart", "err", r)
			err = d.failed
		}
	}()
	b := d.db.NewBatch()
	defer b.Close()
	n := 0
	for _, r := range reqs {
		for _, op := range r.cs.Ops {
			if err := apply(b, op); err != nil {
				return err
			}
			n++
		}
	}
	if n == 0 {
		return nil
	}
	opt := pebble.NoSync // a batch of lazy change sets only: the next synced batch makes it durable
	for _, r := range reqs {
		if !r.cs.Lazy {
			opt = pebble.Sync
			break
		}
	}
	if err := b.Commit(opt); err != nil {
		d.failed = fmt.Errorf("state: write failed, refusing further writes until restart: %w", err)
		d.log.Error("broker state write failed; QoS 1/2 publications are refused until restart", "err", err)
		return d.failed
	}
	return nil
}

func key(kind byte, client string, suffix ...[]byte) []byte {
	k := make([]byte, 0, 3+len(client)+16)
	k = append(k, kind, 0)
	k = append(k, client...)
	for _, s := range suffix {
		k = append(k, 0)
		k = append(k, s...)
	}
	return k
}

func seqKey(client string, seq uint64) []byte {
	return key('e', client, binary.BigEndian.AppendUint64(nil, seq))
}

func relKey(client string, id uint16) []byte {
	return key('r', client, binary.BigEndian.AppendUint16(nil, id))
}

// prefixEnd is the first key after every key starting with kind\x00client\x00.
func prefixRange(kind byte, client string) (start, end []byte) {
	start = append(key(kind, client), 0)
	end = append(key(kind, client), 1)
	return start, end
}

func apply(b *pebble.Batch, op session.Op) error {
	switch op.Kind {
	case session.PutMeta:
		return b.Set(key('s', op.Meta.ClientID), encodeMeta(op.Meta), nil)
	case session.DeleteSession:
		for _, kind := range []byte{'u', 'e', 'r'} {
			start, end := prefixRange(kind, op.ClientID)
			if err := b.DeleteRange(start, end, nil); err != nil {
				return err
			}
		}
		return b.Delete(key('s', op.ClientID), nil)
	case session.PutSub:
		return b.Set(key('u', op.ClientID, []byte(op.Sub.Filter)), encodeSub(op.Sub), nil)
	case session.DeleteSub:
		return b.Delete(key('u', op.ClientID, []byte(op.Sub.Filter)), nil)
	case session.PutEntry:
		return b.Set(seqKey(op.ClientID, op.Entry.Seq), encodeEntry(op.Entry, op.Sent, op.Gen), nil)
	case session.DeleteEntry:
		return b.Delete(seqKey(op.ClientID, op.Entry.Seq), nil)
	case session.PutAwaitRel:
		return b.Set(relKey(op.ClientID, op.PacketID), nil, nil)
	case session.DeleteAwaitRel:
		return b.Delete(relKey(op.ClientID, op.PacketID), nil)
	case session.PutRetained:
		return b.Set(key('t', op.Msg.Topic), encodeRetained(op.Msg), nil)
	case session.DeleteRetained:
		return b.Delete(key('t', op.Topic), nil)
	}
	return fmt.Errorf("state: unknown op %d", op.Kind)
}

// Load reads the whole state. A corrupt record is an error naming its key kind, never
// silently skipped.
func (d *DB) Load() (*session.Snapshot, error) {
	it, err := d.db.NewIter(nil)
	if err != nil {
		return nil, err
	}
	defer it.Close()
	snap := &session.Snapshot{}
	idx := map[string]int{}
	get := func(client string) *session.Stored {
		i, ok := idx[client]
		if !ok {
			i = len(snap.Sessions)
			idx[client] = i
			snap.Sessions = append(snap.Sessions, session.Stored{Meta: session.Meta{ClientID: client}})
		}
		return &snap.Sessions[i]
	}
	for it.First(); it.Valid(); it.Next() {
		k, v := it.Key(), it.Value()
		if len(k) < 2 || k[1] != 0 {
			return nil, fmt.Errorf("state: unexpected key %q", k)
		}
		rest := k[2:]
		client, tail, _ := bytes.Cut(rest, []byte{0})
		var err error
		switch k[0] {
		case 's':
			var m session.Meta
			m, err = decodeMeta(v, string(rest))
			if err == nil {
				get(m.ClientID).Meta = m
			}
		case 'u':
			var s session.Subscription
			s, err = decodeSub(v, string(tail))
			if err == nil {
				st := get(string(client))
				st.Subs = append(st.Subs, s)
			}
		case 'e':
			if len(tail) != 8 {
				err = errCorrupt
				break
			}
			var e session.StoredEntry
			e, err = decodeEntry(v, binary.BigEndian.Uint64(tail))
			if err == nil {
				st := get(string(client))
				st.Entries = append(st.Entries, e)
			}
		case 'r':
			if len(tail) != 2 {
				err = errCorrupt
				break
			}
			st := get(string(client))
			st.AwaitingRel = append(st.AwaitingRel, binary.BigEndian.Uint16(tail))
		case 't':
			var m *session.Message
			m, err = decodeRetained(v)
			if err == nil {
				snap.Retained = append(snap.Retained, m)
			}
		default:
			err = fmt.Errorf("unknown key kind %q", k[0])
		}
		if err != nil {
			return nil, fmt.Errorf("state: record %q: %w", k[:min(len(k), 64)], err)
		}
	}
	if err := it.Error(); err != nil {
		return nil, err
	}
	// A session whose metadata is missing (its records outlived a crash mid-delete) is
	// dropped, and so are entries stored for an earlier incarnation of a session.
	kept := snap.Sessions[:0]
	for _, s := range snap.Sessions {
		if s.Meta.ExpiryInterval == 0 {
			continue
		}
		es := s.Entries[:0]
		for _, e := range s.Entries {
			if e.Gen == s.Meta.Gen {
				es = append(es, e)
			}
		}
		s.Entries = es
		kept = append(kept, s)
	}
	snap.Sessions = kept
	return snap, nil
}

// Checkpoint writes a consistent copy of the store into destDir (which must not exist),
// while the broker runs: the backup.
func (d *DB) Checkpoint(destDir string) error {
	return d.db.Checkpoint(destDir, pebble.WithFlushedWAL())
}

// quietLogger sends Pebble's informational chatter to debug and its errors to error.
type quietLogger struct{ log *slog.Logger }

func (q quietLogger) Infof(format string, args ...any)  { q.log.Debug(fmt.Sprintf(format, args...)) }
func (q quietLogger) Errorf(format string, args ...any) { q.log.Error(fmt.Sprintf(format, args...)) }

// Fatalf panics: Pebble must not carry on as if the failed operation had succeeded. On the
// committer goroutine the panic becomes a failed write (see DB.write).
func (q quietLogger) Fatalf(format string, args ...any) {
	q.log.Error(fmt.Sprintf(format, args...))
	panic(fmt.Sprintf(format, args...))
}
