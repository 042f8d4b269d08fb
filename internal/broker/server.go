package broker

import (
	"container/heap"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/netip"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"vitalmq/internal/idlewait"
	"vitalmq/internal/limiter"
	"vitalmq/internal/packet"
	"vitalmq/internal/session"
	"vitalmq/internal/topic"
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("broker: server closed")

// Version is reported in $SYS/broker/version.
var Version = "vitalmq dev"

// Server is an MQTT broker. Create it with New, run listeners with Serve, stop it with
// Shutdown or Close.
type Server struct {
	cfg      Config
	log      *slog.Logger
	persist  Persister
	limits   topic.Limits
	subs     *topic.Trie[*sess, subscription]
	retained *topic.Retained[*session.Message]
	started  time.Time
	idle     *idlewait.Waiter // dormant connections' sockets; nil: none go dormant (KeepReaders)
	// wakes runs the read loops of woken connections (conn.resume), and flushes their
	// writes (conn.unlockFlush), on pooled goroutines.
	wakes, flushes connPool

	mu        sync.Mutex
	sessions  map[string]*sess
	due       dueHeap // offline sessions with a deadline, for the janitor
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	closed    bool

	wg     sync.WaitGroup
	quit   chan struct{} // closed by Close: every goroutine ends
	routes sync.Pool     // *router scratch

	overloaded    atomic.Bool          // the heap is over MemoryBudget: shed load
	retainMu      sync.Mutex           // retained-message bookkeeping (a leaf lock)
	retainedBy    map[string]int       // retained messages per publishing client id
	retainedBytes int64                // topic and payload bytes of all retained messages
	perAddr       *limiter.Concurrency // open connections per source address
	connRate      *limiter.Limiter     // new connections per source address
	stats         stats
	lastDropLog   atomic.Int64 // unix nanoseconds of the last "messages dropped" log line
}

type stats struct {
	connected, received, sent, dropped, connects atomic.Int64
	dormant, wakes                               atomic.Int64 // connections without a reader goroutine; their wakes
	held                                         atomic.Int64 // publishers waiting for flow control without one (conn.hold)
	waiting                                      atomic.Int64 // publishers waiting for flow control on their reader (txn.wait)
}

// subscription is what the trie stores for a session's subscription.
type subscription struct {
	qos         byte
	noLocal     bool
	retainAsPub bool
	id          uint32
}

// trieSub is what the trie keeps of a session's subscription.
func trieSub(s session.Subscription) subscription {
	return subscription{qos: s.QoS, noLocal: s.NoLocal, retainAsPub: s.RetainAsPublished, id: s.ID}
}

// New returns a Server, or an error naming an invalid Config field.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	s := &Server{
		cfg:        cfg,
		log:        cfg.Logger,
		limits:     topic.Limits{MaxLength: cfg.MaxTopicLength, MaxLevels: cfg.MaxTopicLevels},
		subs:       topic.NewTrie[*sess, subscription](),
		retained:   topic.NewRetained[*session.Message](),
		started:    time.Now(),
		sessions:   make(map[string]*sess),
		listeners:  make(map[net.Listener]struct{}),
		conns:      make(map[*conn]struct{}),
		quit:       make(chan struct{}),
		retainedBy: make(map[string]int),
		perAddr:    limiter.NewConcurrency(cfg.MaxConnectionsPerAddress, 1<<20),
		connRate:   limiter.New(cfg.ConnectionRate, cfg.ConnectionBurst, 1<<16),
	}
	s.routes.New = func() any { return &router{seen: make(map[*sess]int)} }
	s.wakes.init(func(c *conn) { c.guard(c.loop, nil) })
	s.flushes.init((*conn).flush)
	if cfg.Persister != nil {
		s.persist = cfg.Persister
		snap, err := s.persist.Load()
		if err != nil {
			return nil, fmt.Errorf("load broker state: %w", err)
		}
		s.restore(snap)
	}
	s.wg.Go(s.janitor)
	if !cfg.KeepReaders {
		if w, err := idlewait.New(); err == nil {
			s.idle = w
			s.wg.Go(w.Run)
			s.wg.Go(func() { <-s.quit; w.Close() })
		} else {
			s.log.Info("idle connections keep their reader goroutine", "err", err)
		}
	}
	return s, nil
}

