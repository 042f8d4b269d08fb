package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"vitalmq/internal/packet"
)

// Topic layouts.
const (
	// TopicPerPublisher: publisher i publishes on <prefix>/<i>, subscribers subscribe to
	// <prefix>/# (fan-in).
	TopicPerPublisher = "per-publisher"
	// TopicShared: every publisher publishes on <prefix>/all and subscribers subscribe to
	// exactly that topic (fan-out).
	TopicShared = "shared-topic"
)

// PubSubConfig is a pubsub run: N publishers × M subscribers, every subscriber receiving
// every message.
type PubSubConfig struct {
	Target
	Publishers  int     // default 1
	Subscribers int     // default 1
	QoS         byte    // 0, 1 or 2, for publications and subscriptions
	PayloadSize int     // bytes, at least StampSize (16); default 64
	TopicMode   string  // TopicPerPublisher (default) or TopicShared
	TopicPrefix string  // default "bench"
	Rate        float64 // messages/s per publisher; 0: as fast as possible
	TotalRate   float64 // messages/s over all publishers; overrides Rate when > 0
	Inflight    int     // QoS 1/2: unacknowledged messages per publisher; default 16
	Batch       int     // most messages encoded into one write; default 32
	// PaceTick, for paced runs, wakes the tool this often while it publishes, so that its
	// publishers' timers fire on time: an idle Go process sleeps in whole milliseconds, and
	// its publishers then send in bursts (startTick; Linux only). 0: no tick; otherwise at
	// least MinPaceTick. The CLI's default is 200 µs.
	PaceTick time.Duration
	// Warmup is sent before the measured Duration: counted for loss, not for rates or latency.
	Warmup   time.Duration
	Duration time.Duration // default 10s
	// Drain is the longest wait, after sending stops, for outstanding acknowledgements and
	// deliveries; default 5s.
	Drain     time.Duration
	BrokerPID int // read the broker's CPU and memory from /proc when > 0
	// SubAddr, when set, is where subscribers connect instead (same TLS settings, no minted
	// certificate): dashboards on a password or anonymous listener, devices on an mTLS one.
	SubAddr string
	// PersistentSubs gives subscribers persistent sessions, so that a broker with durable
	// storage stores (and fsyncs) every QoS 1/2 message before acknowledging it.
	PersistentSubs bool
}

// MinPaceTick is the shortest PubSubConfig.PaceTick: a shorter one would keep the tool's
// core busy reading ticks.
const MinPaceTick = 10 * time.Microsecond

// PubSubResult is the outcome of RunPubSub. Latencies are in microseconds.
type PubSubResult struct {
	Mode        string  `json:"mode"`
	Addr        string  `json:"addr"`
	TLS         bool    `json:"tls"`
	MQTT        int     `json:"mqtt"`
	Publishers  int     `json:"publishers"`
	Subscribers int     `json:"subscribers"`
	QoS         int     `json:"qos"`
	PayloadSize int     `json:"payload_bytes"`
	TopicMode   string  `json:"topic_mode"`
	TargetRate  float64 `json:"target_rate"` // messages/s over all publishers; 0: unpaced
	Inflight    int     `json:"inflight,omitempty"`
	WarmupS     float64 `json:"warmup_s"`
	DurationS   float64 `json:"duration_s"`

	Sent            int64   `json:"sent"`              // publications written, warm-up included
	Acked           int64   `json:"acked"`             // QoS 1/2 flows completed successfully
	AckFailed       int64   `json:"ack_failed"`        // QoS 1/2 flows refused by the broker (5.0 reason ≥ 0x80)
	Expected        int64   `json:"expected"`          // sent × subscribers
	Received        int64   `json:"received"`          // PUBLISH packets received by subscribers
	Lost            int64   `json:"lost"`              // gaps: missing while a later message of the same publisher arrived
	Undelivered     int64   `json:"undelivered"`       // the tail: not received when the drain ended (still queued, or lost)
	DuplicateOrLate int64   `json:"duplicate_or_late"` // deliveries behind their publisher's sequence
	Foreign         int64   `json:"foreign"`           // deliveries without a valid stamp
	Drained         bool    `json:"drained"`           // everything expected arrived before the drain timeout
	SentPerSec      float64 `json:"sent_per_s"`        // publications sent in the measured window
	DeliveredPerSec float64 `json:"delivered_per_s"`   // deliveries (all subscribers) in the measured window
	Latency         Latency `json:"latency_us"`        // publish→deliver, messages sent in the window
	// PaceLate is how late paced publications went out: for each write in the window, when
	// the publisher took its tokens less when the first was due (or the oldest it skipped,
	// having fallen more than a burst behind). The offered load's own timing error, whichever
	// broker: at QoS 1/2 a wait for the in-flight window, the broker's back-pressure, comes
	// after and is not in it. Nil when unpaced.
	PaceLate   *Latency `json:"pace_late_us,omitempty"`
	PaceTickUs float64  `json:"pace_tick_us,omitempty"` // PaceTick, when a tick ran
	// ToolCPUSeconds is the load tool's own CPU time in the window: near ToolCores × the
	// duration, the tool (not the broker) may be the bottleneck.
	ToolCPUSeconds float64  `json:"tool_cpu_s"`
	ToolCores      int      `json:"tool_cores"`               // GOMAXPROCS of the tool
	ToolStealPct   *float64 `json:"tool_steal_pct,omitempty"` // Broker.StealPct of the tool's CPUs: late stamps, whichever broker
	Broker         *Broker  `json:"broker,omitempty"`         // when BrokerPID was given
	BrokerErr      string   `json:"broker_err,omitempty"`
}

