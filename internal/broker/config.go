package broker

import (
	"errors"
	"fmt"
	"log/slog"
	"math"
	"time"
)

// Config configures a Server. The zero value of every field means its documented
// default, and every default is the safe choice; each limit says which attack it stops.
type Config struct {
	// Logger receives operational logs. Never payloads, passwords or patient data. Default: discard.
	Logger *slog.Logger

	// Authenticator checks CONNECT credentials. Nil: only listeners with AllowAnonymous accept clients.
	Authenticator Authenticator
	// Authorizer decides publish, subscribe and delivery. Nil: everything is allowed
	// (the composition root always installs one outside tests).
	Authorizer Authorizer
	// Persister stores sessions, QoS 1/2 messages and retained messages; New loads them.
	// With one, a QoS 1/2 publication is acknowledged only once it is durable. Nil: state
	// lives in memory only and is lost on restart.
	Persister Persister

	// MaxConnectionsPerAddress caps concurrent connections from one source address (an IPv6
	// /64 counts as one). Default 100. Stops one host exhausting sockets and memory (T30).
	MaxConnectionsPerAddress int
	// ConnectionRate and ConnectionBurst cap new connections per second from one source
	// address. Defaults 50/s, burst 100. Stop connection floods and handshake CPU exhaustion.
	ConnectionRate  float64
	ConnectionBurst int

	// PublishRate (publications per second) and PublishByteRate (bytes per second) cap what
	// one connection may publish; beyond them the broker stops reading from it until the
	// rate allows (the client is slowed down by TCP, nothing is dropped). Defaults 1000/s and
	// 8 MiB/s, bursts of twice that; a negative value disables the limit. Stop one client
	// (a stolen device) from flooding the broker and every subscriber.
	PublishRate     float64
	PublishByteRate float64

	// ConnectTimeout is how long a new connection has to complete CONNECT. Default 10s.
	// Stops idle and slowloris connections that never authenticate (CASES T11, T28, T29).
	ConnectTimeout time.Duration
	// PreAuthMaxPacketSize caps the first packet (CONNECT). Default 64 KiB.
	// Stops pre-authentication memory exhaustion by announced sizes (T05, T06, T23, T84).
	PreAuthMaxPacketSize int
	// MaxPacketSize caps every packet after CONNECT, advertised in CONNACK. Default 256 KiB.
	// Stops memory exhaustion by large packets (T12).
	MaxPacketSize int
	// MaxKeepAlive caps the client's keep alive in seconds; a larger or zero value is
	// replaced by it (5.0: Server Keep Alive). Default 300. Stops idle sockets held open
	// forever (T24, SlowITe).
	MaxKeepAlive uint16
	// ReceiveMaximum is how many QoS 2 publications a client may have awaiting PUBREL
	// (advertised as Receive Maximum). Default 32. Stops unbounded QoS 2 state (T71, T72).
	ReceiveMaximum uint16
	// MaxInflight caps QoS 1/2 messages in flight to one client (further capped by the
	// client's Receive Maximum). Default 32. Stops packet identifier exhaustion (T75).
	MaxInflight uint16
	// MaxQueuedMessages and MaxQueuedBytes cap messages queued for one session while it is
	// offline or its window is full. Defaults 1000 and 1 MiB. Stop a stalled or absent
	// subscriber from exhausting memory (T75, T76).
	MaxQueuedMessages int
	MaxQueuedBytes    int
	// FlowControlWait: when a connected subscriber that keeps acknowledging has more than
	// half of MaxQueuedMessages or MaxQueuedBytes queued, a QoS 1/2 publisher whose message
	// went into that queue is not read from until the queue is down to a quarter; when the
	// queue is full, the publication waits for room before it is acknowledged. At most
	// this long per publication; so publishers slow down to what subscribers take instead
	// of their messages being dropped at a full queue (also when thousands of devices each
	// send one message at once). A subscriber with deliveries in flight that acknowledged
	// none for this long (counted from the first, when its window was empty) is not waited
	// for (a stalled one must not stall publishers, T76), nor one whose client is itself
	// waiting as a publisher; with durable storage a publication waits only before its
	// first stored copy. Default 1s; negative disables (a full queue drops, counted).
	FlowControlWait time.Duration
	// FlowControlReaders is how many waiting publishers (FlowControlWait) may keep their
	// reader goroutine, the fastest to resume. Past it, a publisher that is to wait is held
	// without one (its goroutine's 4-8 KiB stack and its read buffers less: thousands of
	// devices waiting for one slow dashboard) where its connection can go dormant (see
	// KeepReaders; not WebSocket) and the wait allows (not a QoS 2 or retained publication,
	// or one already delivered elsewhere, waiting for room); those that cannot be held wait
	// on theirs anyway, counted. Default 256; negative: none.
	FlowControlReaders int
	// MaxPendingWrite caps encoded bytes waiting for a client's socket; past it QoS 0
	// messages to that client are dropped. Default 1 MiB. Stops slow consumers (T76).
	MaxPendingWrite int
	// KeepReaders keeps a reader goroutine and read buffer per connection while it is open.
	// By default (false), on Linux, a TCP or TLS connection accepted by Serve gives both
	// back whenever it has handled everything its client sent ("dormant"), and one epoll
	// set waits for all such sockets; a reader is found for it again when data arrives, its
	// keep alive runs out or the server closes it. That saves the goroutine's stack (4-8
	// KiB) and the buffer (0.5 KiB over TLS, 4 KiB over TCP) of every connection between
	// its packets (about 5 KiB per idle TLS connection measured), at some CPU per wake
	// (+11-15 % per message where every message arrives alone; docs/PERFORMANCE.md,
	// session 7). True trades that memory back for the CPU. WebSocket connections,
	// connections from a listener that runs TLS itself, and other systems keep readers.
	KeepReaders bool
	// WriteTimeout is how long a write to a client may block before it is disconnected.
	// Default 10s. Stops a client that stops reading from pinning its writer (T76).
	WriteTimeout time.Duration
	// TopicAliasMaximum is how many topic aliases a client may set (advertised). Default 10.
	// The same value caps aliases the server sends. Stops alias table growth.
	TopicAliasMaximum uint16
	// MaxSubscriptions caps subscriptions per session. Default 100 (T85).
	MaxSubscriptions int
	// MaxTopicLength and MaxTopicLevels cap topic names and filters. Defaults 1024 bytes
	// and 32 levels. Stop algorithmic attacks on matching (T59).
	MaxTopicLength int
	MaxTopicLevels int
	// MaxClientIDLength caps client identifiers: 23 to 65535, default 128 (T23).
	MaxClientIDLength int
	// MaxSessionExpiry caps the Session Expiry Interval in seconds. Default 7 days.
	// Stops sessions piling up from client id churn.
	MaxSessionExpiry uint32
	// MaxRetained caps retained messages in total. Default 100,000. MaxRetainedPerClient caps
	// those one client id has set. Default 1,000. Stop retained-store exhaustion (memory and
	// disk) by one client or in total.
	MaxRetained          int
	MaxRetainedPerClient int
	// MaxRetainedBytes caps the topic and payload bytes of all retained messages. Default
	// 256 MiB: far below MemoryBudget, so retained messages alone cannot hold the broker in
	// overload (clearing a retained message is always accepted).
	MaxRetainedBytes int64
	// MemoryBudget is the heap size (bytes) past which the broker sheds load: new connections
	// are refused (CONNACK Server Busy / 3.1.1 Server Unavailable), QoS 0 publications are
	// dropped, and QoS 1/2 publications are refused (5.0: Quota Exceeded; 3.1.1: the
	// publisher is disconnected unacknowledged, so it sends again later). Default 4 GiB.
	// Stops memory exhaustion from any mix of clients before the OOM killer ends the process.
	MemoryBudget int64
	// SysInterval is how often $SYS statistics are published. Default 10s; negative disables.
	SysInterval time.Duration
}

