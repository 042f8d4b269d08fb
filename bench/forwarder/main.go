// Command forwarder is the floor issue 5 measures brokers' CPU per message against: "a bare Go
// forwarder with MQTT framing and no broker logic". bench/compare.sh runs it like the brokers
// (BROKERS="... forwarder"), pinned to the same core, with the same certificates.
//
// What it does, and nothing more:
//   - CONNECT: CONNACK success, whoever it is (no authentication, no client ids, no sessions:
//     a "persistent" session is not kept).
//   - SUBSCRIBE: the connection becomes a subscriber, then gets a SUBACK granting each filter
//     the QoS asked (at most 2). A subscriber receives every PUBLISH from every client,
//     whatever its topic (no topic matching, no retained messages), at the lower of the
//     publication's QoS and the highest it asked; an UNSUBSCRIBE of any filter ends that.
//   - PUBLISH: PUBACK or PUBREC to the publisher, and the packet to each subscriber, with the
//     subscriber's own packet identifier.
//   - PUBREL: PUBCOMP; a subscriber's PUBREC: PUBREL (none after a 5.0 failure code);
//     PINGREQ: PINGRESP; DISCONNECT: close. Acknowledgements of deliveries are read and
//     forgotten (nothing is kept in flight, Receive Maximum is not honoured).
//
// Writes are batched as a broker's would be, so that this is a floor and not a strawman:
//   - A connection's goroutine reads through a bufio.Reader (crypto/tls for TLS) and writes
//     the acknowledgements of what it read in one write, before it may wait for more.
//   - Deliveries are appended to the subscriber's buffer; the subscriber's writer goroutine
//     writes everything that piled up in one write. A subscriber more than maxPending bytes
//     behind is disconnected.
//
// All clients must use the same protocol version: a PUBLISH's bytes are forwarded as they
// came. It listens on loopback only: it lets every client in.
package main

import (
	"bufio"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"

	"vitalmq/internal/packet"
)

func main() {
	tcpAddr := flag.String("tcp", "", "plain MQTT listener `host:port` (loopback only); empty: none")
	tlsAddr := flag.String("tls", "", "MQTT over TLS listener `host:port` (loopback only); empty: none")
	mtlsAddr := flag.String("mtls", "", "MQTT over TLS listener that requires a client certificate `host:port`; empty: none")
	certFile := flag.String("cert", "", "server certificate PEM `file` (with --tls or --mtls)")
	keyFile := flag.String("key", "", "server private key PEM `file` (with --tls or --mtls)")
	clientCA := flag.String("client-ca", "", "PEM `file` of the CA client certificates must chain to (with --mtls)")
	flag.Parse()
	if err := run(*tcpAddr, *tlsAddr, *mtlsAddr, *certFile, *keyFile, *clientCA); err != nil {
		fmt.Fprintln(os.Stderr, "forwarder:", err)
		os.Exit(1)
	}
}

func run(tcpAddr, tlsAddr, mtlsAddr, certFile, keyFile, clientCA string) error {
	if tcpAddr == "" && tlsAddr == "" && mtlsAddr == "" {
		return errors.New("nothing to listen on: give --tcp, --tls and/or --mtls")
	}
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	listen := func(addr string, tc *tls.Config) error {
		if addr == "" {
			return nil
		}
		ln, err := listenLoopback(addr)
		if err != nil {
			return err
		}
		if tc != nil {
			ln = tls.NewListener(ln, tc)
		}
		lns = append(lns, ln)
		return nil
	}
	if err := listen(tcpAddr, nil); err != nil {
		return err
	}
	if tlsAddr != "" || mtlsAddr != "" {
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return fmt.Errorf("--cert/--key: %w", err)
		}
		// crypto/tls's defaults otherwise, as the Go brokers have them (session tickets on,
		// the post-quantum hybrid key exchange preferred).
		if err := listen(tlsAddr, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}); err != nil {
			return err
		}
		if mtlsAddr != "" {
			pem, err := os.ReadFile(clientCA)
			if err != nil {
				return fmt.Errorf("--client-ca: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return fmt.Errorf("--client-ca %s: no PEM certificate", clientCA)
			}
			if err := listen(mtlsAddr, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
				ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}); err != nil {
				return err
			}
		}
	}
	f := new(forwarder)
	errc := make(chan error, len(lns))
	for _, ln := range lns {
		go func() { errc <- f.serve(ln) }()
	}
	fmt.Printf("forwarder listening tcp=%q tls=%q mtls=%q\n", tcpAddr, tlsAddr, mtlsAddr)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	select {
	case <-sig:
		return nil
	case err := <-errc:
		return err
	}
}

