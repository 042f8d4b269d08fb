package broker_test

import (
	"net"
	"net/url"
	"slices"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.golang/paho"
	mqtt "github.com/eclipse/paho.mqtt.golang"

	"vitalmq/internal/broker"
	"vitalmq/internal/packet"
)

// TestFtRetainedSetReplaceClear311 (paho.mqtt.golang): a retained message is stored and
// sent with RETAIN=1 to a new subscriber; a second one replaces it; an empty retained
// payload clears it; a live delivery to an existing subscriber has RETAIN=0.
// 3.1.1: [MQTT-3.3.1-5] [MQTT-3.3.1-7] [MQTT-3.3.1-8] [MQTT-3.3.1-9] [MQTT-3.3.1-10] [MQTT-3.3.1-11]
func TestFtRetainedSetReplaceClear311(t *testing.T) {
	s := startServer(t, broker.Config{})
	live, liveIn := ftPaho3(t, s.Addr, "ret-live", nil)
	ftWait(t, live.Subscribe("ret/t", 1, nil))
	pub, _ := ftPaho3(t, s.Addr, "ret-pub", nil)
	ftWait(t, pub.Publish("ret/t", 1, true, "first"))
	ftWait(t, pub.Publish("ret/t", 1, true, "second"))
	lm := liveIn.waitN(t, 2)
	for _, m := range lm {
		if m.Retained {
			t.Errorf("live delivery %q has RETAIN=1, want 0 [MQTT-3.3.1-9]", m.Payload)
		}
	}

	sub1, in1 := ftPaho3(t, s.Addr, "ret-new1", nil)
	ftWait(t, sub1.Subscribe("ret/#", 1, nil))
	got := in1.waitN(t, 1)
	if got[0].Payload != "second" || !got[0].Retained || got[0].Topic != "ret/t" {
		t.Fatalf("new subscriber got %+v, want the replacing retained message with RETAIN=1 [MQTT-3.3.1-8]", got[0])
	}

	// Clear: an empty retained payload. It is still delivered as normal to the live subscriber.
	ftWait(t, pub.Publish("ret/t", 1, true, ""))
	liveIn.waitN(t, 3)
	// A marker retained message on another topic proves the next subscriber got everything.
	ftWait(t, pub.Publish("ret/marker", 1, true, "m"))
	sub2, in2 := ftPaho3(t, s.Addr, "ret-new2", nil)
	ftWait(t, sub2.Subscribe("ret/#", 1, nil))
	in2.waitN(t, 1)
	time.Sleep(200 * time.Millisecond) // absence check: nothing else may follow the marker
	if g := in2.get(); len(g) != 1 || g[0].Topic != "ret/marker" {
		t.Fatalf("after clear, new subscriber got %+v, want only the marker [MQTT-3.3.1-10] [MQTT-3.3.1-11]", g)
	}
	checkAlive(t, s.Addr)
}

// TestFtRetainedSetReplaceClear5 is the same for 5.0 with the raw client, checking the
// RETAIN flag on the wire. [MQTT-3.3.1-5] [MQTT-3.3.1-6] [MQTT-3.3.1-7] [MQTT-3.3.1-12]
func TestFtRetainedSetReplaceClear5(t *testing.T) {
	const v = packet.Version5
	s := startServer(t, broker.Config{})
	live, _ := ftDial(t, s.Addr, v, "ret5-live", nil)
	live.ftSub(v, "ret/t", 1)
	pub, _ := ftDial(t, s.Addr, v, "ret5-pub", nil)
	pub.ftPub1(v, &packet.Publish{QoS: 1, Retain: true, Topic: "ret/t", PacketID: 1, Payload: []byte("first")})
	pub.ftPub1(v, &packet.Publish{QoS: 1, Retain: true, Topic: "ret/t", PacketID: 2, Payload: []byte("second")})
	for range 2 {
		m := live.ftReadPublish(v)
		if m.Retain {
			t.Errorf("live delivery %q RETAIN=1, want 0 (RAP=0) [MQTT-3.3.1-12]", m.Payload)
		}
		live.ftAck(v, packet.PUBACK, m.PacketID)
	}
	n1, _ := ftDial(t, s.Addr, v, "ret5-new1", nil)
	n1.ftSub(v, "ret/#", 1)
	m := n1.ftReadPublish(v)
	if string(m.Payload) != "second" || !m.Retain {
		t.Fatalf("new subscriber got %q retain=%v, want second with RETAIN=1 [MQTT-3.3.1-5]", m.Payload, m.Retain)
	}
	n1.ftAck(v, packet.PUBACK, m.PacketID)
	n1.expectSilence(200 * time.Millisecond) // the replaced message is gone

	pub.ftPub1(v, &packet.Publish{QoS: 1, Retain: true, Topic: "ret/t", PacketID: 3}) // clear
	if m := live.ftReadPublish(v); len(m.Payload) != 0 {
		t.Fatalf("live subscriber got %q for the clearing message", m.Payload)
	}
	n2, _ := ftDial(t, s.Addr, v, "ret5-new2", nil)
	n2.ftSub(v, "ret/#", 1)
	n2.expectSilence(300 * time.Millisecond) // [MQTT-3.3.1-6] [MQTT-3.3.1-7]
	checkAlive(t, s.Addr)
}