// restore rebuilds sessions, subscriptions and retained messages from a snapshot. Every
// session starts offline. A session that was offline keeps its expiry time; one whose
// client was connected when the previous process ended (without a DISCONNECT) expires,
// and publishes its will, counting from now.
func (s *Server) restore(snap *session.Snapshot) {
	now := time.Now()
	for _, m := range snap.Retained {
		s.retained.Set(m.Topic, m)
		s.countRetained(m.Origin, 1)
		s.retainedBytes += retainedSize(m)
	}
	for _, st := range snap.Sessions {
		ss := newSess(st.Meta.ClientID)
		ss.gen = st.Meta.Gen
		ss.stored = true
		ss.st.ExpiryInterval = st.Meta.ExpiryInterval
		ss.expireAt = st.Meta.ExpireAt
		if ss.expireAt.IsZero() && ss.st.ExpiryInterval != math.MaxUint32 {
			ss.expireAt = now.Add(time.Duration(ss.st.ExpiryInterval) * time.Second)
		}
		if st.Meta.Will != nil {
			ss.will, ss.willDelay, ss.willExpiry = st.Meta.Will, st.Meta.WillDelay, st.Meta.WillExpiry
			ss.willAt = now.Add(time.Duration(min(st.Meta.WillDelay, st.Meta.ExpiryInterval)) * time.Second)
		}
		ss.client.Store(&Client{ClientID: st.Meta.ClientID, Username: st.Meta.Username, Attrs: st.Meta.Attrs, Anonymous: st.Meta.Anonymous})
		for _, sub := range st.Subs {
			ss.st.Subs[sub.Filter] = sub
			s.subs.Add(sub.Filter, ss, trieSub(sub))
		}
		for _, e := range st.Entries {
			if !e.Sent && e.Delivery.Msg.Expired(now) {
				continue // expired while stored [MQTT-3.3.2-5] (a released QoS 2 entry resumes with PUBREL)
			}
			// An entry that may have reached the client goes again with DUP set [MQTT-3.3.1-1]
			// (a QoS 2 entry acknowledged with PUBREC is resumed with PUBREL instead).
			e.Dup = e.Seq <= st.Meta.SentThrough
			ss.st.Restore(e.Entry, e.Sent)
		}
		ss.st.AwaitingRel = append(ss.st.AwaitingRel, st.AwaitingRel...)
		s.sessions[ss.clientID] = ss
		s.scheduleLocked(ss)
	}
	if n := len(snap.Sessions); n > 0 || len(snap.Retained) > 0 {
		s.log.Info("broker state restored", "sessions", n, "retained", len(snap.Retained))
	}
}

// Config returns the effective configuration (defaults filled in).
func (s *Server) Config() Config { return s.cfg }

// Serve accepts connections on ln until Shutdown or Close; it always returns a non-nil
// error, ErrServerClosed after a shutdown.
func (s *Server) Serve(ln net.Listener, opts ListenerOptions) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.isClosed() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, errTemporary) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				time.Sleep(backoff)
				continue
			}
			return fmt.Errorf("accept on %s: %w", opts.Name, err)
		}
		backoff = 0
		key := sourceKey(nc.RemoteAddr())
		if !s.connRate.Allow(key) || !s.perAddr.Acquire(key) {
			nc.Close() // T30: refused before any work is done for it
			s.dropped("connection limit for source address", "")
			continue
		}
		nc, sk := s.wrap(nc, opts)
		c := newConn(s, nc, opts)
		c.addrKey = key
		if sk != nil {
			if k, err := s.idle.Add(sk.rc, sk.wake(c)); err == nil {
				c.sock, c.idleKey, c.in = sk, k, &dataFirst{nc}
			}
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			if c.sock != nil {
				s.idle.Remove(c.idleKey)
			}
			return ErrServerClosed
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go c.serve() // counted in s.wg above, under s.mu, so Close never misses it
	}
}

var errTemporary = errors.New("temporary accept error")

// wrap returns the connection a conn reads and writes for an accepted one: over TLS when
// the listener has a configuration, and with a sock under it when the connection can go
// dormant (a TCP socket, and a Waiter).
func (s *Server) wrap(nc net.Conn, opts ListenerOptions) (net.Conn, *sock) {
	var sk *sock
	if tc, ok := nc.(*net.TCPConn); ok && s.idle != nil {
		if k, err := newSock(tc); err == nil {
			sk, nc = k, k
		}
	}
	if opts.TLS != nil {
		nc = tls.Server(nc, opts.TLS)
	}
	return nc, sk
}

