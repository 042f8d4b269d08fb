package loadgen

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"vitalmq/internal/packet"
)

// ErrNotLoopback is returned for a target that is not a loopback address.
var ErrNotLoopback = errors.New("refusing a non-loopback address: the load tool only targets 127.0.0.0/8, ::1 or localhost")

// CheckLoopback validates a target "host:port" and returns it with the host as a literal
// loopback IP ("localhost" becomes 127.0.0.1). Host names other than localhost are refused
// too: a name could resolve elsewhere between the check and the dial.
func CheckLoopback(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("address %q: %w", addr, err)
	}
	if p, err := strconv.ParseUint(port, 10, 16); err != nil || p == 0 {
		return "", fmt.Errorf("address %q: bad port", addr)
	}
	if strings.EqualFold(host, "localhost") {
		host = "127.0.0.1"
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.Unmap().IsLoopback() {
		return "", fmt.Errorf("%w (got %q)", ErrNotLoopback, addr)
	}
	return net.JoinHostPort(ip.Unmap().String(), port), nil
}

// TLSOptions builds the client's TLS configuration.
type TLSOptions struct {
	CAFile     string // PEM roots to verify the broker with; empty: the system roots
	CertFile   string // client certificate (mTLS), with KeyFile
	KeyFile    string
	ServerName string // name to verify; empty: the target's host (an IP is checked against IP SANs)
	Insecure   bool   // skip verification (loopback only, for self-signed test brokers)
	Resume     bool   // keep a session cache so later handshakes resume (TLS session tickets)
	// Classic offers only the classic key exchange (X25519, then P-256), as most device TLS
	// stacks do (and all that Debian's Mosquitto, on OpenSSL 3.0, negotiates); false offers
	// Go's default, the post-quantum hybrid X25519MLKEM768 first.
	Classic bool
}

// Config returns the *tls.Config for a target whose host is host.
func (o TLSOptions) Config(host string) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: o.ServerName, InsecureSkipVerify: o.Insecure}
	if c.ServerName == "" {
		c.ServerName = host
	}
	if o.CAFile != "" {
		pem, err := os.ReadFile(o.CAFile)
		if err != nil {
			return nil, err
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no PEM certificate", o.CAFile)
		}
	}
	if o.CertFile != "" || o.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	if o.Classic {
		c.CurvePreferences = []tls.CurveID{tls.X25519, tls.CurveP256}
	}
	if o.Resume {
		c.ClientSessionCache = tls.NewLRUClientSessionCache(256)
	}
	return c, nil
}

// Target is the broker under load and how to connect to it.
type Target struct {
	Addr        string      // host:port, loopback only
	TLS         *tls.Config // nil: plain TCP
	Version     byte        // packet.Version311 (default) or packet.Version5
	Username    string      // sent when not empty
	Password    string      // sent when not empty
	KeepAlive   uint16      // seconds; default 60
	DialTimeout time.Duration
	// Mint, with TLS, gives every connection its own client certificate for its client id.
	Mint *CertMinter
	// Persistent asks for a session that outlives the connection (3.1.1 Clean Session 0,
	// 5.0 Session Expiry 300 s): what a broker's durable storage has to keep.
	Persistent bool
}

func (t *Target) normalize() error {
	addr, err := CheckLoopback(t.Addr)
	if err != nil {
		return err
	}
	t.Addr = addr
	switch t.Version {
	case 0:
		t.Version = packet.Version311
	case packet.Version311, packet.Version5:
	default:
		return fmt.Errorf("MQTT protocol level %d: want 4 (3.1.1) or 5", t.Version)
	}
	if t.KeepAlive == 0 {
		t.KeepAlive = 60
	}
	if t.DialTimeout <= 0 {
		t.DialTimeout = 10 * time.Second
	}
	return nil
}

// maxBody caps the size of a packet the tool accepts from the broker.
const maxBody = 16 << 20

// client is one MQTT connection of the tool.
type client struct {
	nc      net.Conn
	r       *bufio.Reader
	version byte
	wbuf    []byte // encoded packets waiting to be written
	scratch []byte // bodies larger than the reader's buffer
	recvMax int    // the broker's Receive Maximum (5.0 CONNACK); 0: not announced
}

// connInfo describes how a connection was established.
type connInfo struct {
	elapsed time.Duration // dial + TLS handshake + CONNECT/CONNACK
	resumed bool          // the TLS handshake resumed a session
	kex     tls.CurveID   // the TLS key exchange negotiated
}