// listenLoopback refuses anything but a loopback address: the forwarder lets everyone in.
func listenLoopback(addr string) (net.Listener, error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	if ip, err := netip.ParseAddr(host); err != nil || !ip.IsLoopback() {
		return nil, fmt.Errorf("%q: only loopback addresses (the forwarder lets every client in)", addr)
	}
	return net.Listen("tcp", addr)
}

// maxPacket bounds a packet's body: it is read into memory whole.
const maxPacket = 1 << 20

// maxPending bounds the deliveries waiting for a subscriber's writer.
const maxPending = 16 << 20

// forwarder holds the subscribers; everything else lives in each connection's goroutines.
type forwarder struct {
	mu   sync.Mutex                // serializes changes to subs
	subs atomic.Pointer[[]*client] // copied on change, read without a lock per publication
}

// serve accepts connections until ln fails, one goroutine each.
func (f *forwarder) serve(ln net.Listener) error {
	for {
		nc, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			c := &client{nc: nc, kick: make(chan struct{}, 1), done: make(chan struct{})}
			c.read(f) // its error ends the connection; the forwarder does not report it
			f.unsubscribe(c)
			c.mu.Lock()
			c.closed = true
			c.mu.Unlock()
			close(c.done) // ends the writer, if it runs
			nc.Close()
		}()
	}
}

func (f *forwarder) subscribe(c *client) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var subs []*client
	if p := f.subs.Load(); p != nil {
		subs = *p
	}
	for _, s := range subs {
		if s == c {
			return
		}
	}
	subs = append(subs[:len(subs):len(subs)], c)
	f.subs.Store(&subs)
}

func (f *forwarder) unsubscribe(c *client) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.subs.Load()
	if p == nil {
		return
	}
	subs := make([]*client, 0, len(*p))
	for _, s := range *p {
		if s != c {
			subs = append(subs, s)
		}
	}
	f.subs.Store(&subs)
}

// client is one connection.
type client struct {
	nc      net.Conn
	version byte   // from CONNECT; its reader's
	acks    []byte // its reader's: what it writes before it may wait

	mu     sync.Mutex // guards what follows; no lock is held while writing to the network
	maxQoS byte       // the highest QoS its subscriptions asked for
	out    []byte     // deliveries for the writer
	nextID uint16     // the last packet identifier given a delivery
	writer bool       // a writer goroutine runs
	closed bool       // the connection ended: nothing more is delivered
	kick   chan struct{}
	done   chan struct{} // closed when the connection ends
	spare  []byte        // the writer's: the buffer it last wrote, the next out
}

// flushAcks writes the acknowledgements of what was read, in one write.
func (c *client) flushAcks() error {
	if len(c.acks) == 0 {
		return nil
	}
	_, err := c.nc.Write(c.acks)
	c.acks = c.acks[:0]
	return err
}

// ack queues a four-byte acknowledgement (PUBACK, PUBREC, PUBREL, PUBCOMP): the short form,
// success with no properties, is valid in 3.1.1 and 5.0 alike.
func (c *client) ack(t packet.Type, flags byte, id []byte) {
	c.acks = append(c.acks, byte(t)<<4|flags, 2, id[0], id[1])
}

// read handles the connection's packets until it fails or disconnects.
func (c *client) read(f *forwarder) error {
	r := bufio.NewReader(c.nc)
	var body []byte
	for {
		if r.Buffered() == 0 { // the next read may wait
			if err := c.flushAcks(); err != nil {
				return err
			}
		}
		h, err := packet.ReadHeader(r)
		if err != nil {
			return err
		}
		if h.Remaining > maxPacket {
			return fmt.Errorf("%v of %d bytes: more than %d", h.Type, h.Remaining, maxPacket)
		}
		if c.version == 0 && h.Type != packet.CONNECT {
			return fmt.Errorf("%v before CONNECT", h.Type)
		}
		if cap(body) < h.Remaining {
			body = make([]byte, h.Remaining)
		}
		body = body[:h.Remaining]
		if r.Buffered() < h.Remaining {
			if err := c.flushAcks(); err != nil {
				return err
			}
		}
		if _, err := io.ReadFull(r, body); err != nil {
			return err
		}
		if err := c.handle(f, h, body); err != nil {
			return err
		}
	}
}

var errDisconnect = errors.New("disconnected")