// TestFtRetainHandling5: Retain Handling 0 sends retained messages on every SUBSCRIBE,
// 1 only when the subscription did not exist, 2 never. [MQTT-3.3.1-9] [MQTT-3.3.1-10] [MQTT-3.3.1-11]
func TestFtRetainHandling5(t *testing.T) {
	const v = packet.Version5
	s := startServer(t, broker.Config{})
	pub, _ := ftDial(t, s.Addr, v, "rh-pub", nil)
	pub.ftPub1(v, &packet.Publish{QoS: 1, Retain: true, Topic: "rh/t", PacketID: 1, Payload: []byte("kept")})
	c, _ := ftDial(t, s.Addr, v, "rh-sub", nil)
	sub := func(filter string, rh byte) {
		t.Helper()
		rc := c.ftSubscribe(v, 9, packet.Properties{}, packet.Subscription{Filter: filter, QoS: 0, RetainHandling: rh})
		if len(rc) != 1 || rc[0] != 0 {
			t.Fatalf("SUBACK %v", rc)
		}
	}
	expectRetained := func(what string) {
		t.Helper()
		m := c.ftReadPublish(v)
		if string(m.Payload) != "kept" || !m.Retain {
			t.Fatalf("%s: got %q retain=%v, want the retained message", what, m.Payload, m.Retain)
		}
	}
	sub("rh/#", 0)
	expectRetained("RH 0 first subscribe")
	sub("rh/#", 0)
	expectRetained("RH 0 repeated subscribe [MQTT-3.3.1-9]")
	sub("rh/+", 1)
	expectRetained("RH 1 new subscription")
	sub("rh/+", 1)
	c.expectSilence(300 * time.Millisecond) // [MQTT-3.3.1-10]
	sub("rh/t", 2)
	c.expectSilence(300 * time.Millisecond) // [MQTT-3.3.1-11]
	checkAlive(t, s.Addr)
}

// TestFtRetainAsPublished5: with Retain As Published the RETAIN flag of a live delivery is
// the publisher's; without it, 0. [MQTT-3.3.1-12] [MQTT-3.3.1-13]
func TestFtRetainAsPublished5(t *testing.T) {
	const v = packet.Version5
	s := startServer(t, broker.Config{})
	rap, _ := ftDial(t, s.Addr, v, "rap-1", nil)
	if rc := rap.ftSubscribe(v, 1, packet.Properties{}, packet.Subscription{Filter: "rap/t", RetainAsPublished: true}); rc[0] != 0 {
		t.Fatalf("SUBACK %v", rc)
	}
	norap, _ := ftDial(t, s.Addr, v, "rap-0", nil)
	norap.ftSub(v, "rap/t", 0)
	pub, _ := ftDial(t, s.Addr, v, "rap-pub", nil)
	pub.ftPublish(v, &packet.Publish{Retain: true, Topic: "rap/t", Payload: []byte("r")})
	pub.ftPublish(v, &packet.Publish{Retain: false, Topic: "rap/t", Payload: []byte("n")})
	if m := rap.ftReadPublish(v); !m.Retain || string(m.Payload) != "r" {
		t.Errorf("RAP=1: %q retain=%v, want retain=1 [MQTT-3.3.1-13]", m.Payload, m.Retain)
	}
	if m := rap.ftReadPublish(v); m.Retain || string(m.Payload) != "n" {
		t.Errorf("RAP=1: %q retain=%v, want retain=0 [MQTT-3.3.1-13]", m.Payload, m.Retain)
	}
	for range 2 {
		if m := norap.ftReadPublish(v); m.Retain {
			t.Errorf("RAP=0: %q retain=1, want 0 [MQTT-3.3.1-12]", m.Payload)
		}
	}
	checkAlive(t, s.Addr)
}

