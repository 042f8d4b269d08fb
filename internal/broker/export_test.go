package broker

// Scheduled is the number of offline sessions the janitor has a deadline for.
func (s *Server) Scheduled() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.due)
}