func (c *client) handle(f *forwarder, h packet.FixedHeader, body []byte) error {
	switch h.Type {
	case packet.CONNECT:
		var cn packet.Connect
		if c.version != 0 {
			return errors.New("second CONNECT")
		}
		if err := packet.DecodeConnect(&cn, body); err != nil {
			return err
		}
		c.version = cn.Version
		c.acks = packet.AppendConnack(c.acks, &packet.Connack{Reason: packet.Success}, c.version)
	case packet.PUBLISH:
		return c.publish(f, h, body)
	case packet.PUBREL:
		if len(body) < 2 {
			return errors.New("short PUBREL")
		}
		c.ack(packet.PUBCOMP, 0, body)
	case packet.PUBREC: // a QoS 2 delivery's first acknowledgement
		if len(body) < 2 {
			return errors.New("short PUBREC")
		}
		if len(body) == 2 || body[2] < 0x80 { // a 5.0 reason code ≥ 0x80 ends the flow: no PUBREL
			c.ack(packet.PUBREL, 2, body)
		}
	case packet.PUBACK, packet.PUBCOMP:
	case packet.SUBSCRIBE:
		var s packet.Subscribe
		if err := packet.DecodeSubscribe(&s, body, c.version); err != nil {
			return err
		}
		ack := packet.SubAck{Type: packet.SUBACK, PacketID: s.PacketID}
		c.mu.Lock()
		for _, sub := range s.Subs {
			q := min(sub.QoS, 2)
			c.maxQoS = max(c.maxQoS, q)
			ack.Reasons = append(ack.Reasons, packet.ReasonCode(q))
		}
		start := !c.writer
		c.writer = true
		c.mu.Unlock()
		if start {
			go c.write()
		}
		f.subscribe(c) // before the SUBACK: what is published after it is delivered
		c.acks = packet.AppendSubAck(c.acks, &ack, c.version)
	case packet.UNSUBSCRIBE:
		var u packet.Unsubscribe
		if err := packet.DecodeUnsubscribe(&u, body, c.version); err != nil {
			return err
		}
		f.unsubscribe(c)
		ack := packet.SubAck{Type: packet.UNSUBACK, PacketID: u.PacketID}
		for range u.Filters {
			ack.Reasons = append(ack.Reasons, packet.Success)
		}
		c.acks = packet.AppendSubAck(c.acks, &ack, c.version)
	case packet.PINGREQ:
		c.acks = packet.AppendPing(c.acks, packet.PINGRESP)
	case packet.DISCONNECT:
		return errDisconnect
	default:
		return fmt.Errorf("unexpected %v", h.Type)
	}
	return nil
}

// publish acknowledges a PUBLISH and hands it to every subscriber.
func (c *client) publish(f *forwarder, h packet.FixedHeader, body []byte) error {
	qos := h.Flags >> 1 & 3
	if len(body) < 2 {
		return errors.New("short PUBLISH")
	}
	idAt := 2 + (int(body[0])<<8 | int(body[1])) // after the topic name
	if len(body) < idAt || qos > 2 || qos > 0 && len(body) < idAt+2 {
		return errors.New("malformed PUBLISH")
	}
	if qos > 0 {
		t := packet.PUBACK
		if qos == 2 {
			t = packet.PUBREC
		}
		c.ack(t, 0, body[idAt:idAt+2])
	}
	if subs := f.subs.Load(); subs != nil {
		for _, s := range *subs {
			s.deliver(qos, body, idAt)
		}
	}
	return nil
}

// deliver appends a publication's body to the subscriber's buffer as a PUBLISH at the lower
// of qos and the subscriber's QoS, with its own packet identifier (or none at QoS 0), and
// without RETAIN or DUP, and wakes its writer.
func (c *client) deliver(qos byte, body []byte, idAt int) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return
	}
	q := min(qos, c.maxQoS)
	rest := body[idAt:]
	if qos > 0 {
		rest = body[idAt+2:] // the publisher's identifier
	}
	n := idAt + len(rest)
	if q > 0 {
		n += 2
	}
	b := append(c.out, byte(packet.PUBLISH)<<4|q<<1)
	for { // Remaining Length, a Variable Byte Integer
		d := byte(n & 0x7F)
		n >>= 7
		if n == 0 {
			b = append(b, d)
			break
		}
		b = append(b, d|0x80)
	}
	b = append(b, body[:idAt]...)
	if q > 0 {
		c.nextID++
		if c.nextID == 0 {
			c.nextID = 1
		}
		b = append(b, byte(c.nextID>>8), byte(c.nextID))
	}
	c.out = append(b, rest...)
	if len(c.out) > maxPending { // it does not read: it is dropped, not waited for
		c.closed = true
		c.mu.Unlock()
		c.nc.Close()
		return
	}
	c.mu.Unlock()
	select {
	case c.kick <- struct{}{}:
	default: // the writer is already due
	}
}

// write is a subscriber's writer: it writes what deliver appended, all of it in one write,
// until the connection ends.
func (c *client) write() {
	for {
		select {
		case <-c.kick:
		case <-c.done:
			return
		}
		c.mu.Lock()
		buf := c.out
		if len(buf) == 0 { // written with the previous kick's
			c.mu.Unlock()
			continue
		}
		c.out = c.spare[:0] // never buf's array: that is written outside the lock
		c.mu.Unlock()
		if _, err := c.nc.Write(buf); err != nil {
			c.nc.Close() // its reader sees it and ends the connection
			return
		}
		c.spare = buf
	}
}
