package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

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
	limits   topic.Limits
	subs     *topic.Trie[*sess, subscription]
	retained *topic.Retained[*session.Message]
	started  time.Time

	mu        sync.Mutex
	sessions  map[string]*sess
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	closed    bool

	wg     sync.WaitGroup
	quit   chan struct{} // closed by Close: every goroutine ends
	routes sync.Pool     // *router scratch

	stats stats
}

type stats struct {
	connected, received, sent, dropped, connects atomic.Int64
}

// subscription is what the trie stores for a session's subscription.
type subscription struct {
	qos         byte
	noLocal     bool
	retainAsPub bool
	id          uint32
}

// New returns a Server, or an error naming an invalid Config field.
func New(cfg Config) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg.setDefaults()
	s := &Server{
		cfg:       cfg,
		log:       cfg.Logger,
		limits:    topic.Limits{MaxLength: cfg.MaxTopicLength, MaxLevels: cfg.MaxTopicLevels},
		subs:      topic.NewTrie[*sess, subscription](),
		retained:  topic.NewRetained[*session.Message](),
		started:   time.Now(),
		sessions:  make(map[string]*sess),
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[*conn]struct{}),
		quit:      make(chan struct{}),
	}
	s.routes.New = func() any { return &router{seen: make(map[*sess]int)} }
	s.wg.Go(s.janitor)
	return s, nil
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
		c := newConn(s, nc, opts)
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			nc.Close()
			return ErrServerClosed
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go c.serve() // counted in s.wg above, under s.mu, so Close never misses it
	}
}

var errTemporary = errors.New("temporary accept error")

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
		c.nc.Close()
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
	s.mu.Lock()
	for id, ss := range s.sessions {
		ss.mu.Lock()
		if ss.conn == nil {
			if ss.will != nil && !now.Before(ss.willAt) {
				wills = append(wills, will{ss.client.Load(), ss.takeWill()})
			}
			if !ss.expireAt.IsZero() && !now.Before(ss.expireAt) {
				if ss.will != nil { // the session ends before the will delay: publish now [MQTT-3.1.3-9]
					wills = append(wills, will{ss.client.Load(), ss.takeWill()})
				}
				ss.ended = true
				delete(s.sessions, id)
				ended = append(ended, ss)
			}
		}
		ss.mu.Unlock()
	}
	s.mu.Unlock()
	for _, ss := range ended {
		s.dropSubscriptions(ss)
	}
	for _, w := range wills {
		s.sendWill(w.c, w.m)
	}
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
	put("clients/total", strconv.Itoa(nsess))
	put("messages/received", strconv.FormatInt(s.stats.received.Load(), 10))
	put("messages/sent", strconv.FormatInt(s.stats.sent.Load(), 10))
	put("messages/dropped", strconv.FormatInt(s.stats.dropped.Load(), 10))
	put("subscriptions/count", strconv.Itoa(s.subs.Len()))
	put("retained messages/count", strconv.Itoa(s.retained.Len()))
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
