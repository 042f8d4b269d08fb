package broker

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"vitalmq/internal/limiter"
	"vitalmq/internal/packet"
	"vitalmq/internal/session"
	"vitalmq/internal/topic"
)

// conn is one network connection. The reader goroutine (serve) owns everything but the
// out* fields, which producers share under outMu with the writer goroutine.
type conn struct {
	s       *Server
	nc      net.Conn
	in      io.Reader // what br reads: nc, or a dataFirst over it for a dormant-capable one
	opts    ListenerOptions
	addrKey string        // source address key, released from Server.perAddr at the end
	br      *bufio.Reader // nil while dormant or held (when it held nothing)
	body    []byte
	rdl     time.Time // the read deadline (keep alive) for the next packet; zero: not set yet

	// A dormant connection has no reader goroutine: its socket waits in the Server's
	// Waiter (see sleep). sock is nil where that cannot be (not a TCP socket accepted by
	// Serve, or no Waiter).
	sock     *sock
	idleKey  uint64
	dormant  atomic.Bool
	shut     atomic.Bool // closeSocket closed the socket
	wakeTime *time.Timer // resumes a dormant connection when its keep alive runs out, a held one when its wait does
	// tlsSettled: a dormancy (or hold) found the raw-record buffer at most tlsKeepRaw bytes (the one
	// the TLS handshake or CONNECT grew is gone), or there is nothing to release
	tlsSettled bool

	version    byte
	keepAlive  time.Duration
	client     *Client
	ss         *sess
	expiry     uint32 // session expiry interval in force
	authMethod string
	authData   []byte // server data for the CONNACK of an enhanced authentication

	// limits from the client's CONNECT
	sendQuota   int    // min(client Receive Maximum, MaxInflight); read under ss.mu
	maxOut      int    // largest packet the client accepts
	aliasOutMax uint16 // aliases the server may use towards the client
	problemInfo bool   // Request Problem Information
	aliasIn     []string
	pubRate     *limiter.Bucket // publications per second; nil: unlimited
	byteRate    *limiter.Bucket // published bytes per second; nil: unlimited

	// decoded packets, reused; taken from a pool on first use and given back while
	// dormant, so that connections that never publish (dashboards) or acknowledge
	// (devices), and idle ones, do not carry them
	pub *packet.Publish
	ack *packet.Ack
	tx  txn       // scratch for the durable changes of the packet being handled
	now time.Time // when the packet being handled was read
	// commits counts acknowledgements waiting for a group commit: while any is, later ones
	// queue behind it, so the client sees them in order.
	commits atomic.Int32
	// claimed: other connections this reader delivered to and writes for before it may
	// block (conn.unlockFlushBy); handed to flushers if it ends first.
	claimed []*conn

	outMu    sync.Mutex
	pending  []byte
	aliasOut map[string]uint16 // topic → alias, under outMu
	writing  bool              // the write side is open (CONNACK queued)
	flushing bool              // a flusher runs (a goroutine, or the reader writing its acknowledgements)
	deferred bool              // the reader left acknowledgements for itself to write (flushDeferred)
	closed   bool              // the write side ended: socket closed, writerDone closed
	wdl      time.Time         // the write deadline in force; only the running flusher uses it
	// parked: the reader waits for room in a subscriber's queue (flow control), so it
	// reads no acknowledgements meanwhile; nobody waits for this client's own queue.
	parked atomic.Bool
	// held: the publisher waits without a reader goroutine (hold): the hold's generation,
	// 0 when not held (a stale hold cannot take back a later one); whoever clears it
	// resumes the connection (unhold), which goes on with holding.
	held    atomic.Uint32
	holding *holding
	// closing: close after flushing pending. Set under outMu; pumpLocked reads it without
	// outMu to send a closing connection nothing more.
	closing          atomic.Bool
	suppressWill     bool          // an administrative kick: the will is not published
	writerDone       chan struct{} // closed when the write side ended (endWriter)
	done             chan struct{} // closed when the connection is fully detached from its session
	normalDisconnect bool          // DISCONNECT 0x00: discard the will
}

func newConn(s *Server, nc net.Conn, opts ListenerOptions) *conn {
	return &conn{s: s, nc: nc, in: nc, opts: opts, maxOut: packet.MaxRemaining + 5,
		writerDone: make(chan struct{}), done: make(chan struct{})}
}

// errClose is a deliberate close that needs no log line.
var errClose = errors.New("connection closed")

func (c *conn) serve() {
	c.guard(c.open, func() {
		// The TLS handshake, CONNECT and authentication grow a goroutine's stack to 8 KiB or
		// more, and the runtime only shrinks a stack to four times what is in use. A connection
		// that keeps its reader (KeepReaders, WebSocket) keeps it for hours: a fresh (or pooled)
		// goroutine keeps only the stack that loop needs (half, in this broker). (A dormant one
		// keeps none, see sleep.) A device's publication
		// path (loop, handlePublish, route, sess.deliver, pumpLocked, sendPublish) should fit
		// in that half too, or the stack doubles for good (a reader parked in crypto/tls's read
		// uses too much of it to be shrunk again): functions on it keep rarely used large
		// locals in functions of their own.
		c.s.wg.Add(1) // this goroutine still holds its own count: Close cannot miss it
		c.s.wakes.hand(c.s, c)
	})
}

