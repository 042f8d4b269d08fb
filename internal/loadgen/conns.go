package loadgen

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"vitalmq/internal/packet"
)

// ConnsConfig is a conns run: K idle connections (CONNECT, then only keep alive).
type ConnsConfig struct {
	Target
	Conns int // default 1000
	// Sources is how many source addresses the connections are spread over: 127.0.0.2 …
	// 127.0.0.(Sources+1), each good for about 28,000 ephemeral ports. 0: one per 20,000
	// connections. Ignored for an IPv6 target.
	Sources     int
	Concurrency int           // handshakes in flight at once; default 8
	Hold        time.Duration // how long the connections stay open once all are up; 0: close at once
	BrokerPID   int
}

// ConnsResult is the outcome of RunConns.
type ConnsResult struct {
	Mode        string  `json:"mode"`
	Addr        string  `json:"addr"`
	TLS         bool    `json:"tls"`
	MQTT        int     `json:"mqtt"`
	Conns       int     `json:"conns"`
	Sources     int     `json:"sources"`
	Concurrency int     `json:"concurrency"`
	HoldS       float64 `json:"hold_s"`

	Connected   int     `json:"connected"`
	Failed      int     `json:"failed"`
	FirstError  string  `json:"first_error,omitempty"`
	ConnectS    float64 `json:"connect_s"`                  // first dial to last CONNACK
	ConnectRate float64 `json:"connects_per_s"`             // connections (TCP + TLS + CONNECT/CONNACK) per second
	Handshake   Latency `json:"handshake_us"`               // per connection, dial to CONNACK
	Resumed     int     `json:"tls_resumed"`                // TLS handshakes that resumed a session
	Full        int     `json:"tls_full"`                   // full TLS handshakes
	KeyExchange string  `json:"tls_key_exchange,omitempty"` // negotiated by the first connection
	Alive       int     `json:"alive"`                      // still open at the end of the hold
	Pings       int64   `json:"pings"`                      // PINGREQs sent during the hold

	Broker    *ConnsBroker `json:"broker,omitempty"`
	BrokerErr string       `json:"broker_err,omitempty"`
}

// ConnsBroker is the broker's cost of the connections, from /proc.
type ConnsBroker struct {
	PID          int      `json:"pid"`
	RSSBefore    int64    `json:"rss_before_bytes"`
	RSSConnected int64    `json:"rss_connected_bytes"` // right after the last CONNACK
	RSSHeld      int64    `json:"rss_held_bytes"`      // at the end of the hold
	BytesPerConn float64  `json:"bytes_per_conn"`      // (held, or connected without a hold) − before, per connection
	CPUSeconds   float64  `json:"cpu_s"`               // during the connect phase
	CPUPerConnUs float64  `json:"cpu_us_per_conn"`
	VmHWM        int64    `json:"vm_hwm_bytes"`
	StealPct     *float64 `json:"steal_pct,omitempty"` // the hypervisor's steal on the broker's CPUs during the connect phase (see Broker)
}

func (c *ConnsConfig) normalize() error {
	if err := c.Target.normalize(); err != nil {
		return err
	}
	if c.Conns == 0 {
		c.Conns = 1000
	}
	if c.Concurrency == 0 {
		c.Concurrency = 8
	}
	if c.Sources == 0 {
		c.Sources = (c.Conns + 19_999) / 20_000
	}
	switch {
	case c.Conns < 1 || c.Conns > 1_000_000:
		return fmt.Errorf("conns: %d, want 1..1000000", c.Conns)
	case c.Sources < 1 || c.Sources > 253:
		return fmt.Errorf("sources: %d, want 1..253 (127.0.0.2 … 127.0.0.254)", c.Sources)
	case c.Concurrency < 1:
		return fmt.Errorf("concurrency: %d, want ≥ 1", c.Concurrency)
	case c.Hold < 0:
		return errors.New("hold must not be negative")
	}
	return nil
}

// sourceAddr is the local address of connection i: 127.0.0.2 … 127.0.0.(n+1) in turn;
// nil (the kernel's choice) for a target that is not IPv4.
func sourceAddr(target string, i, n int) net.Addr {
	host, _, _ := net.SplitHostPort(target)
	if ip, err := netip.ParseAddr(host); err != nil || !ip.Is4() {
		return nil
	}
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%n))}
}