// Latency summarises a histogram in microseconds.
type Latency struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p999"`
	Max   float64 `json:"max"`
	Mean  float64 `json:"mean"`
}

func latencyOf(h *Histogram) Latency {
	us := func(ns int64) float64 { return float64(ns) / 1e3 }
	return Latency{Count: h.Count(), P50: us(h.Quantile(0.5)), P99: us(h.Quantile(0.99)),
		P999: us(h.Quantile(0.999)), Max: us(h.Max()), Mean: h.Mean() / 1e3}
}

// Broker is what /proc said about the broker process during the measured window.
type Broker struct {
	PID         int     `json:"pid"`
	CPUSeconds  float64 `json:"cpu_s"`                    // user + system CPU in the window
	CPUPerMsgUs float64 `json:"cpu_us_per_msg,omitempty"` // CPUSeconds per delivered message (pubsub)
	PeakRSS     int64   `json:"peak_rss_bytes"`           // highest VmRSS sampled (every 100 ms)
	// PeakRSSAnon is the highest RssAnon sampled: the resident set less mapped files, i.e.
	// without the executable's and shared libraries' pages.
	PeakRSSAnon int64 `json:"peak_rss_anon_bytes"`
	VmHWM       int64 `json:"vm_hwm_bytes"` // VmHWM at the end: peak since the broker started
	// StealPct is the share of the broker's CPUs' time in the window that the hypervisor
	// gave to other guests (/proc/stat's steal, over the CPUs the broker may run on): a
	// latency tail measured while it is high measures the host, not the broker. Absent
	// where /proc could not tell.
	StealPct *float64 `json:"steal_pct,omitempty"`
}

func (c *PubSubConfig) normalize() error {
	if err := c.Target.normalize(); err != nil {
		return err
	}
	if c.SubAddr != "" {
		addr, err := CheckLoopback(c.SubAddr)
		if err != nil {
			return fmt.Errorf("subscribers' address: %w", err)
		}
		c.SubAddr = addr
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Publishers, 1)
	def(&c.Subscribers, 1)
	def(&c.PayloadSize, 64)
	def(&c.Inflight, 16)
	def(&c.Batch, 32)
	if c.Duration == 0 {
		c.Duration = 10 * time.Second
	}
	if c.Drain == 0 {
		c.Drain = 5 * time.Second
	}
	if c.TopicPrefix == "" {
		c.TopicPrefix = "bench"
	}
	if c.TopicMode == "" {
		c.TopicMode = TopicPerPublisher
	}
	switch {
	case c.Publishers < 1 || c.Publishers > MaxPublishers:
		return fmt.Errorf("publishers: %d, want 1..%d", c.Publishers, MaxPublishers)
	case c.Subscribers < 0:
		return fmt.Errorf("subscribers: %d, want ≥ 0", c.Subscribers)
	case c.QoS > 2:
		return fmt.Errorf("qos: %d, want 0, 1 or 2", c.QoS)
	case c.PayloadSize < StampSize:
		return fmt.Errorf("payload size: %d, want ≥ %d (send time and sequence)", c.PayloadSize, StampSize)
	case c.TopicMode != TopicPerPublisher && c.TopicMode != TopicShared:
		return fmt.Errorf("topic mode %q: want %s or %s", c.TopicMode, TopicPerPublisher, TopicShared)
	case c.Rate < 0 || c.TotalRate < 0:
		return errors.New("rate: must not be negative")
	case c.Inflight < 1 || c.Inflight > 65535:
		return fmt.Errorf("inflight: %d, want 1..65535", c.Inflight)
	case c.Batch < 1:
		return fmt.Errorf("batch: %d, want ≥ 1", c.Batch)
	case c.PaceTick < 0 || c.PaceTick > 0 && c.PaceTick < MinPaceTick:
		return fmt.Errorf("pace tick: %v, want 0 (off) or at least %v", c.PaceTick, MinPaceTick)
	case c.Duration <= 0 || c.Warmup < 0 || c.Drain < 0:
		return errors.New("duration must be positive, warm-up and drain not negative")
	}
	if c.TotalRate > 0 {
		c.Rate = c.TotalRate / float64(c.Publishers)
	}
	return nil
}