// guard runs f, turning a panic into a closed connection, and calls next when f returns
// nil; otherwise the connection ends with f's error. A reader that went dormant, or whose
// publisher is held (hold), leaves the connection's count in s.wg to the goroutine that
// resumes it.
func (c *conn) guard(f func() error, next func()) {
	var err error
	defer func() {
		if err != errDormant {
			c.s.wg.Done()
		}
	}()
	defer func() {
		if r := recover(); r != nil {
			c.s.logPanic("connection", r)
			err = fmt.Errorf("%w: internal error", packet.ImplementationSpecificError)
		}
		if err != errDormant && (err != nil || next == nil) {
			c.handClaimed() // a dormant or held reader wrote them (flushDeferred)
			c.finish(err)
		}
	}()
	if err = f(); err == nil && next != nil {
		next()
	}
}

// open runs the TLS handshake and the MQTT one (CONNECT to CONNACK).
func (c *conn) open() error {
	c.nc.SetDeadline(time.Now().Add(c.s.cfg.ConnectTimeout)) // CONNECT deadline from accept (T28, T29)
	if tc, ok := c.nc.(*tls.Conn); ok {
		if err := tc.Handshake(); err != nil { // under the deadline above
			return fmt.Errorf("tls handshake: %w", err)
		}
		releaseTLSBuffers(tc, 0) // grown to the ClientHello (the first dormancy settles the rest)
	}
	c.br = c.readers().get(c.in)
	return c.connect() // the write deadline is the flusher's from the CONNACK on
}

// loop reads and handles packets until the connection ends (or goes dormant).
func (c *conn) loop() error {
	if c.br == nil { // resumed
		c.br = c.readers().get(c.in)
	}
	if c.holding != nil && c.holding.what != holdNone {
		if err := c.resumeHeld(); err != nil {
			return err
		}
	}
	turn := 0 // publications handled since this goroutine last let others run
	for {
		read := false
		if !c.wholePacketBuffered() {
			// The acknowledgements of what was read, before reading more. The deliveries it
			// claimed too where it is likely to wait next (it read all there was), or lets
			// others run; while more was sent they wait, for fewer writes (await writes them
			// before it may wait).
			if turn >= readerTurn || c.readAll() {
				c.flushDeferred()
			} else {
				c.flushAcks()
			}
			if turn >= readerTurn {
				turn = 0
				runtime.Gosched()
			}
			if err := c.await(); err != nil {
				return c.readErr(err)
			}
			read = true
		}
		h, body, err := c.readPacket(c.s.cfg.MaxPacketSize)
		if err != nil {
			return c.readErr(err)
		}
		// When the packet was read, for pacing, message times and routing: one clock read
		// per read from the network, as a packet already buffered came with those before
		// it; again after a publication waited for room (flow control: tx.until set); and
		// for the first packet, when it came in the read of the CONNECT.
		if read || !c.tx.until.IsZero() || c.now.IsZero() {
			c.now = time.Now()
		}
		c.rdl = time.Time{}
		if err := c.handle(h, body); err != nil {
			return err
		}
		if h.Type == packet.PUBLISH {
			turn++
		}
	}
}

// readAll reports whether the reader likely read everything its client sent: the last
// read from the socket found no more, and crypto/tls holds no record, nor data of one.
// True where that cannot be known (no sock, as over WebSocket): the reader then writes
// what it claimed before its own acknowledgements, whose write may wait for its client.
// Called by the reader, between packets.
func (c *conn) readAll() bool {
	if c.sock == nil {
		return true
	}
	if !c.sock.drained {
		return false
	}
	if tc, ok := c.nc.(*tls.Conn); ok {
		return tlsDrained(tc)
	}
	return true
}

// readerTurn is how many publications a reader handles on a connection before it lets
// the other goroutines run: the other readers, and the flushers of what it routed. It
// counts from when it took the connection or last let others run (a connection that
// pauses goes dormant; on KeepReaders and WebSocket ones a yield now and then costs next
// to nothing). Otherwise a publisher that keeps its socket full holds the core until the
// runtime preempts it (10 ms), and a subscriber's flusher gets a turn only after every such
// publisher had one: its buffer full meanwhile, QoS 0 deliveries are dropped for a
// subscriber that could take them. Not fewer: a fan-out publisher's turn is what its
// subscribers' flushers then write at once, and 64 made scenario 3's writes small enough
// to cost it 15 % of its throughput (A/B run). Only publications count: a subscriber's reader
// handling its acknowledgements frees room in its window for everyone's messages, and
// sent to the back of the run queue behind 10,000 devices it fell so far behind that its
// queue filled (scenario 6; docs/PERFORMANCE.md, session 16).
const readerTurn = 256

// readErr tells a read that failed because the client's credentials expired.
func (c *conn) readErr(err error) error {
	if v := c.client.ValidUntil; err != errDormant && !v.IsZero() && !time.Now().Before(v) {
		return fmt.Errorf("%w: the client's credentials expired", packet.MaximumConnectTime)
	}
	return err
}

// await prepares the read of the next packet, whose first bytes are not buffered. The
// keep alive deadline [MQTT-3.1.2-22] (1.5 × keep alive, or sooner when the client's
// credentials expire) bounds the wait. On a TCP socket it first probes for what the
// client sent meanwhile, without waiting; when there is nothing, the connection goes
// dormant instead of waiting (errDormant, see sleep).
func (c *conn) await() error {
	if c.rdl.IsZero() {
		c.rdl = time.Now().Add(c.keepAlive + c.keepAlive/2)
		if v := c.client.ValidUntil; !v.IsZero() && v.Before(c.rdl) {
			c.rdl = v
		}
	}
	for c.sock != nil && c.br.Buffered() == 0 {
		c.sock.probe = true
		_, err := c.br.Peek(1)
		c.sock.probe = false
		if err != errWouldBlock {
			if err != nil || c.wholePacketBuffered() {
				return err
			}
			break // the rest of the packet, under the keep alive deadline
		}
		// Nothing read: bufio holds nothing, and crypto/tls at most part of a record,
		// whose rest will wake the connection. The probe has no deadline: the keep alive is
		// checked here (woken by wakeTime), unless data arrived since the last read.
		if !time.Now().Before(c.rdl) && c.sock.arrivals.Load() == c.sock.seen {
			return fmt.Errorf("keep alive: %w", os.ErrDeadlineExceeded)
		}
		c.flushDeferred() // the deliveries it claimed (the probe's reads held them back)
		if c.sleep() {
			return errDormant
		}
	}
	if err := c.claimsBeforeRead(); err != nil {
		return err
	}
	c.nc.SetReadDeadline(c.rdl)
	return nil
}

