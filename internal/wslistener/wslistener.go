// Package wslistener serves MQTT over WebSocket (subprotocol "mqtt", MQTT 5.0 §6) as a
// net.Listener, so the broker treats WebSocket clients exactly like TCP ones.
package wslistener

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// Listener accepts WebSocket upgrades on an HTTP server and hands each one out as a net.Conn.
type Listener struct {
	ln     net.Listener
	srv    *http.Server
	conns  chan net.Conn
	closed chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
}

// Listen serves HTTP on ln, upgrading requests for path to WebSocket connections.
// maxMessage caps one WebSocket message (set it to the broker's maximum packet size).
func Listen(ln net.Listener, path string, maxMessage int64, log *slog.Logger) *Listener {
	l := &Listener{ln: ln, conns: make(chan net.Conn), closed: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc(path, l.upgrade(maxMessage))
	l.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second, ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	l.wg.Go(func() { l.srv.Serve(ln) })
	return l
}

func (l *Listener) upgrade(maxMessage int64) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{"mqtt"}})
		if err != nil {
			return // Accept wrote the HTTP error
		}
		if c.Subprotocol() != "mqtt" { // [MQTT-6.0.0-3]
			c.Close(websocket.StatusPolicyViolation, `subprotocol "mqtt" required`)
			return
		}
		c.SetReadLimit(maxMessage + 8)
		nc := websocket.NetConn(context.Background(), c, websocket.MessageBinary) // [MQTT-6.0.0-1]
		remote, _ := net.ResolveTCPAddr("tcp", r.RemoteAddr)
		wc := &conn{Conn: nc, remote: remote}
		select {
		case l.conns <- wc:
		case <-l.closed:
			nc.Close()
		}
	}
}

type conn struct {
	net.Conn
	remote *net.TCPAddr
}

func (c *conn) RemoteAddr() net.Addr {
	if c.remote != nil {
		return c.remote
	}
	return c.Conn.RemoteAddr()
}

// Accept waits for the next WebSocket connection.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

// Close stops the HTTP server; connections already accepted are not affected.
func (l *Listener) Close() error {
	var err error
	l.once.Do(func() {
		close(l.closed)
		err = l.srv.Close()
		l.wg.Wait()
		if errors.Is(err, http.ErrServerClosed) {
			err = nil
		}
	})
	return err
}

// Addr is the address of the underlying listener.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }
