package broker_test

// Helpers for the feature tests (features_*_test.go, mosquitto_test.go, inproc_test.go).
// Every name is prefixed with ft so that it cannot clash with the attack tests' fixture.

import (
	"context"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.golang/paho"
	mqtt "github.com/eclipse/paho.mqtt.golang"

	"vitalmq/internal/packet"
)

// ftSplit splits a whole packet read by rawConn.readPacket into its type, flags and body.
func ftSplit(t testing.TB, b []byte) (packet.Type, byte, []byte) {
	t.Helper()
	i := 1
	for ; i < len(b) && i < 5; i++ {
		if b[i]&0x80 == 0 {
			break
		}
	}
	if i >= len(b) {
		t.Fatalf("short packet % x", b)
	}
	return packet.Type(b[0] >> 4), b[0] & 0x0f, b[i+1:]
}

// ftRead reads any one packet within d.
func (c *rawConn) ftRead(d time.Duration) []byte {
	c.t.Helper()
	b, err := c.readPacket(d)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return b
}

// ftConnect sends a CONNECT and returns the decoded CONNACK, whatever its reason.
func (c *rawConn) ftConnect(p *packet.Connect) *packet.Connack {
	c.t.Helper()
	c.write(packet.AppendConnect(nil, p))
	b := c.expectType(packet.CONNACK)
	_, _, body := ftSplit(c.t, b)
	var ack packet.Connack
	if err := packet.DecodeConnack(&ack, body, p.Version); err != nil {
		c.t.Fatalf("decode CONNACK % x: %v", b, err)
	}
	return &ack
}

// ftDial connects a raw client: clean start, keep alive 60, then mod. It fails the test
// unless the CONNACK is a success.
func ftDial(t testing.TB, addr string, version byte, id string, mod func(*packet.Connect)) (*rawConn, *packet.Connack) {
	t.Helper()
	c := dialRaw(t, addr)
	p := &packet.Connect{Version: version, CleanStart: true, KeepAlive: 60, ClientID: id}
	if mod != nil {
		mod(p)
	}
	ack := c.ftConnect(p)
	if ack.Reason != packet.Success {
		t.Fatalf("CONNACK for %q: reason %#x, want success", id, byte(ack.Reason))
	}
	return c, ack
}

// ftSubscribe sends SUBSCRIBE and returns the SUBACK reason codes.
func (c *rawConn) ftSubscribe(version byte, id uint16, props packet.Properties, subs ...packet.Subscription) []packet.ReasonCode {
	c.t.Helper()
	c.write(packet.AppendSubscribe(nil, &packet.Subscribe{PacketID: id, Props: props, Subs: subs}, version))
	b := c.expectType(packet.SUBACK)
	_, _, body := ftSplit(c.t, b)
	var sa packet.SubAck
	if err := packet.DecodeSubAck(&sa, packet.SUBACK, body, version); err != nil {
		c.t.Fatalf("decode SUBACK % x: %v", b, err)
	}
	if sa.PacketID != id {
		c.t.Fatalf("SUBACK id %d, want %d [MQTT-3.8.4-2]", sa.PacketID, id)
	}
	return sa.Reasons
}

// ftSub subscribes to one filter at qos and fails unless it is granted.
func (c *rawConn) ftSub(version byte, filter string, qos byte) {
	c.t.Helper()
	rc := c.ftSubscribe(version, 1, packet.Properties{}, packet.Subscription{Filter: filter, QoS: qos})
	if len(rc) != 1 || rc[0] != packet.ReasonCode(qos) {
		c.t.Fatalf("SUBACK %v for %s, want granted QoS %d", rc, filter, qos)
	}
}

// ftPublish writes a PUBLISH.
func (c *rawConn) ftPublish(version byte, p *packet.Publish) {
	c.t.Helper()
	c.write(packet.AppendPublish(nil, p, version))
}

// ftReadPublish reads one packet, which must be a PUBLISH, and decodes it.
func (c *rawConn) ftReadPublish(version byte) *packet.Publish {
	c.t.Helper()
	b := c.expectType(packet.PUBLISH)
	_, flags, body := ftSplit(c.t, b)
	var p packet.Publish
	if err := packet.DecodePublish(&p, flags, body, version); err != nil {
		c.t.Fatalf("decode PUBLISH % x: %v", b, err)
	}
	return &p
}