// claimsBeforeRead writes the deliveries the reader claimed (unlockFlushBy) before it reads
// the rest of a packet, if that read would wait for the client: it probes for the rest
// first, and buffers what came. Where it cannot probe, it writes them.
func (c *conn) claimsBeforeRead() error {
	for len(c.claimed) > 0 && !c.wholePacketBuffered() {
		n := c.br.Buffered() + 1
		if c.sock == nil || n > c.br.Size() {
			c.writeClaimed()
			return nil
		}
		c.sock.probe = true
		_, err := c.br.Peek(n)
		c.sock.probe = false
		switch {
		case err == errWouldBlock:
			c.writeClaimed()
			return nil
		case err != nil:
			return err
		}
	}
	return nil
}

// errDormant ends a reader goroutine whose connection went dormant.
var errDormant = errors.New("reader released while the client is idle")

// sleep makes the connection dormant: its read buffer and decoded packets go back to
// pools, and it reports true: the reader goroutine (with its stack) ends, returning
// errDormant. resume starts a new one when the Waiter sees data arrive, when the keep alive
// deadline passes (wakeTime) or when the server closes the socket (closeSocket). It reports
// false, still awake, when data arrived since the last read (its wake found the connection
// awake), the socket was closed or the keep alive ran out meanwhile: read again.
func (c *conn) sleep() bool {
	c.readers().put(c.br)
	c.br = nil
	if c.pub != nil { // emptied: a pooled packet pins no topic, payload or properties
		*c.pub = packet.Publish{}
		publishes.Put(c.pub)
		c.pub = nil
	}
	if c.ack != nil {
		*c.ack = packet.Ack{}
		acks.Put(c.ack)
		c.ack = nil
	}
	if cap(c.body) > 512 {
		c.body = nil // a small one is kept: most packets fit, and it is not allocated again
	}
	c.releaseTLS()
	if c.wakeTime == nil {
		c.wakeTime = time.AfterFunc(math.MaxInt64, c.awaken)
	}
	rdl, seen := c.rdl, c.sock.seen
	// Before Store: once another goroutine may own the connection, its own sleep's Reset
	// must be the one that stays. A firing before Store finds the connection awake: the
	// deadline is checked after it instead.
	c.wakeTime.Reset(time.Until(rdl))
	// From here on another goroutine may own the connection (resume): only locals, atomics
	// and immutable fields are touched.
	c.s.stats.dormant.Add(1)
	c.dormant.Store(true)
	// A wake counts the arrival, and closeSocket sets shut, before trying to resume: either
	// that resumes, or this sees the change (atomics are sequentially consistent). A closed
	// socket is not waited for: the probe may have skipped the read that would have failed.
	if (c.sock.arrivals.Load() != seen || c.shut.Load() || !time.Now().Before(rdl)) && c.dormant.CompareAndSwap(true, false) {
		c.s.stats.dormant.Add(-1)
		c.br = c.readers().get(c.in)
		return false
	}
	return true
}

// releaseTLS gives back crypto/tls's empty buffers (see releaseTLSBuffers) between reads.
func (c *conn) releaseTLS() {
	if tc, ok := c.nc.(*tls.Conn); ok {
		if c.tlsSettled {
			releaseTLSBuffers(tc, tlsKeepBusy) // grown by a large packet
		} else {
			c.tlsSettled = releaseTLSBuffers(tc, tlsKeepRaw) // the handshake's or CONNECT's
		}
	}
}

// resume gives a dormant connection a reader goroutine again; a no-op on an awake one. Of
// the Waiter, the timer and closeSocket, the first to call it wins. (The timer is not
// stopped: firing while the connection is awake does nothing, and sleep resets it.) An
// idle reader takes it, or a new one starts (Server.wakes).
func (c *conn) resume() {
	if !c.dormant.CompareAndSwap(true, false) {
		return
	}
	c.s.stats.dormant.Add(-1)
	c.s.stats.wakes.Add(1)
	c.s.wakes.hand(c.s, c) // with the count in s.wg the dormant connection kept
}

// closeSocket closes the socket and wakes a dormant reader (or a held publisher) to end
// the connection.
func (c *conn) closeSocket() {
	c.shut.Store(true) // before resume: see sleep
	if c.sock != nil && c.sock.backlogged() {
		// A flusher may be writing the backlog, past crypto/tls: its Close would wait for
		// that write to send close_notify.
		c.sock.Close()
	}
	c.nc.Close()
	c.resume()
	c.unhold()
}

// awaken is wakeTime's: the keep alive deadline of a dormant connection, or the end of a
// held publisher's wait. (A stale firing finds the connection in neither state, or in the
// other: resumed, it waits again.)
func (c *conn) awaken() {
	c.resume()
	c.unhold()
}

// holding is what a held connection goes on with (see hold).
type holding struct {
	what holdKind
	ss   *sess
	ch   chan struct{}
	h    packet.FixedHeader // holdPublish: the publication's, its body in conn.body
	at   int                // holdYield: the place in txn.congested
	gen  uint32             // the last hold's generation (conn.held)
}

