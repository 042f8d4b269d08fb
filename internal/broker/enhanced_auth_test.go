package broker_test

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"vitalmq/internal/broker"
	"vitalmq/internal/packet"
)

// challengeAuth is a test enhanced-authentication method "TEST-CR": the server answers
// the client's first data with the challenge "nonce"; the client must reply "nonce:secret".
type challengeAuth struct{}

func (challengeAuth) Authenticate(context.Context, *broker.ConnectRequest) (*broker.Client, error) {
	return nil, packet.BadUserNameOrPassword // no password logins in this test
}

func (challengeAuth) StartAuth(_ context.Context, req *broker.ConnectRequest) (broker.AuthExchange, error) {
	if req.AuthMethod != "TEST-CR" {
		return nil, errors.New("unsupported")
	}
	return &challengeExchange{id: req.ClientID}, nil
}

type challengeExchange struct {
	id     string
	rounds int
}

func (e *challengeExchange) Step(_ context.Context, data []byte) ([]byte, *broker.Client, error) {
	e.rounds++
	switch {
	case e.rounds == 1:
		return []byte("nonce"), nil, nil
	case bytes.Equal(data, []byte("nonce:secret")):
		return []byte("welcome"), &broker.Client{ClientID: e.id, Username: "cr-user"}, nil
	case bytes.Equal(data, []byte("again")):
		return []byte("nonce"), nil, nil // keeps asking: for the round cap
	default:
		return nil, nil, packet.NotAuthorized
	}
}

func authPacket(data string) []byte {
	a := packet.Disconnect{Type: packet.AUTH, Reason: packet.ContinueAuthentication}
	a.Props.AuthMethod, a.Props.AuthData = "TEST-CR", []byte(data)
	a.Props.Set(packet.PropAuthMethod)
	a.Props.Set(packet.PropAuthData)
	return packet.AppendDisconnect(nil, &a, packet.Version5)
}

func crConnect() *packet.Connect {
	p := &packet.Connect{Version: packet.Version5, CleanStart: true, KeepAlive: 30, ClientID: "cr1"}
	p.Props.AuthMethod = "TEST-CR"
	p.Props.Set(packet.PropAuthMethod)
	return p
}

// §4.12: CONNECT with a method → AUTH 0x18 challenge → AUTH 0x18 response → CONNACK with the method.
func TestEnhancedAuthExchange(t *testing.T) {
	s := startServer(t, broker.Config{Authenticator: challengeAuth{}})
	c := dialRaw(t, s.Addr)
	c.write(packet.AppendConnect(nil, crConnect()))
	got := c.expectType(packet.AUTH)
	var a packet.Disconnect
	if err := packet.DecodeDisconnect(&a, packet.AUTH, got[2:], packet.Version5); err != nil {
		t.Fatal(err)
	}
	if a.Reason != packet.ContinueAuthentication || a.Props.AuthMethod != "TEST-CR" || string(a.Props.AuthData) != "nonce" {
		t.Fatalf("AUTH = %+v, want continue with the challenge", a)
	}
	c.write(authPacket("nonce:secret"))
	ack := c.expectType(packet.CONNACK)
	var ca packet.Connack
	if err := packet.DecodeConnack(&ca, ack[2:], packet.Version5); err != nil {
		t.Fatal(err)
	}
	if ca.Reason != packet.Success || ca.Props.AuthMethod != "TEST-CR" || string(ca.Props.AuthData) != "welcome" {
		t.Fatalf("CONNACK = %+v, want success with method and data", ca)
	}
	c.send("C0 00")
	c.expect("D0 00")
}

func TestEnhancedAuthWrongResponse(t *testing.T) {
	s := startServer(t, broker.Config{Authenticator: challengeAuth{}})
	c := dialRaw(t, s.Addr)
	c.write(packet.AppendConnect(nil, crConnect()))
	c.expectType(packet.AUTH)
	c.write(authPacket("guess"))
	c.expectClosed(2*time.Second, "20 03 00 87 00")
}