// ftWillConnect adds a will to a CONNECT.
func ftWillConnect(topic, payload string, qos byte, retain bool) func(*packet.Connect) {
	return func(p *packet.Connect) {
		p.HasWill = true
		p.Will = packet.Will{Topic: topic, Payload: []byte(payload), QoS: qos, Retain: retain}
	}
}

// TestFtWillOnAbnormalClose: closing TCP without DISCONNECT publishes the will.
// [MQTT-3.1.2-8] (3.1.1 [MQTT-3.1.2-8])
func TestFtWillOnAbnormalClose(t *testing.T) {
	ftVersions(t, func(t *testing.T, v byte) {
		s := startServer(t, broker.Config{})
		sub, _ := ftDial(t, s.Addr, v, "will-sub", nil)
		sub.ftSub(v, "will/#", 1)
		c, _ := ftDial(t, s.Addr, v, "will-client", ftWillConnect("will/gone", "bye", 1, false))
		c.nc.Close()
		m := sub.ftReadPublish(v)
		if m.Topic != "will/gone" || string(m.Payload) != "bye" || m.QoS != 1 || m.Retain {
			t.Fatalf("will %+v", m)
		}
		checkAlive(t, s.Addr)
	})
}

// TestFtWillOnAbnormalClosePaho3: a paho.mqtt.golang client with a will whose socket is
// dropped under it; the will reaches another paho client. [MQTT-3.1.2-8 3.1.1]
func TestFtWillOnAbnormalClosePaho3(t *testing.T) {
	s := startServer(t, broker.Config{})
	sub, in := ftPaho3(t, s.Addr, "pw-sub", nil)
	ftWait(t, sub.Subscribe("pw/#", 1, nil))
	var (
		mu sync.Mutex
		nc net.Conn
	)
	ftPaho3(t, s.Addr, "pw-client", func(o *mqtt.ClientOptions) {
		o.SetWill("pw/paho", "paho gone", 1, false)
		o.SetCustomOpenConnectionFn(func(u *url.URL, _ mqtt.ClientOptions) (net.Conn, error) {
			c, err := net.Dial("tcp", u.Host)
			mu.Lock()
			nc = c
			mu.Unlock()
			return c, err
		})
	})
	mu.Lock()
	nc.Close()
	mu.Unlock()
	got := in.waitN(t, 1)
	if got[0].Topic != "pw/paho" || got[0].Payload != "paho gone" || got[0].QoS != 1 {
		t.Fatalf("will %+v", got[0])
	}
	checkAlive(t, s.Addr)
}

