package broker

import "sync/atomic"

// connPool runs one job on connections, on goroutines that wait for the next connection
// when done: handing a connection to a waiting one costs neither a new goroutine nor the
// growth of its stack to what the job needs (crypto/tls, the publication path). The Server
// has two: wakes (read loops of woken connections) and flushes (writes).
type connPool struct {
	run  func(*conn)
	ch   chan *conn   // hands a connection to a waiting goroutine
	idle atomic.Int32 // goroutines waiting on ch
}

// maxIdle is how many goroutines of a pool wait for a connection.
const maxIdle = 16

func (p *connPool) init(run func(*conn)) {
	p.run, p.ch = run, make(chan *conn)
}

// hand runs the job on c on a waiting goroutine, or starts one. c holds a count in s.wg
// until its job is done (a read loop; a flush, which finish waits for): it is not zero.
func (p *connPool) hand(s *Server, c *conn) {
	select {
	case p.ch <- c:
	default:
		s.wg.Add(1)
		go p.serve(s, c)
	}
}

// serve runs the job on c, then on each connection handed to it, until more goroutines
// wait than maxIdle or the server closes.
func (p *connPool) serve(s *Server, c *conn) {
	defer s.wg.Done()
	for {
		p.run(c)
		if p.idle.Add(1) > maxIdle {
			p.idle.Add(-1)
			return
		}
		select {
		case c = <-p.ch:
			p.idle.Add(-1)
		case <-s.quit:
			p.idle.Add(-1)
			return
		}
	}
}
