package broker_test

import (
	"context"
	"testing"
	"time"

	"vitalmq/internal/broker"
	"vitalmq/internal/packet"
)

// expiringAuth admits everyone with credentials valid until a fixed time.
type expiringAuth struct{ until time.Time }

func (a expiringAuth) Authenticate(_ context.Context, req *broker.ConnectRequest) (*broker.Client, error) {
	return &broker.Client{ClientID: req.ClientID, Username: req.Username, ValidUntil: a.until}, nil
}

// A connection ends when the credentials it logged in with expire (a client certificate's
// NotAfter): a 5.0 client hears DISCONNECT 0xA0 Maximum Connect Time. Credentials that have
// already expired are refused at CONNECT.
func TestCredentialsExpire(t *testing.T) {
	until := time.Now().Add(400 * time.Millisecond)
	s := startServer(t, broker.Config{Authenticator: expiringAuth{until: until}})
	c, _ := ftDial(t, s.Addr, packet.Version5, "exp-1", func(p *packet.Connect) { p.KeepAlive = 60 })
	got := readAll(t, c)
	if time.Now().Before(until) {
		t.Fatal("connection ended before the credentials expired")
	}
	if !sameDisconnect(got, []byte{0xE0, 1, byte(packet.MaximumConnectTime)}) {
		t.Fatalf("got % x, want DISCONNECT 0xA0", got)
	}

	c = dialRaw(t, s.Addr)
	ack := c.ftConnect(&packet.Connect{Version: packet.Version5, CleanStart: true, KeepAlive: 60, ClientID: "exp-2"})
	if ack.Reason != packet.NotAuthorized {
		t.Fatalf("CONNACK %#x for expired credentials, want 0x87", byte(ack.Reason))
	}
}
