package broker

import (
	"context"
	"crypto/tls"
	"net"
	"time"
)

// Client describes an authenticated connection: what the Authorizer decides on.
type Client struct {
	ClientID  string
	Username  string // the authenticated user name ("" for anonymous)
	Listener  string // the listener's name
	Remote    net.Addr
	Anonymous bool
	// Attrs carries identity attributes set by the Authenticator (role, device id, ...).
	Attrs map[string]string
	// ValidUntil is when the credentials the client logged in with expire (a client
	// certificate's NotAfter); the connection ends then with Maximum Connect Time (0xA0).
	// Zero: no limit.
	ValidUntil time.Time
}

// ConnectRequest is what the Authenticator sees of a CONNECT.
type ConnectRequest struct {
	ClientID    string
	Username    string
	HasUsername bool
	Password    []byte
	Listener    string
	Remote      net.Addr
	TLS         *tls.ConnectionState // nil on plain connections
	AuthMethod  string               // 5.0 enhanced authentication method, "" when none
	AuthData    []byte
}

// Authenticator checks a CONNECT. It returns the client's identity, or an error: a
// packet.ReasonCode in the chain picks the CONNACK code (default NotAuthorized). The
// returned Client's ClientID, when set, is the client identifier the connection gets (an
// identity bound to its client id, or one assigned for an empty request).
type Authenticator interface {
	Authenticate(ctx context.Context, req *ConnectRequest) (*Client, error)
}

// Authorizer decides what an authenticated client may do. It must be safe for concurrent
// use and fast: CanReceive runs for every delivery.
type Authorizer interface {
	// CanPublish: may c publish to topic (also checked for wills and on every alias use)?
	CanPublish(c *Client, topic string) bool
	// CanSubscribe: may c subscribe to filter (the inner filter of a shared subscription)?
	CanSubscribe(c *Client, filter string) bool
	// CanReceive: may c receive a message published on topic (checked per delivery, so
	// a wildcard subscription never leaks a topic the client may not read)?
	CanReceive(c *Client, topic string) bool
}

// ListenerOptions describes one listener.
type ListenerOptions struct {
	Name string
	// AllowAnonymous lets clients connect without an Authenticator's approval. The
	// composition root allows it only on loopback addresses.
	AllowAnonymous bool
	// TLS, when set, makes Serve run a TLS handshake over every connection it accepts
	// (its listener gives plain TCP). Connections that come out of a tls.NewListener
	// work too, but always keep a reader goroutine: only Serve's own TLS can go dormant.
	TLS *tls.Config
}