func (c *Config) setDefaults() {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.MaxConnectionsPerAddress, 100)
	if c.ConnectionRate == 0 {
		c.ConnectionRate = 50
	}
	def(&c.ConnectionBurst, 100)
	if c.PublishRate == 0 {
		c.PublishRate = 1000
	}
	if c.PublishByteRate == 0 {
		c.PublishByteRate = 8 << 20
	}
	if c.ConnectTimeout == 0 {
		c.ConnectTimeout = 10 * time.Second
	}
	def(&c.PreAuthMaxPacketSize, 64<<10)
	def(&c.MaxPacketSize, 256<<10)
	if c.MaxKeepAlive == 0 {
		c.MaxKeepAlive = 300
	}
	if c.ReceiveMaximum == 0 {
		c.ReceiveMaximum = 32
	}
	if c.MaxInflight == 0 {
		c.MaxInflight = 32
	}
	def(&c.MaxQueuedMessages, 1000)
	def(&c.MaxQueuedBytes, 1<<20)
	def(&c.MaxPendingWrite, 1<<20)
	if c.FlowControlWait == 0 {
		c.FlowControlWait = time.Second
	}
	def(&c.FlowControlReaders, 256)
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.TopicAliasMaximum == 0 {
		c.TopicAliasMaximum = 10
	}
	def(&c.MaxSubscriptions, 100)
	def(&c.MaxTopicLength, 1024)
	def(&c.MaxTopicLevels, 32)
	def(&c.MaxClientIDLength, 128)
	if c.MaxSessionExpiry == 0 {
		c.MaxSessionExpiry = 7 * 24 * 3600
	}
	def(&c.MaxRetained, 100_000)
	def(&c.MaxRetainedPerClient, 1000)
	if c.MaxRetainedBytes == 0 {
		c.MaxRetainedBytes = 256 << 20
	}
	if c.MemoryBudget == 0 {
		c.MemoryBudget = 4 << 30
	}
	if c.SysInterval == 0 {
		c.SysInterval = 10 * time.Second
	}
}