// connect dials the target (from local when not nil), runs the TLS handshake, sends
// CONNECT and waits for a successful CONNACK.
func (t *Target) connect(ctx context.Context, clientID string, local net.Addr, rbuf int) (*client, connInfo, error) {
	start := time.Now()
	var info connInfo
	ctx, cancel := context.WithTimeout(ctx, t.DialTimeout)
	defer cancel()
	d := net.Dialer{LocalAddr: local}
	nc, err := d.DialContext(ctx, "tcp", t.Addr)
	if err != nil {
		return nil, info, err
	}
	if t.TLS != nil {
		cfg := t.TLS
		if t.Mint != nil {
			cert, err := t.Mint.Cert(clientID)
			if err != nil {
				nc.Close()
				return nil, info, fmt.Errorf("client certificate: %w", err)
			}
			cfg = cfg.Clone()
			cfg.Certificates = []tls.Certificate{cert}
		}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, info, fmt.Errorf("TLS handshake: %w", err)
		}
		st := tc.ConnectionState()
		info.resumed, info.kex = st.DidResume, st.CurveID
		nc = tc
	}
	if dl, ok := ctx.Deadline(); ok {
		nc.SetDeadline(dl)
	}
	c := &client{nc: nc, r: bufio.NewReaderSize(nc, rbuf), version: t.Version}
	cp := packet.Connect{Version: t.Version, CleanStart: !t.Persistent, KeepAlive: t.KeepAlive, ClientID: clientID}
	if t.Persistent && t.Version == packet.Version5 {
		cp.Props.SessionExpiry = 300
		cp.Props.Set(packet.PropSessionExpiry)
	}
	if t.Username != "" {
		cp.HasUser, cp.Username = true, t.Username
	}
	if t.Password != "" {
		cp.HasPass, cp.Password = true, []byte(t.Password)
	}
	if _, err := nc.Write(packet.AppendConnect(nil, &cp)); err != nil {
		nc.Close()
		return nil, info, fmt.Errorf("CONNECT: %w", err)
	}
	h, body, err := c.next()
	if err == nil && h.Type != packet.CONNACK {
		err = fmt.Errorf("got %v, want CONNACK", h.Type)
	}
	var ack packet.Connack
	if err == nil {
		err = packet.DecodeConnack(&ack, body, t.Version)
	}
	if err == nil && ack.Reason != packet.Success {
		err = fmt.Errorf("connection refused: %v", ack.Reason)
	}
	if err != nil {
		nc.Close()
		return nil, info, fmt.Errorf("CONNACK: %w", err)
	}
	if ack.Props.Has(packet.PropReceiveMaximum) {
		c.recvMax = int(ack.Props.ReceiveMaximum)
	}
	nc.SetDeadline(time.Time{})
	info.elapsed = time.Since(start)
	return c, info, nil
}

// next reads one packet. The body is valid until the next call.
func (c *client) next() (packet.FixedHeader, []byte, error) {
	h, err := packet.ReadHeader(c.r)
	if err != nil {
		return h, nil, err
	}
	n := h.Remaining
	if n <= c.r.Size() {
		b, err := c.r.Peek(n)
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return h, nil, err
		}
		c.r.Discard(n)
		return h, b, nil
	}
	if n > maxBody {
		return h, nil, fmt.Errorf("%v of %d bytes: too large", h.Type, n)
	}
	if cap(c.scratch) < n {
		c.scratch = make([]byte, n)
	}
	b := c.scratch[:n]
	_, err = io.ReadFull(c.r, b)
	return h, b, err
}

// packetBuffered reports whether the next packet is already complete in the read buffer,
// so reading it will not block. Pending acknowledgements must be flushed before a read
// that may block: the broker may be waiting for them to send more.
func (c *client) packetBuffered() bool {
	n := c.r.Buffered()
	b, _ := c.r.Peek(min(n, 5))
	if len(b) < 2 {
		return false
	}
	size, w := uvarint(b[1:])
	return w > 0 && n >= 1+w+size
}

// flush writes and empties wbuf.
func (c *client) flush() error {
	if len(c.wbuf) == 0 {
		return nil
	}
	_, err := c.nc.Write(c.wbuf)
	c.wbuf = c.wbuf[:0]
	return err
}

// subscribe sends one SUBSCRIBE and waits for its SUBACK.
func (c *client) subscribe(filter string, qos byte, timeout time.Duration) error {
	c.nc.SetDeadline(time.Now().Add(timeout))
	defer c.nc.SetDeadline(time.Time{})
	s := packet.Subscribe{PacketID: 1, Subs: []packet.Subscription{{Filter: filter, QoS: qos}}}
	if _, err := c.nc.Write(packet.AppendSubscribe(nil, &s, c.version)); err != nil {
		return err
	}
	for {
		h, body, err := c.next()
		if err != nil {
			return fmt.Errorf("SUBACK: %w", err)
		}
		if h.Type != packet.SUBACK {
			continue
		}
		var ack packet.SubAck
		if err := packet.DecodeSubAck(&ack, h.Type, body, c.version); err != nil {
			return err
		}
		if len(ack.Reasons) != 1 || ack.Reasons[0].IsError() {
			return fmt.Errorf("subscribe %q refused: %v", filter, ack.Reasons)
		}
		return nil
	}
}

// disconnect sends DISCONNECT (best effort) and closes the connection.
func (c *client) disconnect() {
	c.nc.SetWriteDeadline(time.Now().Add(time.Second))
	c.nc.Write(packet.AppendDisconnect(nil, &packet.Disconnect{}, c.version))
	c.nc.Close()
}