// CASES T83: endless AUTH rounds end with a refusal, not a loop.
func TestEnhancedAuthRoundCap(t *testing.T) {
	s := startServer(t, broker.Config{Authenticator: challengeAuth{}})
	c := dialRaw(t, s.Addr)
	c.write(packet.AppendConnect(nil, crConnect()))
	for range 20 {
		got, err := c.readPacket(2 * time.Second)
		if err != nil {
			t.Fatalf("connection closed without a CONNACK: %v", err)
		}
		if packet.Type(got[0]>>4) == packet.CONNACK {
			if !bytes.Equal(got, []byte{0x20, 3, 0, 0x87, 0}) {
				t.Fatalf("CONNACK % x, want not authorized", got)
			}
			c.expectClosed(2 * time.Second)
			return
		}
		c.write(authPacket("again"))
	}
	t.Fatal("no refusal after 20 AUTH rounds")
}

// §4.12: a method the server does not support is refused with 0x8C; so is any method
// when the Authenticator has no enhanced authentication.
func TestEnhancedAuthUnsupported(t *testing.T) {
	s := startServer(t, broker.Config{})
	c := dialRaw(t, s.Addr)
	c.write(packet.AppendConnect(nil, crConnect()))
	c.expectClosed(2*time.Second, "20 03 00 8C 00")

	s2 := startServer(t, broker.Config{Authenticator: challengeAuth{}})
	c2 := dialRaw(t, s2.Addr)
	p := crConnect()
	p.Props.AuthMethod = "SCRAM-SHA-1"
	c2.write(packet.AppendConnect(nil, p))
	c2.expectClosed(2*time.Second, "20 03 00 8C 00")
}

// [MQTT-4.12.0-?] §3.15: AUTH after a CONNECT without a method is a protocol error.
func TestAuthWithoutMethod(t *testing.T) {
	s := startServer(t, broker.Config{})
	c := dialRaw(t, s.Addr)
	c.connect(&packet.Connect{Version: packet.Version5, CleanStart: true, KeepAlive: 30, ClientID: "x"})
	c.send("F0 00")
	c.expectClosed(2*time.Second, "E0 01 82")
}

// codeAuth refuses every CONNECT with a fixed reason code.
type codeAuth struct{ rc packet.ReasonCode }

func (a codeAuth) Authenticate(context.Context, *broker.ConnectRequest) (*broker.Client, error) {
	return nil, a.rc
}

// [MQTT-3.2.2-8] An Authenticator's reason that a CONNACK may not carry goes out as
// Unspecified Error; [MQTT-3.14.2-1] re-authentication (not supported) ends the connection
// with a code a DISCONNECT may carry.
func TestReasonCodesFitThePacket(t *testing.T) {
	s := startServer(t, broker.Config{Authenticator: codeAuth{packet.SessionTakenOver}})
	c := dialRaw(t, s.Addr)
	if ack := c.ftConnect(&packet.Connect{Version: packet.Version5, CleanStart: true, KeepAlive: 30, ClientID: "rc"}); ack.Reason != packet.UnspecifiedError {
		t.Fatalf("CONNACK reason %#x, want 0x80", byte(ack.Reason))
	}

	s = startServer(t, broker.Config{Authenticator: challengeAuth{}})
	c = dialRaw(t, s.Addr)
	c.write(packet.AppendConnect(nil, crConnect()))
	c.expectType(packet.AUTH)
	c.write(authPacket("nonce:secret"))
	c.expectType(packet.CONNACK)
	re := packet.Disconnect{Type: packet.AUTH, Reason: packet.ReAuthenticate}
	re.Props.AuthMethod = "TEST-CR"
	re.Props.Set(packet.PropAuthMethod)
	c.write(packet.AppendDisconnect(nil, &re, packet.Version5))
	got := c.expectType(packet.DISCONNECT)
	if rc := packet.ReasonCode(got[2]); rc.ForDisconnect() != rc || !rc.IsError() {
		t.Fatalf("DISCONNECT % x: reason %#x is not a DISCONNECT error code", got, byte(rc))
	}
}