// Validate reports the first invalid field by name.
func (c *Config) Validate() error {
	var errs []error
	bad := func(field string, format string, args ...any) {
		errs = append(errs, fmt.Errorf("broker config: %s: %s", field, fmt.Sprintf(format, args...)))
	}
	if c.ConnectTimeout < 0 {
		bad("ConnectTimeout", "must be positive, got %v", c.ConnectTimeout)
	}
	if c.PreAuthMaxPacketSize < 0 || c.PreAuthMaxPacketSize > 268_435_455 {
		bad("PreAuthMaxPacketSize", "must be 1..268435455, got %d", c.PreAuthMaxPacketSize)
	}
	if c.MaxPacketSize < 0 || c.MaxPacketSize > 268_435_455 {
		bad("MaxPacketSize", "must be 1..268435455, got %d", c.MaxPacketSize)
	}
	if c.MaxInflight > 65535/2 {
		bad("MaxInflight", "must be at most 32767, got %d", c.MaxInflight)
	}
	if c.MemoryBudget < 0 {
		bad("MemoryBudget", "must not be negative, got %d", c.MemoryBudget)
	}
	for _, f := range []struct {
		name string
		v    float64
	}{{"PublishRate", c.PublishRate}, {"PublishByteRate", c.PublishByteRate}, {"ConnectionRate", c.ConnectionRate}} {
		name, v := f.name, f.v
		if math.IsNaN(v) || math.IsInf(v, 0) {
			bad(name, "must be a finite number, got %v", v)
		}
	}
	if c.ConnectionRate < 0 {
		bad("ConnectionRate", "must not be negative, got %v", c.ConnectionRate)
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"MaxConnectionsPerAddress", c.MaxConnectionsPerAddress}, {"ConnectionBurst", c.ConnectionBurst}, {"MaxQueuedMessages", c.MaxQueuedMessages}, {"MaxQueuedBytes", c.MaxQueuedBytes}, {"MaxPendingWrite", c.MaxPendingWrite}, {"MaxSubscriptions", c.MaxSubscriptions}, {"MaxTopicLength", c.MaxTopicLength}, {"MaxTopicLevels", c.MaxTopicLevels}, {"MaxClientIDLength", c.MaxClientIDLength}, {"MaxRetained", c.MaxRetained}, {"MaxRetainedPerClient", c.MaxRetainedPerClient}} {
		name, v := f.name, f.v
		if v < 0 {
			bad(name, "must not be negative, got %d", v)
		}
	}
	if c.MaxTopicLength > 65535 {
		bad("MaxTopicLength", "must be at most 65535, got %d", c.MaxTopicLength)
	}
	if c.MaxClientIDLength != 0 && c.MaxClientIDLength < 23 || c.MaxClientIDLength > 65535 {
		bad("MaxClientIDLength", "must be 23..65535 (every client may use 23 bytes [MQTT-3.1.3-5]), got %d", c.MaxClientIDLength)
	}
	if c.WriteTimeout < 0 {
		bad("WriteTimeout", "must be positive, got %v", c.WriteTimeout)
	}
	return errors.Join(errs...)
}