// ftReadAck reads one packet of type typ (PUBACK..PUBCOMP) and decodes it.
func (c *rawConn) ftReadAck(version byte, typ packet.Type) *packet.Ack {
	c.t.Helper()
	b := c.expectType(typ)
	_, _, body := ftSplit(c.t, b)
	var a packet.Ack
	if err := packet.DecodeAck(&a, typ, body, version); err != nil {
		c.t.Fatalf("decode %v % x: %v", typ, b, err)
	}
	return &a
}

// ftReadDisconnect reads one packet, which must be a DISCONNECT (5.0), and decodes it.
func (c *rawConn) ftReadDisconnect() *packet.Disconnect {
	c.t.Helper()
	b := c.expectType(packet.DISCONNECT)
	_, _, body := ftSplit(c.t, b)
	var d packet.Disconnect
	if err := packet.DecodeDisconnect(&d, packet.DISCONNECT, body, packet.Version5); err != nil {
		c.t.Fatalf("decode DISCONNECT % x: %v", b, err)
	}
	return &d
}

// ftAck sends a PUBACK/PUBREC/PUBREL/PUBCOMP.
func (c *rawConn) ftAck(version byte, typ packet.Type, id uint16) {
	c.t.Helper()
	c.write(packet.AppendAck(nil, &packet.Ack{Type: typ, PacketID: id}, version))
}

// ftPub1 publishes at QoS 1 with packet id and waits for the PUBACK; it returns its reason.
func (c *rawConn) ftPub1(version byte, p *packet.Publish) packet.ReasonCode {
	c.t.Helper()
	c.ftPublish(version, p)
	a := c.ftReadAck(version, packet.PUBACK)
	if a.PacketID != p.PacketID {
		c.t.Fatalf("PUBACK id %d, want %d", a.PacketID, p.PacketID)
	}
	return a.Reason
}

// ftDisconnect sends a normal DISCONNECT and waits for the close.
func (c *rawConn) ftDisconnect(version byte) {
	c.t.Helper()
	c.write(packet.AppendDisconnect(nil, &packet.Disconnect{Type: packet.DISCONNECT}, version))
	c.expectClosed(2 * time.Second)
}

// ftInbox collects the PUBLISH packets a paho.golang client receives.
type ftInbox struct {
	mu   sync.Mutex
	msgs []*paho.Publish
}

func (in *ftInbox) add(p *paho.Publish) {
	in.mu.Lock()
	in.msgs = append(in.msgs, p)
	in.mu.Unlock()
}

func (in *ftInbox) get() []*paho.Publish {
	in.mu.Lock()
	defer in.mu.Unlock()
	return slices.Clone(in.msgs)
}

func (in *ftInbox) waitN(t testing.TB, n int) []*paho.Publish {
	t.Helper()
	eventually(t, 5*time.Second, "paho messages", func() bool { return len(in.get()) >= n })
	return in.get()
}

// ftPaho5 connects a paho.golang (MQTT 5) client. cp is the CONNECT to send (ClientID,
// KeepAlive 30 and CleanStart are filled in when zero); it returns the client, its
// inbox and the CONNACK. The client disconnects at the end of the test.
func ftPaho5(t testing.TB, addr, id string, cp *paho.Connect, cfg func(*paho.ClientConfig)) (*paho.Client, *ftInbox, *paho.Connack) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	in := &ftInbox{}
	cc := paho.ClientConfig{
		ClientID: id,
		Conn:     nc,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){
			func(pr paho.PublishReceived) (bool, error) { in.add(pr.Packet); return true, nil },
		},
	}
	if cfg != nil {
		cfg(&cc)
	}
	c := paho.NewClient(cc)
	if cp == nil {
		cp = &paho.Connect{CleanStart: true}
	}
	if cp.ClientID == "" {
		cp.ClientID = id
	}
	if cp.KeepAlive == 0 {
		cp.KeepAlive = 30
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ack, err := c.Connect(ctx, cp)
	if err != nil {
		nc.Close()
		t.Fatalf("paho connect %q: %v (connack %v)", id, err, ack)
	}
	t.Cleanup(func() {
		c.Disconnect(&paho.Disconnect{ReasonCode: 0})
		nc.Close()
		select {
		case <-c.Done():
		case <-time.After(2 * time.Second):
		}
	})
	return c, in, ack
}