// publisher is one publishing connection. Its writer goroutine (run) and, for QoS 1/2, its
// acknowledgement reader share the connection's writes under mu.
type publisher struct {
	idx    int
	tag    byte // the run's tag
	c      *client
	pub    packet.Publish // topic, QoS and payload preset; payload re-stamped per message
	seq    uint64
	window chan struct{}        // QoS 1/2: one token per unacknowledged message
	inuse  *[1024]atomic.Uint64 // QoS 1/2: packet identifiers in use, a bit each
	nextID uint16               // last identifier handed out
	mu     sync.Mutex           // c.wbuf and writes on c.nc
	relbuf []byte               // PUBRELs waiting to be written (ack reader only)
	primed chan struct{}        // QoS 1/2: closed by the ack reader at the priming PINGRESP
	ended  chan struct{}        // QoS 1/2: closed when the ack reader returns (connection gone)

	late *Histogram // paced: how late each write in the window went out (under mu); nil unpaced

	sent, sentWin, acked, ackFailed, unexpected atomic.Int64
	err                                         error // why run stopped early
}

// allocID returns a free packet identifier and marks it in use. The window guarantees one
// is free.
func (p *publisher) allocID() uint16 {
	id := p.nextID
	for {
		id++
		if id == 0 {
			id = 1
		}
		w, bit := &p.inuse[id>>6], uint64(1)<<(id&63)
		if w.Load()&bit == 0 {
			w.Or(bit)
			p.nextID = id
			return id
		}
	}
}

// release frees id; false when it was not in use (an acknowledgement the tool did not expect).
func (p *publisher) release(id uint16) bool {
	w, bit := &p.inuse[id>>6], uint64(1)<<(id&63)
	if w.Load()&bit == 0 {
		return false
	}
	w.And(^bit)
	return true
}

func (p *publisher) inUse(id uint16) bool { return p.inuse[id>>6].Load()&(1<<(id&63)) != 0 }

// plan is when and how fast a publisher publishes, known once every publisher is primed.
type plan struct {
	pacer  *Pacer // nil: as fast as the window allows
	batch  int    // messages per write, at most
	ws, we int64  // the measured window, UnixNano
}