// TestFtWillNotOnNormalDisconnect: DISCONNECT (0x00) discards the will.
// [MQTT-3.1.2-10] [MQTT-3.14.4-3] (3.1.1 [MQTT-3.1.2-10])
func TestFtWillNotOnNormalDisconnect(t *testing.T) {
	ftVersions(t, func(t *testing.T, v byte) {
		s := startServer(t, broker.Config{})
		sub, _ := ftDial(t, s.Addr, v, "nw-sub", nil)
		sub.ftSub(v, "nw/#", 1)
		c, _ := ftDial(t, s.Addr, v, "nw-client", ftWillConnect("nw/gone", "bye", 1, false))
		c.ftDisconnect(v)
		eventually(t, 2*time.Second, "client detached", func() bool { return s.Stats().Connected == 1 })
		sub.expectSilence(300 * time.Millisecond)
		// A marker published now must be the first thing the subscriber receives.
		pub, _ := ftDial(t, s.Addr, v, "nw-pub", nil)
		pub.ftPub1(v, &packet.Publish{QoS: 1, Topic: "nw/marker", PacketID: 1, Payload: []byte("m")})
		if m := sub.ftReadPublish(v); m.Topic != "nw/marker" {
			t.Fatalf("got %s=%q, want only the marker: the will was published after a normal DISCONNECT", m.Topic, m.Payload)
		}
		checkAlive(t, s.Addr)
	})
}

// TestFtWillOnDisconnectWithWill5: DISCONNECT with reason 0x04 publishes the will. §3.14.2.1 [MQTT-3.14.4-3]
func TestFtWillOnDisconnectWithWill5(t *testing.T) {
	const v = packet.Version5
	s := startServer(t, broker.Config{})
	sub, _ := ftDial(t, s.Addr, v, "w4-sub", nil)
	sub.ftSub(v, "w4/#", 1)
	c, _ := ftDial(t, s.Addr, v, "w4-client", ftWillConnect("w4/gone", "bye", 1, false))
	c.write(packet.AppendDisconnect(nil, &packet.Disconnect{Type: packet.DISCONNECT, Reason: packet.DisconnectWithWill}, v))
	c.expectClosed(2 * time.Second)
	m := sub.ftReadPublish(v)
	if m.Topic != "w4/gone" || string(m.Payload) != "bye" {
		t.Fatalf("will %+v", m)
	}
	checkAlive(t, s.Addr)
}

// TestFtWillDelay5: with Will Delay Interval 1 s (session expiry 10 s) the will is not
// published at the close, and is published once the delay passed. [MQTT-3.1.3-9] §3.1.3.2.2
func TestFtWillDelay5(t *testing.T) {
	const v = packet.Version5
	s := startServer(t, broker.Config{})
	sub, _ := ftDial(t, s.Addr, v, "wd-sub", nil)
	sub.ftSub(v, "wd/#", 1)
	c, _ := ftDial(t, s.Addr, v, "wd-client", func(p *packet.Connect) {
		ftWillConnect("wd/gone", "late", 1, false)(p)
		p.Will.Props.WillDelay = 1
		p.Will.Props.Set(packet.PropWillDelay)
		ftPersist(p, 10)
	})
	c.nc.Close()
	closed := time.Now()
	sub.expectSilence(500 * time.Millisecond)
	m := sub.ftReadPublish(v)
	if m.Topic != "wd/gone" || string(m.Payload) != "late" {
		t.Fatalf("will %+v", m)
	}
	if d := time.Since(closed); d < time.Second {
		t.Fatalf("will published %v after the close, before its 1 s delay [MQTT-3.1.3-9]", d)
	}
	checkAlive(t, s.Addr)
}

// TestFtWillDelayCancelledByResume5: the session resumes before the will delay passed:
// the will is never published. [MQTT-3.1.3-9]
func TestFtWillDelayCancelledByResume5(t *testing.T) {
	const v = packet.Version5
	s := startServer(t, broker.Config{})
	sub, _ := ftDial(t, s.Addr, v, "wr-sub", nil)
	sub.ftSub(v, "wr/#", 1)
	mk := func(p *packet.Connect) {
		p.HasWill = true
		p.Will = packet.Will{Topic: "wr/gone", Payload: []byte("late"), QoS: 1}
		p.Will.Props.WillDelay = 1
		p.Will.Props.Set(packet.PropWillDelay)
		ftPersist(p, 10)
		p.CleanStart = false
	}
	c, _ := ftDial(t, s.Addr, v, "wr-client", mk)
	c.nc.Close()
	eventually(t, 2*time.Second, "client detached", func() bool { return s.Stats().Connected == 1 })
	c2, ack := ftDial(t, s.Addr, v, "wr-client", func(p *packet.Connect) { ftPersist(p, 10); p.CleanStart = false })
	if !ack.SessionPresent {
		t.Fatal("session not present on resume")
	}
	sub.expectSilence(1500 * time.Millisecond) // past the delay
	c2.ftDisconnect(v)
	checkAlive(t, s.Addr)
}