// ftCtx returns a context that ends with the test or after 5 s.
func ftCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// ftPahoSub subscribes a paho.golang client and fails unless every filter is granted.
func ftPahoSub(t testing.TB, c *paho.Client, props *paho.SubscribeProperties, subs ...paho.SubscribeOptions) {
	t.Helper()
	sa, err := c.Subscribe(ftCtx(t), &paho.Subscribe{Properties: props, Subscriptions: subs})
	if err != nil {
		t.Fatalf("paho subscribe: %v", err)
	}
	for i, rc := range sa.Reasons {
		if rc != subs[i].QoS {
			t.Fatalf("SUBACK reason %#x for %s, want %d", rc, subs[i].Topic, subs[i].QoS)
		}
	}
}

// ftPaho3Msg is a message received by a paho.mqtt.golang client.
type ftPaho3Msg struct {
	Topic     string
	Payload   string
	QoS       byte
	Retained  bool
	Duplicate bool
}

// ftPaho3Inbox collects what a paho.mqtt.golang client receives.
type ftPaho3Inbox struct {
	mu   sync.Mutex
	msgs []ftPaho3Msg
}

func (in *ftPaho3Inbox) handler(_ mqtt.Client, m mqtt.Message) {
	in.mu.Lock()
	in.msgs = append(in.msgs, ftPaho3Msg{m.Topic(), string(m.Payload()), m.Qos(), m.Retained(), m.Duplicate()})
	in.mu.Unlock()
}

func (in *ftPaho3Inbox) get() []ftPaho3Msg {
	in.mu.Lock()
	defer in.mu.Unlock()
	return slices.Clone(in.msgs)
}

func (in *ftPaho3Inbox) waitN(t testing.TB, n int) []ftPaho3Msg {
	t.Helper()
	eventually(t, 5*time.Second, "paho 3.1.1 messages", func() bool { return len(in.get()) >= n })
	return in.get()
}

// ftPaho3 connects a paho.mqtt.golang (MQTT 3.1.1) client with clean session, no
// auto-reconnect and ordered delivery; mod adjusts the options. It disconnects at the
// end of the test.
func ftPaho3(t testing.TB, addr, id string, mod func(*mqtt.ClientOptions)) (mqtt.Client, *ftPaho3Inbox) {
	t.Helper()
	in := &ftPaho3Inbox{}
	o := mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(id).SetProtocolVersion(4).
		SetCleanSession(true).SetAutoReconnect(false).SetConnectRetry(false).SetOrderMatters(true).
		SetKeepAlive(30 * time.Second).SetDefaultPublishHandler(in.handler).SetConnectTimeout(5 * time.Second)
	if mod != nil {
		mod(o)
	}
	c := mqtt.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("paho 3.1.1 connect %q: %v", id, tok.Error())
	}
	t.Cleanup(func() {
		if c.IsConnected() {
			c.Disconnect(50)
		}
	})
	return c, in
}

// ftWait waits for a paho.mqtt.golang token and fails on error.
func ftWait(t testing.TB, tok mqtt.Token) {
	t.Helper()
	if !tok.WaitTimeout(5 * time.Second) {
		t.Fatal("paho 3.1.1: timed out")
	}
	if err := tok.Error(); err != nil {
		t.Fatalf("paho 3.1.1: %v", err)
	}
}

// ftVersions runs f as a subtest for 3.1.1 and for 5.0.
func ftVersions(t *testing.T, f func(t *testing.T, v byte)) {
	for _, v := range []byte{packet.Version311, packet.Version5} {
		name := "v311"
		if v == packet.Version5 {
			name = "v5"
		}
		t.Run(name, func(t *testing.T) { f(t, v) })
	}
}

// ftPersist makes a CONNECT ask for a session that outlives the connection: 5.0 keeps
// Clean Start as set and adds Session Expiry Interval expiry; 3.1.1 clears Clean Session.
func ftPersist(p *packet.Connect, expiry uint32) {
	if p.Version == packet.Version5 {
		p.Props.SessionExpiry = expiry
		p.Props.Set(packet.PropSessionExpiry)
		return
	}
	p.CleanStart = false
}