// run primes the connection (QoS 1/2: one PINGREQ, answered before the clock starts), then
// publishes by the plan it receives until stop is closed: paced by the plan's pacer when
// not nil, at most batch messages per write, and within the window for QoS 1/2.
func (p *publisher) run(plans <-chan plan, stop <-chan struct{}) {
	if p.primed != nil {
		p.mu.Lock()
		_, err := p.c.nc.Write(packet.AppendPing(nil, packet.PINGREQ))
		p.mu.Unlock()
		if err != nil {
			p.err = err
			p.c.nc.Close() // ends the ack reader: the priming fails at once
			return
		}
	}
	var pl plan
	select {
	case pl = <-plans:
	case <-stop:
		return
	}
	pacer, batch, ws, we := pl.pacer, pl.batch, pl.ws, pl.we
	var timer *time.Timer
	for {
		select {
		case <-stop:
			return
		default:
		}
		n, late := batch, time.Duration(-1)
		if pacer != nil {
			now := time.Now()
			late = now.Sub(pacer.Next()) // of the first token Take hands out, or the oldest it drops
			if n = pacer.Take(now, batch); n == 0 {
				wait := pacer.Next().Sub(now)
				if timer == nil {
					timer = time.NewTimer(wait)
				} else {
					timer.Reset(wait)
				}
				select {
				case <-timer.C:
				case <-stop:
					return
				}
				continue
			}
		}
		if p.window != nil {
			select {
			case p.window <- struct{}{}:
			case <-stop:
				return
			}
			k := 1
		more:
			for k < n {
				select {
				case p.window <- struct{}{}:
					k++
				default:
					break more
				}
			}
			if pacer != nil {
				pacer.Give(n - k)
			}
			n = k
		}
		if err := p.send(n, late, ws, we); err != nil {
			p.err = err
			return
		}
	}
}

// send encodes n publications into the reused buffer and writes them at once. They share
// one send time: they leave in the same system call. late is how late the first was
// taken (PubSubResult.PaceLate), recorded when the run is paced (p.late); a hair below 0
// from the pacer's rounding counts as on time.
func (p *publisher) send(n int, late time.Duration, ws, we int64) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := time.Now().UnixNano()
	buf := p.c.wbuf[:0]
	for range n {
		if p.pub.QoS > 0 {
			p.pub.PacketID = p.allocID()
		}
		stamp(p.pub.Payload, now, p.tag, p.idx, p.seq)
		p.seq++
		buf = packet.AppendPublish(buf, &p.pub, p.c.version)
	}
	p.c.wbuf = buf[:0]
	if _, err := p.c.nc.Write(buf); err != nil {
		return err
	}
	p.sent.Add(int64(n))
	if now >= ws && now < we {
		p.sentWin.Add(int64(n))
		if p.late != nil {
			p.late.Record(int64(late)) // negatives count as 0
		}
	}
	return nil
}

// readAcks runs the QoS 1/2 flows on the publisher's side until the connection closes.
func (p *publisher) readAcks() {
	defer close(p.ended)
	c := p.c
	primed := p.primed
	for {
		if len(p.relbuf) > 0 && (!c.packetBuffered() || len(p.relbuf) > 16<<10) {
			p.mu.Lock()
			_, err := c.nc.Write(p.relbuf)
			p.mu.Unlock()
			p.relbuf = p.relbuf[:0]
			if err != nil {
				return
			}
		}
		h, body, err := c.next()
		if err != nil {
			return
		}
		if h.Type == packet.PINGRESP && primed != nil {
			close(primed)
			primed = nil
		}
		if len(body) < 2 {
			continue
		}
		id := uint16(body[0])<<8 | uint16(body[1])
		failed := c.version == packet.Version5 && len(body) > 2 && body[2] >= 0x80
		switch {
		case h.Type == packet.PUBACK && p.pub.QoS == 1, h.Type == packet.PUBCOMP && p.pub.QoS == 2,
			h.Type == packet.PUBREC && p.pub.QoS == 2 && failed:
			if !p.release(id) {
				p.unexpected.Add(1)
				continue
			}
			if failed {
				p.ackFailed.Add(1)
			} else {
				p.acked.Add(1)
			}
			<-p.window
		case h.Type == packet.PUBREC && p.pub.QoS == 2:
			if !p.inUse(id) {
				p.unexpected.Add(1)
			}
			p.relbuf = packet.AppendAck(p.relbuf, &packet.Ack{Type: packet.PUBREL, PacketID: id}, c.version)
		}
	}
}

// subscriber is one subscribing connection, read by one goroutine. Everything but
// received belongs to that goroutine until it ends.
type subscriber struct {
	c        *client
	tag      byte     // the run's tag
	ws, we   int64    // measured window, UnixNano
	next     []uint64 // per publisher: one past the highest count received
	got      []uint64 // per publisher: deliveries that advanced next (in order, no duplicates)
	hist     Histogram
	received atomic.Int64 // PUBLISH packets, for the drain

	late, foreign, inWindow int64
}

