package broker

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

// Every test of this package runs with write buffers poisoned when given back: a buffer
// given back while still in use shows as garbage on the wire.
func init() { poisonWriteBufs.Store(true) }
