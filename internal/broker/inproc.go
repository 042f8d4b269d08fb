package broker

import (
	"errors"
	"sync"

	"vitalmq/internal/session"
)

// Subscribe registers an in-process handler for messages matching filter, as a
// subscription at QoS 2 that bypasses authorization (the caller is the server itself).
// fn runs on one goroutine per subscription, in order; up to queue messages wait for it
// and further ones are dropped and counted, so a slow handler never stalls routing.
// stop removes the subscription and waits for fn to return. The message is shared with
// every other subscriber: fn must not modify it (its Props are nil when it has none).
func (s *Server) Subscribe(filter string, queue int, fn func(*session.Message)) (stop func(), err error) {
	if err := s.limits.CheckFilter(filter); err != nil {
		return nil, err
	}
	if queue <= 0 {
		return nil, errors.New("broker: subscribe: queue must be positive")
	}
	ss := newSess("$inproc")
	ss.inbox = make(chan *session.Message, queue)
	done := make(chan struct{})
	exited := make(chan struct{})
	var once sync.Once
	s.subs.Add(filter, ss, subscription{qos: 2})
	s.wg.Go(func() {
		defer close(exited)
		for {
			select {
			case <-done:
				return
			case <-s.quit:
				return
			case m := <-ss.inbox:
				func() {
					defer s.recoverTo("in-process subscriber")
					fn(m)
				}()
			}
		}
	})
	return func() {
		once.Do(func() {
			s.subs.Remove(filter, ss)
			close(done)
		})
		<-exited
	}, nil
}