// run reads deliveries until the connection closes, acknowledging QoS 1/2 in batches:
// acknowledgements are written when the next packet is not already buffered.
func (s *subscriber) run() {
	c := s.c
	v5 := c.version == packet.Version5
	for {
		if len(c.wbuf) > 0 && (!c.packetBuffered() || len(c.wbuf) > 16<<10) {
			if c.flush() != nil {
				return
			}
		}
		h, body, err := c.next()
		if err != nil {
			return
		}
		switch h.Type {
		case packet.PUBLISH:
			s.onPublish(h.Flags, body, v5, time.Now().UnixNano())
		case packet.PUBREL:
			if len(body) >= 2 {
				id := uint16(body[0])<<8 | uint16(body[1])
				c.wbuf = packet.AppendAck(c.wbuf, &packet.Ack{Type: packet.PUBCOMP, PacketID: id}, c.version)
			}
		case packet.DISCONNECT:
			return
		}
	}
}

// onPublish accounts for one delivery received at now (UnixNano) and queues its acknowledgement.
func (s *subscriber) onPublish(flags byte, body []byte, v5 bool, now int64) {
	s.received.Add(1)
	_, id, payload, ok := parsePublish(flags, body, v5)
	if !ok {
		s.foreign++
		return
	}
	switch (flags >> 1) & 3 {
	case 1:
		s.c.wbuf = packet.AppendAck(s.c.wbuf, &packet.Ack{Type: packet.PUBACK, PacketID: id}, s.c.version)
	case 2:
		s.c.wbuf = packet.AppendAck(s.c.wbuf, &packet.Ack{Type: packet.PUBREC, PacketID: id}, s.c.version)
	}
	ts, tag, pub, n, ok := unstamp(payload)
	if !ok || tag != s.tag || pub >= len(s.next) {
		s.foreign++
		return
	}
	if n >= s.next[pub] {
		s.got[pub]++
		s.next[pub] = n + 1
	} else {
		s.late++
	}
	if now >= s.ws && now < s.we {
		s.inWindow++
	}
	if ts >= s.ws && ts < s.we {
		s.hist.Record(now - ts)
	}
}

