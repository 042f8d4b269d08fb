package session

import (
	"math/rand/v2"
	"slices"
	"testing"

	"vitalmq/internal/packet"
)

func seqs(es []Entry) []uint64 {
	out := make([]uint64, len(es))
	for i, e := range es {
		out[i] = e.Seq
	}
	return out
}

// TestQueueOrderUnderChurn: whatever mix of queueing, sending, acknowledging, requeueing
// and filtering, the queue and the in-flight list hold exactly the entries a plain model
// says, in order, and the byte count matches: push's reuse of the queue's array must
// never lose, duplicate or reorder an entry.
func TestQueueOrderUnderChurn(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	msg := &Message{Topic: "t", Payload: []byte("12345")}
	slid := 0
	for round := range 20 {
		s := New("c")
		var queue, inflight []uint64 // the model
		// A queue limit that the queue reaches, in some rounds, and deliveries that come
		// about as fast as the window lets them go: the queue's front moves on through its
		// array and reaches its end half empty, where push slides it back.
		limit := 8 + r.IntN(600)
		for range 2000 {
			before := s.qbuf
			off := len(s.Queue) > 0 && &s.Queue[0] != &s.qbuf[0] // the queue's front moved on
			op := r.IntN(100)
			switch {
			case op < 40: // a burst of deliveries
				for range 1 + r.IntN(8) {
					e, ok := s.Enqueue(Delivery{Msg: msg, QoS: 1}, limit, 1<<20)
					if !ok {
						break
					}
					queue = append(queue, e.Seq)
				}
			case op < 72: // the window opens
				for range 1 + r.IntN(8) {
					e, ok := s.Next()
					if !ok {
						break
					}
					if len(queue) == 0 || e.Seq != queue[0] {
						t.Fatalf("round %d: Next gave %d; model queue %v", round, e.Seq, queue)
					}
					queue = queue[1:]
					inflight = append(inflight, e.Seq)
				}
			case op < 95: // an acknowledgement, not necessarily of the oldest
				if len(s.Inflight) == 0 {
					continue
				}
				i := r.IntN(len(s.Inflight))
				e, ok := s.Ack(s.Inflight[i].ID, packet.PUBACK)
				if !ok {
					t.Fatalf("round %d: Ack of an in-flight entry failed", round)
				}
				inflight = slices.DeleteFunc(inflight, func(q uint64) bool { return q == e.Seq })
			case op < 97: // a reconnection with a smaller Receive Maximum
				keep := r.IntN(4)
				if keep < len(inflight) {
					queue = append(slices.Clone(inflight[keep:]), queue...)
					inflight = inflight[:keep]
				}
				s.Requeue(keep)
			default: // expiry: every third entry goes
				s.Filter(func(e *Entry, sent bool) bool { return e.Seq%3 != 0 })
				gone := func(q uint64) bool { return q%3 == 0 }
				queue = slices.DeleteFunc(queue, gone)
				inflight = slices.DeleteFunc(inflight, gone)
			}
			if op < 40 && off && &s.Queue[0] == &before[0] && &s.qbuf[0] == &before[0] {
				slid++ // push moved the queue back to the start of the same array
			}
			if !slices.Equal(seqs(s.Queue), queue) || !slices.Equal(seqs(s.Inflight), inflight) {
				t.Fatalf("round %d: queue %v in flight %v; model %v, %v", round, seqs(s.Queue), seqs(s.Inflight), queue, inflight)
			}
			if want := len(queue) * entrySize(&Delivery{Msg: msg}); s.QueuedBytes != want {
				t.Fatalf("round %d: QueuedBytes %d, want %d", round, s.QueuedBytes, want)
			}
			if in := s.Inflight[:cap(s.Inflight)]; len(in) > len(s.Inflight) && in[len(s.Inflight)].Delivery.Msg != nil {
				t.Fatalf("round %d: the in-flight array keeps an entry past its end", round)
			}
		}
	}
	if slid < 50 {
		t.Errorf("the queue slid back to its array's start %d times; the test needs it to, often", slid)
	}
}