// TestFtWillPropertiesPassThrough5: will properties (payload format, content type,
// response topic, correlation data, user properties, message expiry) reach the
// subscriber. §3.1.3.2 [MQTT-3.3.2-4] [MQTT-3.3.2-15] [MQTT-3.3.2-16] [MQTT-3.3.2-17] [MQTT-3.3.2-20]
func TestFtWillPropertiesPassThrough5(t *testing.T) {
	s := startServer(t, broker.Config{})
	sub, in, _ := ftPaho5(t, s.Addr, "wp-sub", nil, nil)
	ftPahoSub(t, sub, nil, paho.SubscribeOptions{Topic: "wp/#", QoS: 1})
	// The will is sent raw: paho.golang v0.23 packs will properties as CONNECT properties
	// and drops payload format, expiry, content type, response topic and correlation data.
	c, _ := ftDial(t, s.Addr, packet.Version5, "wp-client", func(p *packet.Connect) {
		p.HasWill = true
		p.Will = packet.Will{Topic: "wp/gone", Payload: []byte("bye"), QoS: 1}
		wp := &p.Will.Props
		wp.PayloadFormat, wp.MessageExpiry, wp.ContentType, wp.ResponseTopic, wp.CorrelationData = 1, 100, "text/plain", "wp/resp", []byte{1, 2, 3}
		for _, id := range []packet.PropID{packet.PropPayloadFormat, packet.PropMessageExpiry, packet.PropContentType, packet.PropResponseTopic, packet.PropCorrelationData} {
			wp.Set(id)
		}
		wp.User = []packet.UserProperty{{Key: "ward", Value: "7"}, {Key: "ward", Value: "8"}, {Key: "bed", Value: "3"}}
	})
	c.nc.Close() // no DISCONNECT
	m := in.waitN(t, 1)[0]
	p := m.Properties
	if m.Topic != "wp/gone" || string(m.Payload) != "bye" || p == nil {
		t.Fatalf("will %v", m)
	}
	if p.PayloadFormat == nil || *p.PayloadFormat != 1 || p.ContentType != "text/plain" || p.ResponseTopic != "wp/resp" ||
		!slices.Equal(p.CorrelationData, []byte{1, 2, 3}) || p.MessageExpiry == nil || *p.MessageExpiry == 0 || *p.MessageExpiry > 100 {
		t.Errorf("will properties %+v", p)
	}
	want := paho.UserProperties{{Key: "ward", Value: "7"}, {Key: "ward", Value: "8"}, {Key: "bed", Value: "3"}}
	if !slices.Equal(p.User, want) {
		t.Errorf("user properties %v, want %v in order [MQTT-3.3.2-17] [MQTT-3.3.2-18]", p.User, want)
	}
	checkAlive(t, s.Addr)
}

// TestFtWillRetain: a will with Will Retain=1 is stored as a retained message.
// [MQTT-3.1.2-17] (3.1.1 [MQTT-3.1.2-17])
func TestFtWillRetain(t *testing.T) {
	ftVersions(t, func(t *testing.T, v byte) {
		s := startServer(t, broker.Config{})
		live, _ := ftDial(t, s.Addr, v, "wret-live", nil)
		live.ftSub(v, "wret/#", 1)
		c, _ := ftDial(t, s.Addr, v, "wret-client", ftWillConnect("wret/status", "offline", 1, true))
		c.nc.Close()
		live.ftReadPublish(v) // the live delivery
		sub, _ := ftDial(t, s.Addr, v, "wret-sub", nil)
		sub.ftSub(v, "wret/#", 1)
		m := sub.ftReadPublish(v)
		if m.Topic != "wret/status" || string(m.Payload) != "offline" || !m.Retain {
			t.Fatalf("retained will %+v, want RETAIN=1", m)
		}
		checkAlive(t, s.Addr)
	})
}
