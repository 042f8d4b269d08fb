package broker_test

// The in-process API: Server.Subscribe and Server.Publish.

import (
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.golang/paho"

	"vitalmq/internal/broker"
	"vitalmq/internal/packet"
	"vitalmq/internal/session"
)

func ftSubOpt(topic string, qos byte) paho.SubscribeOptions {
	return paho.SubscribeOptions{Topic: topic, QoS: qos}
}

// ftInprocRecorder is an in-process handler that records what it gets.
type ftInprocRecorder struct {
	mu   sync.Mutex
	msgs []*session.Message
}

func (r *ftInprocRecorder) fn(m *session.Message) {
	r.mu.Lock()
	r.msgs = append(r.msgs, m)
	r.mu.Unlock()
}

func (r *ftInprocRecorder) get() []*session.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]*session.Message(nil), r.msgs...)
}

// TestFtInprocSubscribe: Server.Subscribe receives messages published by network clients
// (3.1.1 and 5.0) on matching topics, with topic, payload, QoS and properties; after
// stop() it receives nothing more.
func TestFtInprocSubscribe(t *testing.T) {
	s := startServer(t, broker.Config{})
	rec := &ftInprocRecorder{}
	stop, err := s.Subscribe("ip/+/vitals", 16, rec.fn)
	if err != nil {
		t.Fatal(err)
	}
	// A second in-process subscription on everything: the marker that routing happened.
	all := &ftInprocRecorder{}
	stopAll, err := s.Subscribe("ip/#", 16, all.fn)
	if err != nil {
		t.Fatal(err)
	}
	defer stopAll()

	p3, _ := ftPaho3(t, s.Addr, "ip-pub3", nil)
	ftWait(t, p3.Publish("ip/bed1/vitals", 1, false, "hr=72"))
	p5, _, _ := ftPaho5(t, s.Addr, "ip-pub5", nil, nil)
	if _, err := p5.Publish(ftCtx(t), &paho.Publish{Topic: "ip/bed2/vitals", QoS: 2, Payload: []byte("spo2=98"),
		Properties: &paho.PublishProperties{ContentType: "text/plain", User: paho.UserProperties{{Key: "k", Value: "v"}}}}); err != nil {
		t.Fatal(err)
	}
	ftWait(t, p3.Publish("ip/bed1/alarms", 0, false, "not matching"))
	eventually(t, 5*time.Second, "in-process messages", func() bool { return len(rec.get()) >= 2 && len(all.get()) >= 3 })
	got := rec.get()
	if len(got) != 2 {
		t.Fatalf("got %d messages, want 2", len(got))
	}
	if got[0].Topic != "ip/bed1/vitals" || string(got[0].Payload) != "hr=72" || got[0].QoS != 1 {
		t.Errorf("first %+v", got[0])
	}
	if got[1].Topic != "ip/bed2/vitals" || string(got[1].Payload) != "spo2=98" || got[1].QoS != 2 ||
		got[1].Props.ContentType != "text/plain" || len(got[1].Props.User) != 1 {
		t.Errorf("second %+v", got[1])
	}

	stop()
	stop() // idempotent
	ftWait(t, p3.Publish("ip/bed1/vitals", 1, false, "after stop"))
	eventually(t, 5*time.Second, "marker", func() bool { return len(all.get()) >= 4 })
	if n := len(rec.get()); n != 2 {
		t.Fatalf("after stop() the handler got %d messages, want 2", n)
	}
	checkAlive(t, s.Addr)
}

// TestFtInprocSubscribeErrors: an invalid filter or a non-positive queue is refused.
func TestFtInprocSubscribeErrors(t *testing.T) {
	s := startServer(t, broker.Config{})
	if _, err := s.Subscribe("a/#/b", 1, func(*session.Message) {}); err == nil {
		t.Error("filter a/#/b accepted [MQTT-4.7.1-1]")
	}
	if _, err := s.Subscribe("a/b", 0, func(*session.Message) {}); err == nil {
		t.Error("queue 0 accepted")
	}
}

// TestFtInprocStopWaits: stop() waits for a running handler to return (documented:
// "stop removes the subscription and waits for fn to return").
func TestFtInprocStopWaits(t *testing.T) {
	s := startServer(t, broker.Config{})
	entered := make(chan struct{})
	release := make(chan struct{})
	stop, err := s.Subscribe("sw/#", 4, func(*session.Message) {
		close(entered)
		<-release
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Publish(&session.Message{Topic: "sw/x", Payload: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	<-entered
	stopped := make(chan struct{})
	go func() { stop(); close(stopped) }()
	select {
	case <-stopped:
		close(release)
		t.Fatal("stop() returned while the handler was still running")
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("stop() did not return after the handler did")
	}
}

// TestFtInprocPublish: Server.Publish reaches network subscribers in 3.1.1 and 5.0 at
// min(message QoS, granted QoS) with its properties; a retained one is stored and sent to
// later subscribers with RETAIN=1.
func TestFtInprocPublish(t *testing.T) {
	s := startServer(t, broker.Config{})
	c3, _ := ftDial(t, s.Addr, packet.Version311, "ipp-3", nil)
	c3.ftSub(packet.Version311, "ipp/#", 2)
	sub5, in5, _ := ftPaho5(t, s.Addr, "ipp-5", nil, nil)
	ftPahoSub(t, sub5, nil, ftSubOpt("ipp/#", 1))

	m := &session.Message{Topic: "ipp/alarm", Payload: []byte("asystole"), QoS: 2, Props: &packet.Properties{}}
	m.Props.ContentType = "text/plain"
	m.Props.Set(packet.PropContentType)
	if err := s.Publish(m); err != nil {
		t.Fatal(err)
	}
	got := c3.ftReadPublish(packet.Version311)
	if got.Topic != "ipp/alarm" || string(got.Payload) != "asystole" || got.QoS != 2 {
		t.Fatalf("3.1.1 subscriber got %+v", got)
	}
	p := in5.waitN(t, 1)[0]
	if p.Topic != "ipp/alarm" || p.QoS != 1 || p.Properties == nil || p.Properties.ContentType != "text/plain" {
		t.Fatalf("5.0 subscriber got %v", p)
	}

	if err := s.Publish(&session.Message{Topic: "ipp/state", Payload: []byte("armed"), QoS: 1, Retain: true}); err != nil {
		t.Fatal(err)
	}
	late, _ := ftDial(t, s.Addr, packet.Version5, "ipp-late", nil)
	late.ftSub(packet.Version5, "ipp/state", 1)
	if r := late.ftReadPublish(packet.Version5); string(r.Payload) != "armed" || !r.Retain {
		t.Fatalf("late subscriber got %+v, want the retained message", r)
	}
	if err := s.Publish(&session.Message{Topic: "bad/#", Payload: []byte("x")}); err == nil {
		t.Error("Publish to a topic with a wildcard accepted [MQTT-3.3.2-2]")
	}
	checkAlive(t, s.Addr)
}