// TestQueueChurnAllocatesNothing: a subscriber's queue that fills and drains (the usual
// state of a busy one) reuses its array instead of allocating as its entries move.
func TestQueueChurnAllocatesNothing(t *testing.T) {
	s := New("c")
	msg := &Message{Topic: "t", Payload: []byte("x")}
	// Messages come in bursts of 7 while the window lets 5 go at a time: the queue grows to
	// a few dozen entries, its front moving on, then drains.
	cycle := func(bursts int) {
		for range bursts {
			for range 7 {
				if _, ok := s.Enqueue(Delivery{Msg: msg, QoS: 1}, 1000, 1<<20); !ok {
					t.Fatal("Enqueue refused")
				}
			}
			for range 5 {
				s.Next()
			}
			for len(s.Inflight) > 16 {
				s.Ack(s.Inflight[0].ID, packet.PUBACK)
			}
		}
		for {
			if _, ok := s.Next(); !ok {
				break
			}
			s.Ack(s.Inflight[0].ID, packet.PUBACK)
		}
		for len(s.Inflight) > 0 {
			s.Ack(s.Inflight[0].ID, packet.PUBACK)
		}
	}
	for range 3 {
		cycle(20) // warm: the arrays and the identifier map reach their size
	}
	if allocs := testing.AllocsPerRun(20, func() { cycle(20) }); allocs != 0 {
		t.Errorf("a fill and drain of the queue allocates %.1f times; want none", allocs)
	}
}

// TestEmptiedQueueKeepsOnlyASmallArray: a queue emptied after a burst lets a large array
// go (it could hold a burst's messages in memory for good), and keeps a small one.
func TestEmptiedQueueKeepsOnlyASmallArray(t *testing.T) {
	msg := &Message{Topic: "t", Payload: []byte("x")}
	for _, tc := range []struct {
		burst    int
		wantKept bool
	}{{10, true}, {keepQueue * 2, false}} {
		s := New("c")
		for range tc.burst {
			s.Enqueue(Delivery{Msg: msg, QoS: 1}, 100000, 1<<30)
		}
		for {
			if _, ok := s.Next(); !ok {
				break
			}
			s.Ack(s.Inflight[0].ID, packet.PUBACK)
		}
		if kept := cap(s.Queue) > 0 || s.qbuf != nil; kept != tc.wantKept {
			t.Errorf("after a burst of %d: array of %d entries kept; want kept %v", tc.burst, cap(s.qbuf), tc.wantKept)
		}
	}
}

// TestEncodedCachesFromTheSecondDelivery: a message's first QoS 0 delivery in a slot is
// told to encode for itself (nothing cached); the next ones are told to cache, and then
// get the cached bytes. Slots do not share. Concurrent first deliveries: exactly one is
// first.
func TestEncodedCachesFromTheSecondDelivery(t *testing.T) {
	m := &Message{Topic: "t", Payload: []byte("x")}
	v5 := EncodedSlot(true, false)
	if b, first := m.Encoded(v5); b != nil || !first {
		t.Fatalf("first delivery: Encoded = %q, %v; want nil, true", b, first)
	}
	if b, first := m.Encoded(v5); b != nil || first {
		t.Fatalf("second delivery, nothing cached yet: Encoded = %q, %v; want nil, false", b, first)
	}
	m.SetEncoded(v5, []byte("enc5"))
	for range 2 {
		if b, first := m.Encoded(v5); string(b) != "enc5" || first {
			t.Fatalf("after SetEncoded: Encoded = %q, %v; want enc5, false", b, first)
		}
	}
	for _, slot := range []int{EncodedSlot(false, false), EncodedSlot(false, true), EncodedSlot(true, true)} {
		if b, first := m.Encoded(slot); b != nil || !first {
			t.Fatalf("slot %d's first delivery: Encoded = %q, %v; want nil, true", slot, b, first)
		}
	}

	m = &Message{Topic: "t", Payload: []byte("x")}
	firsts := make(chan bool, 8)
	for range cap(firsts) {
		go func() {
			_, first := m.Encoded(0)
			firsts <- first
		}()
	}
	n := 0
	for range cap(firsts) {
		if <-firsts {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("%d concurrent deliveries were told they were first; want 1", n)
	}
}