// RunConns opens cfg.Conns connections, Concurrency at a time, holds them idle for Hold
// (sending PINGREQ at half the keep alive), then disconnects them.
func RunConns(ctx context.Context, cfg ConnsConfig) (*ConnsResult, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	res := &ConnsResult{Mode: "conns", Addr: cfg.Addr, TLS: cfg.TLS != nil, MQTT: int(cfg.Version), Conns: cfg.Conns,
		Sources: cfg.Sources, Concurrency: cfg.Concurrency, HoldS: cfg.Hold.Seconds()}
	if sourceAddr(cfg.Addr, 0, 1) == nil {
		res.Sources = 0
	}
	runID := strconv.FormatUint(rand.Uint64()&0xFFFFFF, 16)
	var before ProcSample
	var steal stealSince
	var procErr error
	if cfg.BrokerPID > 0 {
		before, procErr = ReadProc(cfg.BrokerPID)
		steal = startSteal(cfg.BrokerPID)
	}

	conns := make([]net.Conn, cfg.Conns)
	var hists = make([]Histogram, cfg.Concurrency)
	var next, failed, resumed atomic.Int64
	var errOnce, kexOnce sync.Once
	var wg sync.WaitGroup
	start := time.Now()
	for w := range cfg.Concurrency {
		wg.Go(func() {
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= cfg.Conns {
					return
				}
				c, info, err := cfg.Target.connect(ctx, "vmqbench-"+runID+"-c"+strconv.Itoa(i), sourceAddr(cfg.Addr, i, cfg.Sources), 256)
				if err != nil {
					failed.Add(1)
					errOnce.Do(func() { res.FirstError = fmt.Sprintf("connection %d: %v", i, err) })
					continue
				}
				conns[i] = c.nc // the reader and its buffer are dropped: idle connections read nothing
				if info.kex != 0 {
					kexOnce.Do(func() { res.KeyExchange = info.kex.String() })
				}
				hists[w].Record(int64(info.elapsed))
				if info.resumed {
					resumed.Add(1)
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	var connected ProcSample
	var stolen *float64 // during the connect phase
	if cfg.BrokerPID > 0 && procErr == nil {
		connected, procErr = ReadProc(cfg.BrokerPID)
		stolen = steal.end()
	}
	closeAll := func() {
		var cw sync.WaitGroup
		var k atomic.Int64
		bye := packet.AppendDisconnect(nil, &packet.Disconnect{}, cfg.Version)
		for range cfg.Concurrency {
			cw.Go(func() {
				for {
					i := int(k.Add(1) - 1)
					if i >= len(conns) {
						return
					}
					if c := conns[i]; c != nil {
						c.SetWriteDeadline(time.Now().Add(time.Second))
						c.Write(bye)
						c.Close()
					}
				}
			})
		}
		cw.Wait()
	}
	defer closeAll()

	res.Failed = int(failed.Load())
	res.Connected = cfg.Conns - res.Failed
	res.ConnectS = elapsed.Seconds()
	if elapsed > 0 {
		res.ConnectRate = float64(res.Connected) / elapsed.Seconds()
	}
	var h Histogram
	for i := range hists {
		h.Merge(&hists[i])
	}
	res.Handshake = latencyOf(&h)
	if cfg.TLS != nil {
		res.Resumed = int(resumed.Load())
		res.Full = res.Connected - res.Resumed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if res.Connected == 0 {
		return res, fmt.Errorf("no connection succeeded: %s", res.FirstError)
	}

	// Hold: idle, but keep alive.
	pingEvery := time.Duration(cfg.KeepAlive) * time.Second / 2
	ping := packet.AppendPing(nil, packet.PINGREQ)
	holdEnd := time.Now().Add(cfg.Hold)
	for {
		nextPing := time.Now().Add(pingEvery)
		if !nextPing.Before(holdEnd) {
			sleepUntil(ctx, holdEnd)
			break
		}
		if sleepUntil(ctx, nextPing) {
			break
		}
		for _, c := range conns {
			if c != nil {
				c.SetWriteDeadline(time.Now().Add(time.Second))
				if _, err := c.Write(ping); err == nil {
					res.Pings++
				}
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	res.Alive = countAlive(conns)

	if cfg.BrokerPID > 0 && procErr == nil {
		held, err := ReadProc(cfg.BrokerPID)
		procErr = err
		if err == nil {
			b := &ConnsBroker{PID: cfg.BrokerPID, RSSBefore: before.RSS, RSSConnected: connected.RSS, RSSHeld: held.RSS,
				CPUSeconds: (connected.CPU - before.CPU).Seconds(), VmHWM: held.HWM, StealPct: stolen}
			after := held.RSS
			if cfg.Hold == 0 {
				after = connected.RSS
			}
			b.BytesPerConn = float64(after-before.RSS) / float64(res.Connected)
			b.CPUPerConnUs = b.CPUSeconds * 1e6 / float64(res.Connected)
			res.Broker = b
		}
	}
	if procErr != nil {
		res.BrokerErr = procErr.Error()
	}
	return res, nil
}

// countAlive counts the connections the broker has not closed. Whatever the broker sent
// (PINGRESPs) is read and discarded without blocking, down to the TCP level (the
// connections are closed next, so a TLS record cut short does not matter): EAGAIN means
// open, a zero-byte read (EOF) or an error means closed by the broker.
func countAlive(conns []net.Conn) int {
	n := 0
	buf := make([]byte, 4096)
	for _, c := range conns {
		if tc, ok := c.(interface{ NetConn() net.Conn }); ok {
			c = tc.NetConn()
		}
		sc, ok := c.(syscall.Conn)
		if !ok {
			continue
		}
		rc, err := sc.SyscallConn()
		if err != nil {
			continue
		}
		alive := false
		rc.Read(func(fd uintptr) bool {
			for {
				k, _, err := syscall.Recvfrom(int(fd), buf, syscall.MSG_DONTWAIT)
				switch {
				case err == syscall.EINTR:
					continue
				case err == syscall.EAGAIN:
					alive = true
				case err == nil && k > 0:
					continue
				}
				return true
			}
		})
		if alive {
			n++
		}
	}
	return n
}