type holdKind uint8

const (
	holdNone    holdKind = iota
	holdPublish          // the publication waits for room in ss's queue, then is handled again
	holdYield            // the yield waits for ss's queue to drain, then goes on
)

// hold ends the reader goroutine while a publication waits for ch (flow control), as sleep
// does while the client is idle: thousands of publishers waiting for one slow subscriber
// cost no goroutines or stacks. Closing ch (then unhold), the end of the publication's
// Config.FlowControlWait (wakeTime) or closeSocket resume it: a reader goes on with
// resumeHeld. hold reports false, holding nothing (but maybe still among ss's drainers: see
// undrain), when the wait is over already. After
// true, the connection may belong to another goroutine: the caller returns errDormant and
// touches nothing of it. Only the reader calls hold, and only where sock is set.
func (c *conn) hold(what holdKind, ss *sess, ch chan struct{}, h packet.FixedHeader, at int) bool {
	if !c.tx.pause(c.s) {
		return false
	}
	until := c.tx.until
	if what == holdYield {
		ss.mu.Lock()
		if ss.drained == ch { // else closed already
			w := ss.waitersLocked()
			if w.drainers == nil {
				w.drainers = make(map[*conn]struct{})
			}
			w.drainers[c] = struct{}{}
		}
		ss.mu.Unlock()
	}
	if c.wakeTime == nil {
		c.wakeTime = time.AfterFunc(math.MaxInt64, c.awaken)
	}
	c.wakeTime.Reset(time.Until(until))
	if c.holding == nil {
		c.holding = new(holding)
	}
	gen := c.holding.gen + 1
	if gen == 0 {
		gen = 1
	}
	*c.holding = holding{what: what, ss: ss, ch: ch, h: h, at: at, gen: gen}
	// The read buffers go back too, as in sleep (loop takes one again), when they hold
	// nothing: thousands of devices with a message each.
	if c.br.Buffered() == 0 {
		c.readers().put(c.br)
		c.br = nil
	}
	c.releaseTLS()
	c.s.stats.held.Add(1)
	c.held.Store(gen)
	// From here on another goroutine may own the connection, and hold it again: only
	// locals and atomics. Those that resume it set their condition before unhold: either
	// that resumes, or this sees it and takes it back (this hold's generation only).
	if c.holdOver(ss, ch, until) && c.held.CompareAndSwap(gen, 0) {
		c.s.stats.held.Add(-1)
		*c.holding = holding{gen: gen}
		c.parked.Store(false)
		if c.br == nil {
			c.br = c.readers().get(c.in)
		}
		return false
	}
	return true
}

// holdOver reports whether a wait for ch (closed under ss.mu) until then is over, or the
// socket closed.
func (c *conn) holdOver(ss *sess, ch chan struct{}, until time.Time) bool {
	ss.mu.Lock()
	over := closed(ch)
	ss.mu.Unlock()
	return over || !time.Now().Before(until) || c.shut.Load()
}

// unhold resumes a held connection and reports true; a no-op on one that is not. The
// first caller wins.
func (c *conn) unhold() bool {
	if g := c.held.Load(); g != 0 && c.held.CompareAndSwap(g, 0) {
		c.s.stats.held.Add(-1)
		c.s.wakes.hand(c.s, c) // with the count in s.wg the held connection kept
		return true
	}
	return false
}

// resumeHeld goes on where hold left: the held publication is handled again (woken for a
// place, or dropping at full queues now), or its yield goes on. Resumed before its wait is
// over (a timer of an earlier wait), it holds again.
func (c *conn) resumeHeld() error {
	w := *c.holding
	*c.holding = holding{gen: w.gen}
	c.parked.Store(false)
	if w.what == holdYield {
		w.ss.resumeNext() // those held for the same queue are resumed one after the other
	}
	tx := &c.tx
	if !c.holdOver(w.ss, w.ch, tx.until) && c.hold(w.what, w.ss, w.ch, w.h, w.at) {
		return errDormant
	}
	if w.what == holdYield {
		if !c.drained(w.ss, w.ch) {
			return nil // waited long enough
		}
		return c.yieldFrom(tx, w.at+1)
	}
	if !tx.woke(c.s, w.ss, w.ch) {
		tx.pub = nil // waited long enough: this publication drops at full queues now
	}
	err := c.handlePublish(w.h, c.body[:w.h.Remaining], true)
	if err != errDormant {
		tx.dropPromise(c.s) // not routed again: a place it was woken for goes to the next
	}
	return err
}

// readerPool holds read buffers of one size for connections to take and give back.
type readerPool struct {
	size int
	sync.Pool
}

// crypto/tls already reads whole records into its own buffer: a small one on top is enough;
// plain TCP reads many packets per syscall.
var tlsReaders, tcpReaders = readerPool{size: 512}, readerPool{size: 4096}

// The decoded packets of awake connections (conn.pub, conn.ack).
var (
	publishes = sync.Pool{New: func() any { return new(packet.Publish) }}
	acks      = sync.Pool{New: func() any { return new(packet.Ack) }}
)

func (c *conn) readers() *readerPool {
	if _, ok := c.nc.(*tls.Conn); ok {
		return &tlsReaders
	}
	return &tcpReaders
}

func (p *readerPool) get(r io.Reader) *bufio.Reader {
	if b, ok := p.Get().(*bufio.Reader); ok {
		b.Reset(r)
		return b
	}
	return bufio.NewReaderSize(r, p.size)
}

func (p *readerPool) put(b *bufio.Reader) {
	b.Reset(nil)
	p.Put(b)
}