// sourceKey is the limiter key of a remote address (see limiter.SourceKey).
func sourceKey(a net.Addr) string {
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return limiter.SourceKey(ap.Addr())
	}
	return a.String()
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Shutdown stops accepting, tells every 5.0 client the server is shutting down
// (DISCONNECT 0x8B), flushes what is pending and waits for every goroutine, or for ctx.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		for ln := range s.listeners {
			ln.Close()
		}
		for c := range s.conns {
			c.kick(packet.ServerShuttingDown)
		}
		close(s.quit)
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.closeConns()
		<-done
		return ctx.Err()
	}
}

// Close stops the server at once: listeners and connections are closed without waiting
// for pending writes. It waits for every goroutine and is safe to call more than once.
func (s *Server) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		for ln := range s.listeners {
			ln.Close()
		}
		close(s.quit)
	}
	s.mu.Unlock()
	s.closeConns()
	s.wg.Wait()
	return nil
}

func (s *Server) closeConns() {
	s.mu.Lock()
	for c := range s.conns {
		c.closeSocket()
	}
	s.mu.Unlock()
}

// recoverTo converts a panic in a goroutine into a log line; it never crashes the process.
// It must be deferred directly: defer s.recoverTo("where").
func (s *Server) recoverTo(where string) {
	if r := recover(); r != nil {
		s.logPanic(where, r)
	}
}

func (s *Server) logPanic(where string, r any) {
	s.log.Error("panic recovered", "where", where, "panic", fmt.Sprint(r), "stack", string(debug.Stack()))
}

// janitor runs timed work: delayed wills, session expiry, $SYS statistics.
func (s *Server) janitor() {
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var nextSys time.Time
	for {
		select {
		case <-s.quit:
			return
		case now := <-tick.C:
			func() {
				defer s.recoverTo("janitor")
				s.expire(now)
				s.checkMemory()
				if s.cfg.SysInterval > 0 && !now.Before(nextSys) {
					nextSys = now.Add(s.cfg.SysInterval)
					s.publishSys(now)
				}
			}()
		}
	}
}

// expire publishes wills whose delay has passed and ends sessions whose expiry has passed.
func (s *Server) expire(now time.Time) {
	type will struct {
		c *Client
		m *session.Message
	}
	var wills []will
	var ended []*sess
	var tx txn
	s.mu.Lock()
	for len(s.due) > 0 && !now.Before(s.due[0].due) {
		ss := heap.Pop(&s.due).(*sess)
		ss.mu.Lock()
		if ss.conn == nil && !ss.ended {
			if ss.will != nil && !ss.willAt.IsZero() && !now.Before(ss.willAt) {
				wills = append(wills, will{ss.client.Load(), ss.takeWill()})
				if ss.persistent(s) {
					tx.cs.Add(session.Op{Kind: session.PutMeta, Meta: ss.meta()})
				}
			}
			if !ss.expireAt.IsZero() && !now.Before(ss.expireAt) {
				if ss.will != nil { // the session ends before the will delay: publish now [MQTT-3.1.3-9]
					wills = append(wills, will{ss.client.Load(), ss.takeWill()})
				}
				ss.ended = true
				if s.sessions[ss.clientID] == ss {
					delete(s.sessions, ss.clientID)
				}
				ended = append(ended, ss)
				if ss.stored && s.persist != nil {
					tx.cs.Add(session.Op{Kind: session.DeleteSession, ClientID: ss.clientID})
				}
			}
			s.scheduleLocked(ss) // the next deadline, if any
		}
		ss.mu.Unlock()
	}
	s.mu.Unlock()
	for _, ss := range ended {
		s.dropSubscriptions(ss)
	}
	for _, w := range wills {
		s.sendWill(w.c, w.m, &tx)
	}
	s.commit(&tx, nil)
}

