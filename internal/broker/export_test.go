package broker

import "crypto/tls"

// Scheduled is the number of offline sessions the janitor has a deadline for.
func (s *Server) Scheduled() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.due)
}

// StopSending marks clientID's connection as closing, as kick and finish do before the
// socket closes, without closing it.
func (s *Server) StopSending(clientID string) {
	s.mu.Lock()
	ss := s.sessions[clientID]
	s.mu.Unlock()
	ss.mu.Lock()
	c := ss.conn
	ss.mu.Unlock()
	c.outMu.Lock()
	c.closing.Store(true)
	c.outMu.Unlock()
}

// Dormant is the number of connections without a reader goroutine (KeepReaders); Wakes
// counts how often one got its reader back.
func (s *Server) Dormant() int { return int(s.stats.dormant.Load()) }
func (s *Server) Wakes() int64 { return s.stats.wakes.Load() }
func (s *Server) Held() int    { return int(s.stats.held.Load()) }

// Waiting is the number of publishers waiting for flow control on their reader goroutine.
func (s *Server) Waiting() int { return int(s.stats.waiting.Load()) }

// Every test of this package runs with write buffers poisoned when given back: a buffer
// given back while still in use shows as garbage on the wire.
func init() { poisonWriteBufs.Store(true) }

// TLSBuffersFound reports whether releaseTLSBuffers works with this Go's crypto/tls.
func TLSBuffersFound() bool { return tlsBufs.ok }

// The largest raw-record buffers dormant TLS connections keep: until the handshake's is
// gone, and after.
const TLSKeepRaw, TLSKeepBusy = tlsKeepRaw, tlsKeepBusy

// HeldReadBuffers counts the held publishers (conn.hold) that keep a read buffer. It takes
// each one as unhold would, and puts it back held: a wake meanwhile would be lost, so the
// test must let no queue drain while it runs.
func (s *Server) HeldReadBuffers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for c := range s.conns {
		if g := c.held.Load(); g != 0 && c.held.CompareAndSwap(g, 0) {
			if c.br != nil {
				n++
			}
			c.held.Store(g)
		}
	}
	return n
}

// TLSReadBuffers returns the capacities of crypto/tls's handshake-message and raw-record
// buffers of each dormant TLS connection, by client id (an awake one's reader owns them).
// It takes each one as resume would, and puts it back dormant: a wake meanwhile would be
// lost, so the test must send nothing while it runs.
func (s *Server) TLSReadBuffers() map[string][2]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	bufs := map[string][2]int{}
	for c := range s.conns {
		tc, ok := c.nc.(*tls.Conn)
		if !ok || !c.dormant.CompareAndSwap(true, false) {
			continue
		}
		hand, raw, _ := tlsBuffersOf(tc)
		bufs[c.client.ClientID] = [2]int{hand.Cap(), raw.Cap()}
		c.dormant.Store(true)
	}
	return bufs
}

// OnWriteLeft calls f (until the end of the test) whenever a reader's write for another
// connection left a backlog to a flusher (conn.writeNow). Call it before the server starts.
func OnWriteLeft(t interface{ Cleanup(func()) }, f func()) {
	testHookWriteLeft = f
	t.Cleanup(func() { testHookWriteLeft = func() {} })
}