// wholePacketBuffered reports whether the read buffer holds a whole packet, so that reading
// it does not wait for the network.
func (c *conn) wholePacketBuffered() bool {
	n := c.br.Buffered()
	b, _ := c.br.Peek(min(n, 5)) // buffered bytes only: Peek does not read then
	rem, shift := 0, 0
	for i := 1; i < len(b); i++ {
		rem |= int(b[i]&0x7f) << shift
		if b[i]&0x80 == 0 {
			return 1+i+rem <= n
		}
		shift += 7
	}
	return false
}

// readPacket reads one packet, refusing it from the fixed header alone when its
// declared size exceeds limit, before reading or allocating for the body.
func (c *conn) readPacket(limit int) (packet.FixedHeader, []byte, error) {
	h, err := packet.ReadHeader(c.br)
	if err != nil {
		return h, nil, err
	}
	if err := h.Validate(c.version); err != nil {
		return h, nil, err
	}
	if h.Size() > limit {
		return h, nil, fmt.Errorf("%w: %d bytes, limit %d", packet.PacketTooLarge, h.Size(), limit)
	}
	if cap(c.body) < h.Remaining {
		c.body = make([]byte, h.Remaining)
	}
	body := c.body[:h.Remaining]
	if _, err := io.ReadFull(c.br, body); err != nil {
		return h, nil, err
	}
	return h, body, nil
}

// connect runs the handshake: the first packet must be CONNECT ([MQTT-3.1.0-1]).
func (c *conn) connect() error {
	h, body, err := c.readPacket(c.s.cfg.PreAuthMaxPacketSize)
	if err != nil {
		return err
	}
	if h.Type != packet.CONNECT {
		return fmt.Errorf("%w: first packet is %v", packet.ProtocolError, h.Type) // [MQTT-3.1.0-1]
	}
	var p packet.Connect
	if err := packet.DecodeConnect(&p, body); err != nil {
		var rc packet.ReasonCode
		if errors.As(err, &rc) && rc == packet.UnsupportedProtocolVersion {
			c.refuse(packet.Version311, rc) // [MQTT-3.1.2-2] answered in the 3.1.1 form
		} else if p.Version == packet.Version5 && errors.As(err, &rc) && !errors.Is(err, packet.ErrProtocolName) {
			c.refuse(p.Version, rc)
		}
		return err
	}
	c.version = p.Version
	if p.Version == packet.Version5 && p.Props.Has(packet.PropMaximumPacketSize) {
		c.maxOut = int(p.Props.MaximumPacketSize) // from now on, nothing larger is sent [MQTT-3.1.2-24]
	}
	if rc, err := c.checkConnect(&p); err != nil {
		c.refuse(p.Version, rc)
		return err
	}
	if c.s.overloaded.Load() {
		c.refuse(p.Version, packet.ServerBusy)
		return fmt.Errorf("%w: memory budget exceeded", packet.ServerBusy)
	}
	client, err := c.authenticate(&p)
	if err != nil {
		var rc packet.ReasonCode
		if !errors.As(err, &rc) || !rc.IsError() {
			rc = packet.NotAuthorized
		}
		c.refuse(p.Version, rc)
		return fmt.Errorf("authentication: %w", err)
	}
	if v := client.ValidUntil; !v.IsZero() && !time.Now().Before(v) {
		c.refuse(p.Version, packet.NotAuthorized)
		return fmt.Errorf("%w: the client's credentials expired", packet.NotAuthorized)
	}
	c.client = client
	if p.HasWill {
		if rc, err := c.checkWill(&p); err != nil {
			if rc != packet.TopicNameInvalid || p.Version == packet.Version5 {
				c.refuse(p.Version, rc) // 3.1.1 has no code for it: a malformed CONNECT is closed [MQTT-3.1.4-1]
			}
			return err
		}
	}
	return c.attach(&p)
}

// checkConnect validates CONNECT fields the codec cannot judge alone.
func (c *conn) checkConnect(p *packet.Connect) (packet.ReasonCode, error) {
	cfg := &c.s.cfg
	if len(p.ClientID) > cfg.MaxClientIDLength {
		return packet.ClientIdentifierNotValid, fmt.Errorf("%w: client identifier of %d bytes", packet.ClientIdentifierNotValid, len(p.ClientID))
	}
	if p.ClientID == "" && !p.CleanStart && p.Version < packet.Version5 {
		return packet.ClientIdentifierNotValid, fmt.Errorf("%w: empty client identifier without clean session", packet.ClientIdentifierNotValid) // [MQTT-3.1.3-8] 3.1.1
	}
	if p.Props.AuthMethod != "" {
		if _, ok := cfg.Authenticator.(EnhancedAuthenticator); !ok {
			return packet.BadAuthenticationMethod, fmt.Errorf("%w: %q", packet.BadAuthenticationMethod, p.Props.AuthMethod)
		}
	}
	return packet.Success, nil
}

// EnhancedAuthenticator is an Authenticator that also runs MQTT 5.0 enhanced
// authentication (§4.12): a CONNECT with an Authentication Method starts an exchange of
// AUTH packets. Without one, such a CONNECT is refused with Bad Authentication Method.
type EnhancedAuthenticator interface {
	Authenticator
	// StartAuth begins an exchange for req.AuthMethod; an error refuses the CONNECT
	// (a packet.ReasonCode in the chain picks the code, default Bad Authentication Method).
	StartAuth(ctx context.Context, req *ConnectRequest) (AuthExchange, error)
}

// AuthExchange is one client's enhanced authentication in progress.
type AuthExchange interface {
	// Step takes the client's Authentication Data and returns the data to send back.
	// It returns the client's identity when authentication succeeded, nil to continue
	// (the reply goes in an AUTH 0x18), or an error to refuse.
	Step(ctx context.Context, data []byte) (reply []byte, client *Client, err error)
}