// RunPubSub connects the subscribers, then the publishers, publishes for Warmup + Duration,
// waits (at most Drain) for outstanding acknowledgements and deliveries, disconnects
// everything and reports. It returns early with ctx's error when ctx is cancelled.
func RunPubSub(ctx context.Context, cfg PubSubConfig) (*PubSubResult, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	runID := strconv.FormatUint(rand.Uint64()&0xFFFFFF, 16)
	tag := byte(1 + rand.IntN(255))
	var subs []*subscriber
	var pubs []*publisher
	var wg sync.WaitGroup
	closeAll := func() {
		for _, s := range subs {
			s.c.disconnect()
		}
		for _, p := range pubs {
			p.mu.Lock()
			p.c.disconnect()
			p.mu.Unlock()
		}
		wg.Wait()
	}
	defer closeAll()

	topicOf := func(i int) string {
		if cfg.TopicMode == TopicShared {
			return cfg.TopicPrefix + "/all"
		}
		return cfg.TopicPrefix + "/" + strconv.Itoa(i)
	}
	filter := cfg.TopicPrefix + "/#"
	if cfg.TopicMode == TopicShared {
		filter = topicOf(0)
	}

	// Subscribers first, so that no publication is missed. The window is set before
	// their goroutines start.
	t0 := time.Now().Add(50 * time.Millisecond)
	ws := t0.Add(cfg.Warmup)
	we := ws.Add(cfg.Duration)
	subTarget := cfg.Target
	if cfg.SubAddr != "" {
		subTarget.Addr, subTarget.Mint = cfg.SubAddr, nil
	}
	subTarget.Persistent = cfg.PersistentSubs
	for i := range cfg.Subscribers {
		c, _, err := subTarget.connect(ctx, "vmqbench-"+runID+"-s"+strconv.Itoa(i), nil, 64<<10)
		if err != nil {
			return nil, fmt.Errorf("subscriber %d: %w", i, err)
		}
		s := &subscriber{c: c, tag: tag, next: make([]uint64, cfg.Publishers), got: make([]uint64, cfg.Publishers)}
		subs = append(subs, s)
		if err := c.subscribe(filter, cfg.QoS, cfg.DialTimeout); err != nil {
			return nil, fmt.Errorf("subscriber %d: %w", i, err)
		}
		c.wbuf = make([]byte, 0, 32<<10)
	}
	inflight := cfg.Inflight
	for i := range cfg.Publishers {
		c, _, err := cfg.Target.connect(ctx, "vmqbench-"+runID+"-p"+strconv.Itoa(i), nil, 4<<10)
		if err != nil {
			return nil, fmt.Errorf("publisher %d: %w", i, err)
		}
		if c.recvMax > 0 {
			inflight = min(inflight, c.recvMax)
		}
		p := &publisher{idx: i, tag: tag, c: c,
			pub: packet.Publish{QoS: cfg.QoS, Topic: topicOf(i), Payload: make([]byte, cfg.PayloadSize)}}
		c.wbuf = make([]byte, 0, cfg.Batch*(cfg.PayloadSize+len(p.pub.Topic)+8))
		if cfg.Rate > 0 {
			p.late = new(Histogram) // 20 KiB: not for every publisher of an unpaced run
		}
		pubs = append(pubs, p)
	}
	if cfg.QoS > 0 {
		for _, p := range pubs {
			p.window = make(chan struct{}, inflight)
			p.inuse = new([1024]atomic.Uint64)
			p.inuse[0].Store(1) // identifier 0 is never used
			p.primed, p.ended = make(chan struct{}), make(chan struct{})
		}
	}

	// Prime the publishers before the clock starts: their goroutines start now, and at
	// QoS 1/2 each makes one round trip (PINGREQ, PINGRESP). Started at the first
	// publication instead, thousands of goroutines grow their stacks in the same second
	// (scenario 6: 20,000, the tool's core saturated for over a second): the subscribers
	// fall behind and the broker's queues fill, a burst made by the tool, not the broker.
	stop := make(chan struct{})
	var pubWG sync.WaitGroup
	defer func() {
		select {
		case <-stop:
		default: // returning early: the publishers waiting for their plan end
			close(stop)
			pubWG.Wait()
		}
	}()
	plans := make(chan plan, len(pubs))
	for _, p := range pubs {
		if cfg.QoS > 0 {
			wg.Go(p.readAcks)
		}
		pubWG.Go(func() { p.run(plans, stop) })
	}
	primeBy := time.NewTimer(cfg.DialTimeout) // for all of them together
	defer primeBy.Stop()
	for _, p := range pubs {
		if p.primed == nil {
			continue
		}
		select {
		case <-p.primed:
		case <-p.ended:
			return nil, fmt.Errorf("publisher %d: connection ended before its PINGRESP", p.idx)
		case <-primeBy.C:
			return nil, fmt.Errorf("publisher %d: no PINGRESP within the dial timeout (%v) for all publishers", p.idx, cfg.DialTimeout)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if now := time.Now(); t0.Before(now) { // setup took longer than planned
		t0 = now
		ws = t0.Add(cfg.Warmup)
		we = ws.Add(cfg.Duration)
	}
	for _, s := range subs {
		s.ws, s.we = ws.UnixNano(), we.UnixNano()
		wg.Go(s.run)
	}

	stopTick := func() {}
	if cfg.Rate > 0 && cfg.PaceTick > 0 {
		stop, err := startTick(cfg.PaceTick)
		if err != nil {
			return nil, err
		}
		stopTick = sync.OnceFunc(stop)
		defer stopTick() // returning early
	}
	sam := newSampler(cfg.BrokerPID)
	for i := range pubs { // any publisher may take any plan: they differ only in when they start
		var pacer *Pacer
		batch := cfg.Batch
		if cfg.Rate > 0 {
			// Stagger the publishers over one interval, and allow a burst of about 5 ms.
			start := t0.Add(time.Duration(float64(i) / float64(len(pubs)) * float64(time.Second) / cfg.Rate))
			burst := max(1, int(cfg.Rate/200))
			pacer = NewPacer(cfg.Rate, start, burst)
			batch = min(batch, burst)
		}
		plans <- plan{pacer, batch, ws.UnixNano(), we.UnixNano()}
	}

	// Measure: broker CPU at the window's edges.
	cancelled := sleepUntil(ctx, ws)
	var self0, self1 ProcSample
	var selfStolen *float64
	if !cancelled {
		sam.mark()
		self0, _ = readProcDir("/proc/self")
		steal := startSteal(os.Getpid())
		cancelled = sleepUntil(ctx, we)
		sam.mark()
		self1, _ = readProcDir("/proc/self")
		selfStolen = steal.end()
	}
	close(stop)
	drainBy := time.Now().Add(cfg.Drain)
	for _, p := range pubs { // a writer blocked on a broker that stopped reading gives up at drainBy
		p.c.nc.SetWriteDeadline(drainBy)
	}
	pubWG.Wait()
	stopTick() // publishing is over
	if cancelled {
		sam.close()
		return nil, ctx.Err()
	}

	res := &PubSubResult{Mode: "pubsub", Addr: cfg.Addr, TLS: cfg.TLS != nil, MQTT: int(cfg.Version),
		Publishers: cfg.Publishers, Subscribers: cfg.Subscribers, QoS: int(cfg.QoS), PayloadSize: cfg.PayloadSize,
		TopicMode: cfg.TopicMode, TargetRate: cfg.Rate * float64(cfg.Publishers),
		WarmupS: cfg.Warmup.Seconds(), DurationS: cfg.Duration.Seconds(),
		ToolCPUSeconds: (self1.CPU - self0.CPU).Seconds(), ToolCores: runtime.GOMAXPROCS(0), ToolStealPct: selfStolen}
	if cfg.QoS > 0 {
		res.Inflight = inflight
	}
	var sentWin int64
	var firstErr error
	for _, p := range pubs {
		res.Sent += p.sent.Load()
		sentWin += p.sentWin.Load()
		if p.err != nil && firstErr == nil && !errors.Is(p.err, os.ErrDeadlineExceeded) {
			firstErr = fmt.Errorf("publisher %d: %w", p.idx, p.err)
		}
	}
	res.Expected = res.Sent * int64(cfg.Subscribers)

	// Drain: wait for the QoS 1/2 flows to complete and the deliveries to arrive, until
	// everything is in, nothing has moved for idle, or drainBy.
	const idle = 500 * time.Millisecond
	lastMove, last := time.Now(), int64(-1)
	for {
		var done, recv int64
		for _, p := range pubs {
			done += p.acked.Load() + p.ackFailed.Load()
		}
		for _, s := range subs {
			recv += s.received.Load()
		}
		if (cfg.QoS == 0 || done >= res.Sent) && recv >= res.Expected {
			res.Drained = true
			break
		}
		now := time.Now()
		if done+recv != last {
			last, lastMove = done+recv, now
		}
		if now.After(drainBy) || now.Sub(lastMove) > idle || ctx.Err() != nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	closeAll()
	var hist Histogram
	var inWindow int64
	for _, s := range subs {
		hist.Merge(&s.hist)
		res.Received += s.received.Load()
		for i, p := range pubs {
			res.Lost += int64(s.next[i] - s.got[i])                   // gaps
			res.Undelivered += max(0, p.sent.Load()-int64(s.next[i])) // the tail
		}
		inWindow += s.inWindow
		res.DuplicateOrLate += s.late
		res.Foreign += s.foreign
	}
	var late Histogram
	for _, p := range pubs {
		if p.late != nil {
			late.Merge(p.late)
		}
		res.Acked += p.acked.Load()
		res.AckFailed += p.ackFailed.Load()
		if n := p.unexpected.Load(); n > 0 && firstErr == nil {
			firstErr = fmt.Errorf("publisher %d: %d acknowledgements for packet identifiers not in flight", p.idx, n)
		}
	}
	subs, pubs = nil, nil // closed: the deferred closeAll has nothing left to do
	res.Latency = latencyOf(&hist)
	if cfg.Rate > 0 {
		l := latencyOf(&late)
		res.PaceLate = &l
		if cfg.PaceTick > 0 {
			res.PaceTickUs = float64(cfg.PaceTick) / 1e3
		}
	}
	res.SentPerSec = float64(sentWin) / cfg.Duration.Seconds()
	res.DeliveredPerSec = float64(inWindow) / cfg.Duration.Seconds()
	b, berr := sam.close()
	if b != nil && inWindow > 0 {
		b.CPUPerMsgUs = b.CPUSeconds * 1e6 / float64(inWindow)
	}
	res.Broker = b
	if berr != nil {
		res.BrokerErr = berr.Error()
	}
	return res, firstErr
}

// sleepUntil sleeps until t; true when ctx was cancelled first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() != nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return false
	case <-ctx.Done():
		return true
	}
}