func (s *Server) publishSys(now time.Time) {
	put := func(name, v string) {
		s.Publish(&session.Message{Topic: "$SYS/broker/" + name, Payload: []byte(v), Retain: true})
	}
	s.mu.Lock()
	nsess := len(s.sessions)
	s.mu.Unlock()
	put("version", Version)
	put("uptime", strconv.FormatInt(int64(now.Sub(s.started).Seconds()), 10)+" seconds")
	put("clients/connected", strconv.FormatInt(s.stats.connected.Load(), 10))
	put("clients/dormant", strconv.FormatInt(s.stats.dormant.Load(), 10))
	put("clients/held", strconv.FormatInt(s.stats.held.Load(), 10))
	put("clients/total", strconv.Itoa(nsess))
	put("messages/received", strconv.FormatInt(s.stats.received.Load(), 10))
	put("messages/sent", strconv.FormatInt(s.stats.sent.Load(), 10))
	put("messages/dropped", strconv.FormatInt(s.stats.dropped.Load(), 10))
	put("subscriptions/count", strconv.Itoa(s.subs.Len()))
	put("retained messages/count", strconv.Itoa(s.retained.Len()))
}

// heapSample reads the live heap size.
func heapSample() int64 {
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(sample)
	if sample[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return int64(sample[0].Value.Uint64())
}

// checkMemory sets or clears the overload state from the heap size, logging transitions.
func (s *Server) checkMemory() {
	over := heapSample() > s.cfg.MemoryBudget
	if s.overloaded.Swap(over) != over {
		if over {
			s.log.Warn("memory budget exceeded: refusing new connections and publications", "budget_bytes", s.cfg.MemoryBudget)
		} else {
			s.log.Info("memory back under budget: accepting connections and publications")
		}
	}
}

// dropped counts a message dropped for a session and logs it at most once a second, so a
// flood of drops can neither fill the log nor cost the broker its CPU.
func (s *Server) dropped(why, clientID string) {
	n := s.stats.dropped.Add(1)
	now := time.Now().UnixNano()
	last := s.lastDropLog.Load()
	if now-last < int64(time.Second) || !s.lastDropLog.CompareAndSwap(last, now) {
		return
	}
	s.log.Warn("messages dropped", "reason", why, "client", clientID, "dropped_total", n)
}

// Stats is a snapshot of the broker's counters.
type Stats struct {
	Connected, Sessions, Subscriptions, Retained int
	Received, Sent, Dropped, Connects            int64
}

// Stats returns the broker's counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	n := len(s.sessions)
	s.mu.Unlock()
	return Stats{Connected: int(s.stats.connected.Load()), Sessions: n, Subscriptions: s.subs.Len(),
		Retained: s.retained.Len(), Received: s.stats.received.Load(), Sent: s.stats.sent.Load(),
		Dropped: s.stats.dropped.Load(), Connects: s.stats.connects.Load()}
}

// Kick disconnects the client with the given identifier, if connected (a 5.0 client is
// told rc), and, with purge, ends its session: subscriptions, queued and in-flight messages
// and a pending will are discarded, in memory and in the persister. It reports whether a
// session existed. Used when a device's certificate is revoked or a user removed.
func (s *Server) Kick(clientID string, rc packet.ReasonCode, purge bool) bool {
	s.mu.Lock()
	ss := s.sessions[clientID]
	if ss == nil {
		s.mu.Unlock()
		return false
	}
	ss.mu.Lock()
	c := ss.owner
	var tx txn
	if purge {
		ss.ended = true
		ss.will = nil
		ss.st.Filter(func(*session.Entry, bool) bool { return false })
		delete(s.sessions, clientID)
		s.scheduleLocked(ss)
		if ss.stored && s.persist != nil {
			tx.cs.Add(session.Op{Kind: session.DeleteSession, ClientID: clientID})
		}
	}
	ss.mu.Unlock()
	s.mu.Unlock()
	if purge {
		s.dropSubscriptions(ss)
	}
	if c != nil {
		c.normalDisconnectByServer()
		c.kick(rc)
		<-c.done
	}
	s.commit(&tx, nil)
	return true
}

// KickWhere kicks (see Kick) every session whose client matches, and returns how many.
func (s *Server) KickWhere(match func(*Client) bool, rc packet.ReasonCode, purge bool) int {
	s.mu.Lock()
	var ids []string
	for id, ss := range s.sessions {
		if c := ss.client.Load(); c != nil && match(c) {
			ids = append(ids, id)
		}
	}
	s.mu.Unlock()
	n := 0
	for _, id := range ids {
		if s.Kick(id, rc, purge) {
			n++
		}
	}
	return n
}