// maxAuthRounds caps the AUTH packets of one enhanced authentication (CASES T83); the
// CONNECT deadline caps its duration.
const maxAuthRounds = 8

// enhancedAuth runs the AUTH exchange of a CONNECT and returns the identity and the data
// for the CONNACK.
func (c *conn) enhancedAuth(req *ConnectRequest) (*Client, []byte, error) {
	ea := c.s.cfg.Authenticator.(EnhancedAuthenticator) // checked by checkConnect
	ctx, cancel := context.WithTimeout(context.Background(), c.s.cfg.ConnectTimeout)
	defer cancel()
	ex, err := ea.StartAuth(ctx, req)
	if err != nil {
		if _, ok := errReason(err); !ok {
			err = fmt.Errorf("%w: %w", packet.BadAuthenticationMethod, err)
		}
		return nil, nil, err
	}
	data := req.AuthData
	for range maxAuthRounds {
		reply, client, err := ex.Step(ctx, data)
		if err != nil || client != nil {
			return client, reply, err
		}
		a := packet.Disconnect{Type: packet.AUTH, Reason: packet.ContinueAuthentication}
		a.Props.AuthMethod, a.Props.AuthData = req.AuthMethod, reply
		a.Props.Set(packet.PropAuthMethod)
		a.Props.Set(packet.PropAuthData)
		b := packet.AppendDisconnect(nil, &a, packet.Version5)
		if len(b) > c.maxOut { // [MQTT-3.1.2-24]
			return nil, nil, fmt.Errorf("%w: AUTH of %d bytes exceeds the client's Maximum Packet Size", packet.ImplementationSpecificError, len(b))
		}
		if _, err := c.nc.Write(b); err != nil {
			return nil, nil, err
		}
		h, body, err := c.readPacket(c.s.cfg.PreAuthMaxPacketSize)
		if err != nil {
			return nil, nil, err
		}
		if h.Type != packet.AUTH {
			return nil, nil, fmt.Errorf("%w: %v during authentication", packet.ProtocolError, h.Type) // §4.12
		}
		var in packet.Disconnect
		if err := packet.DecodeDisconnect(&in, h.Type, body, packet.Version5); err != nil {
			return nil, nil, err
		}
		if in.Reason != packet.ContinueAuthentication || in.Props.AuthMethod != req.AuthMethod {
			return nil, nil, fmt.Errorf("%w: auth reason %#x or method changed", packet.ProtocolError, byte(in.Reason)) // [MQTT-4.12.0-?] §4.12
		}
		data = in.Props.AuthData
	}
	return nil, nil, fmt.Errorf("%w: more than %d authentication rounds", packet.NotAuthorized, maxAuthRounds)
}

func (c *conn) authenticate(p *packet.Connect) (*Client, error) {
	req := &ConnectRequest{ClientID: p.ClientID, Username: p.Username, HasUsername: p.HasUser, Password: p.Password,
		Listener: c.opts.Name, Remote: c.nc.RemoteAddr(), AuthMethod: p.Props.AuthMethod, AuthData: p.Props.AuthData}
	if tc, ok := c.nc.(*tls.Conn); ok {
		st := tc.ConnectionState()
		req.TLS = &st
	}
	if req.AuthMethod != "" {
		cl, data, err := c.enhancedAuth(req)
		c.authData = data
		return cl, err
	}
	if a := c.s.cfg.Authenticator; a != nil {
		ctx, cancel := context.WithTimeout(context.Background(), c.s.cfg.ConnectTimeout)
		defer cancel()
		cl, err := a.Authenticate(ctx, req)
		if err == nil && cl == nil {
			err = packet.NotAuthorized
		}
		if err == nil || !c.opts.AllowAnonymous {
			return cl, err
		}
	}
	if !c.opts.AllowAnonymous {
		return nil, fmt.Errorf("%w: anonymous access is not allowed on listener %q", packet.NotAuthorized, c.opts.Name)
	}
	return &Client{ClientID: p.ClientID, Username: p.Username, Listener: c.opts.Name, Remote: c.nc.RemoteAddr(), Anonymous: true}, nil
}

func (c *conn) checkWill(p *packet.Connect) (packet.ReasonCode, error) {
	w := &p.Will
	if err := c.s.limits.CheckName(w.Topic); err != nil {
		return packet.TopicNameInvalid, fmt.Errorf("%w: will topic: %w", packet.TopicNameInvalid, err) // [MQTT-3.1.3-11]
	}
	if isReserved(w.Topic) || !c.canPublish(w.Topic) {
		return packet.NotAuthorized, fmt.Errorf("%w: will topic", packet.NotAuthorized) // CASES T62, T63
	}
	if w.Props.PayloadFormat == 1 && !utf8.Valid(w.Payload) {
		return packet.PayloadFormatInvalid, fmt.Errorf("%w: will payload", packet.PayloadFormatInvalid) // [MQTT-3.1.3-?] §3.1.3.2.3
	}
	return packet.Success, nil
}

func isReserved(name string) bool { return len(name) > 0 && name[0] == '$' }

func (c *conn) canPublish(name string) bool {
	return c.s.cfg.Authorizer == nil || c.s.cfg.Authorizer.CanPublish(c.client, name)
}

// refuse answers a failed CONNECT with a CONNACK carrying rc ([MQTT-3.2.2-7]) and
// lets the connection close after it is written.
func (c *conn) refuse(version byte, rc packet.ReasonCode) {
	b := packet.AppendConnack(nil, &packet.Connack{Reason: rc.ForConnack()}, version)
	if len(b) > c.maxOut {
		return // [MQTT-3.1.2-24]: the connection just closes
	}
	c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	c.nc.Write(b)
}

// attach binds the connection to its session (new, resumed or taken over) and sends CONNACK.
func (c *conn) attach(p *packet.Connect) error {
	s, cfg := c.s, &c.s.cfg
	var ack packet.Connack
	id := c.client.ClientID // the Authenticator may bind the identity to a client id
	if id == "" {
		id = p.ClientID
	}
	if id == "" { // [MQTT-3.1.3-6] assign one
		var b [12]byte
		rand.Read(b[:])
		id = "auto-" + hex.EncodeToString(b[:])
	}
	if p.ClientID == "" && p.Version == packet.Version5 {
		ack.Props.AssignedClientID = id // [MQTT-3.2.2-16]
		ack.Props.Set(packet.PropAssignedClientID)
	}
	c.client.ClientID = id

	// Keep alive: capped, and a zero (disabled) keep alive still gets the server's limit (T24).
	ka := p.KeepAlive
	if ka == 0 || ka > cfg.MaxKeepAlive {
		ka = cfg.MaxKeepAlive
		if p.Version == packet.Version5 {
			ack.Props.ServerKeepAlive = ka // [MQTT-3.2.2-21]
			ack.Props.Set(packet.PropServerKeepAlive)
		}
	}
	c.keepAlive = time.Duration(ka) * time.Second

	if cfg.PublishRate > 0 {
		c.pubRate = limiter.NewBucket(cfg.PublishRate, max(1, int(2*cfg.PublishRate)))
	}
	if cfg.PublishByteRate > 0 {
		c.byteRate = limiter.NewBucket(cfg.PublishByteRate, max(int(2*cfg.PublishByteRate), cfg.MaxPacketSize))
	}

	// Limits the client asked for.
	c.sendQuota = int(cfg.MaxInflight)
	c.problemInfo = true
	if p.Version == packet.Version5 {
		if p.Props.Has(packet.PropReceiveMaximum) {
			c.sendQuota = min(c.sendQuota, int(p.Props.ReceiveMaximum)) // [MQTT-3.3.4-9]
		}
		c.aliasOutMax = min(p.Props.TopicAliasMaximum, cfg.TopicAliasMaximum)
		c.problemInfo = !p.Props.Has(packet.PropRequestProblemInfo) || p.Props.RequestProblemInfo == 1
		c.expiry = min(p.Props.SessionExpiry, cfg.MaxSessionExpiry)
		if p.Props.SessionExpiry > cfg.MaxSessionExpiry {
			ack.Props.SessionExpiry = c.expiry
			ack.Props.Set(packet.PropSessionExpiry)
		}
		c.authMethod = p.Props.AuthMethod
	} else if !p.CleanStart {
		c.expiry = cfg.MaxSessionExpiry // 3.1.1 persistent session: kept until the server's limit
	}
	var will *session.Message
	if p.HasWill {
		w := &p.Will
		will = newMessage(w.Topic, w.Payload, w.QoS, w.Retain, &w.Props, id, time.Now())
	}

	if p.Version == packet.Version5 {
		ack.Props.ReceiveMaximum = cfg.ReceiveMaximum
		ack.Props.TopicAliasMaximum = cfg.TopicAliasMaximum
		ack.Props.MaximumPacketSize = uint32(cfg.MaxPacketSize)
		ack.Props.Set(packet.PropReceiveMaximum)
		ack.Props.Set(packet.PropTopicAliasMaximum)
		ack.Props.Set(packet.PropMaximumPacketSize)
	}
	if c.authMethod != "" {
		ack.Props.AuthMethod, ack.Props.AuthData = c.authMethod, c.authData
		ack.Props.Set(packet.PropAuthMethod)
		if len(c.authData) > 0 {
			ack.Props.Set(packet.PropAuthData)
		}
	}
	// The CONNACK must fit the client's Maximum Packet Size [MQTT-3.1.2-24]; only a large
	// Authentication Data can make it not fit, and then the connection cannot go on.
	if n := len(packet.AppendConnack(nil, &ack, p.Version)); n > c.maxOut {
		c.refuse(p.Version, packet.ImplementationSpecificError)
		return fmt.Errorf("%w: CONNACK of %d bytes exceeds the client's Maximum Packet Size %d", packet.ImplementationSpecificError, n, c.maxOut)
	}

	// Take over or resume the session ([MQTT-3.1.4-3]).
	tx := &c.tx
	tx.reset()
	var ss *sess
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.refuse(p.Version, packet.ServerUnavailable)
			return ErrServerClosed
		}
		old := s.sessions[id]
		if old != nil && p.ClientID == "" {
			// The Authenticator bound an empty client id to its identity's id, and a session
			// has it: an assigned id must be one no session uses [MQTT-3.1.3-6] [MQTT-3.2.2-16].
			s.mu.Unlock()
			c.refuse(p.Version, packet.ClientIdentifierNotValid)
			return fmt.Errorf("%w: empty client id for %q, which has a session: connect with the id", packet.ClientIdentifierNotValid, id)
		}
		var oc *conn
		if old != nil {
			old.mu.Lock()
			oc = old.owner // claimed by a connection, attached or still attaching
			old.mu.Unlock()
		}
		if oc == nil {
			var resumed bool
			ss, resumed = c.bindLocked(old, p, &ack, tx)
			s.mu.Unlock()
			if resumed {
				c.reauthorize(ss, tx) // outside s.mu: the Authorizer is not the broker's to wait for
			}
			break
		}
		s.mu.Unlock()
		oc.kick(packet.SessionTakenOver) // [MQTT-3.1.4-3]
		select {
		case <-oc.done:
		case <-s.quit:
			return ErrServerClosed
		}
	}
	c.ss = ss
	c.startWriter(packet.AppendConnack(nil, &ack, p.Version))
	s.stats.connected.Add(1)
	s.stats.connects.Add(1)

	now := time.Now()
	ss.mu.Lock()
	ss.conn = c
	ss.lastAck = now
	ss.online.Store(true)
	ss.will, ss.willDelay, ss.willExpiry, ss.willAt = will, 0, 0, time.Time{}
	if will != nil {
		ss.willDelay = p.Will.Props.WillDelay
		if p.Will.Props.Has(packet.PropMessageExpiry) {
			ss.willExpiry = max(1, p.Will.Props.MessageExpiry)
			will.Expiry = time.Time{} // set when it is published
		}
	}
	if ss.persistent(s) {
		tx.cs.Add(session.Op{Kind: session.PutMeta, Meta: ss.meta()}) // with the will: a crash ends this connection too
		ss.stored = true
	}
	ss.resumeLocked(s, now)
	ss.mu.Unlock()
	s.commit(tx, nil)
	s.log.Debug("client connected", "client", id, "listener", c.opts.Name, "version", p.Version, "session_present", ack.SessionPresent)
	return nil
}

// bindLocked picks the session for the connection: a fresh one for Clean Start or when
// none exists, else the stored one. Called with s.mu held; the old session is offline.
// The session is claimed for c (owner) before s.mu is released, so a concurrent CONNECT
// with the same client id takes it over instead of sharing it.
func (c *conn) bindLocked(old *sess, p *packet.Connect, ack *packet.Connack, tx *txn) (*sess, bool) {
	s := c.s
	if old != nil && !p.CleanStart {
		old.mu.Lock()
		if !old.ended {
			old.takeWill() // the session resumed before the will delay passed [MQTT-3.1.3-9]
			old.expireAt = time.Time{}
			s.scheduleLocked(old)
			if old.st.ExpiryInterval > 0 && c.expiry == 0 && old.stored && s.persist != nil {
				tx.cs.Add(session.Op{Kind: session.DeleteSession, ClientID: old.clientID}) // no longer kept
				old.stored = false
			}
			old.st.ExpiryInterval = c.expiry
			old.client.Store(c.client)
			old.owner = c
			old.mu.Unlock()
			ack.SessionPresent = true // [MQTT-3.2.2-3]
			return old, true
		}
		old.mu.Unlock()
	}
	var will *session.Message
	if old != nil { // Clean Start discards the old session [MQTT-3.1.2-4]
		old.mu.Lock()
		old.ended = true
		will = old.takeWill()
		s.scheduleLocked(old)
		if old.stored && s.persist != nil {
			tx.cs.Add(session.Op{Kind: session.DeleteSession, ClientID: old.clientID})
		}
		old.mu.Unlock()
		delete(s.sessions, old.clientID)
		cl := old.client.Load()
		s.wg.Go(func() {
			defer s.recoverTo("drop session")
			s.dropSubscriptions(old)
			if will != nil {
				var wtx txn
				s.sendWill(cl, will, &wtx)
				s.commit(&wtx, nil)
			}
		})
	}
	ss := newSess(c.client.ClientID)
	ss.st.ExpiryInterval = c.expiry
	ss.client.Store(c.client)
	ss.owner = c
	s.sessions[ss.clientID] = ss
	return ss, false
}

// reauthorize drops the stored subscriptions a resumed session's client may no longer
// make, and the queued or in-flight messages it may no longer receive (CASES T67, T68).
func (c *conn) reauthorize(ss *sess, tx *txn) {
	az := c.s.cfg.Authorizer
	if az == nil {
		return
	}
	ss.mu.Lock()
	defer ss.mu.Unlock() // the Authorizer may panic: never leave the lock held
	persistent := ss.persistent(c.s)
	var drop []string
	for f := range ss.st.Subs {
		inner := f
		if _, in, ok, _ := topic.ParseShared(f); ok {
			inner = in
		}
		if !az.CanSubscribe(c.client, inner) {
			drop = append(drop, f)
			delete(ss.st.Subs, f)
			if persistent {
				tx.cs.Add(session.Op{Kind: session.DeleteSub, ClientID: ss.clientID, Sub: session.Subscription{Subscription: packet.Subscription{Filter: f}}})
			}
		}
	}
	removed := ss.st.Filter(func(e *session.Entry, sent bool) bool {
		return e.Released || az.CanReceive(c.client, e.Delivery.Msg.Topic)
	})
	for _, e := range removed {
		ss.forget(c.s, e, tx)
	}
	for _, f := range drop {
		c.s.subs.Remove(f, ss) // the trie lock is a leaf
	}
}

// newMessage builds a routed message from a PUBLISH or a will.
func newMessage(name string, payload []byte, qos byte, retain bool, props *packet.Properties, origin string, now time.Time) *session.Message {
	m := &session.Message{Topic: name, Payload: payload, QoS: qos, Retain: retain, Origin: origin}
	const forwarded = 1<<packet.PropPayloadFormat | 1<<packet.PropContentType | 1<<packet.PropResponseTopic |
		1<<packet.PropCorrelationData | 1<<packet.PropUserProperty
	if props.Present&forwarded != 0 || len(props.User) > 0 { // not for a Topic Alias or an expiry alone
		fwd := *props
		fwd.Present &= forwarded
		fwd.SubscriptionIDs = nil
		m.Props = &fwd
	}
	if props.Has(packet.PropMessageExpiry) {
		m.Expiry = now.Add(time.Duration(props.MessageExpiry) * time.Second)
	}
	return m
}
