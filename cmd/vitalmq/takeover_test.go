package main

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// TestTakeover is issue 4's takeover test: a persistent QoS 2 subscriber reconnects again
// and again (a new connection with the same client identifier and clean start 0, while the
// old one is still open) as publishers keep sending QoS 1 and QoS 2. Nothing acknowledged
// is lost and no QoS 2 message is delivered twice, with durable storage and in memory.
func TestTakeover(t *testing.T) {
	for _, mode := range []string{"durable", "memory"} {
		t.Run(mode, func(t *testing.T) {
			addrs := startServe(t, fmt.Sprintf(`log_level = "warn"
[storage]
mode = %q
[broker]
sys_interval = "-1s"
# The publishers are unpaced and the subscriber keeps reconnecting: queue limits are not
# what this test is about (a full queue refuses publications, see TestDurabilityQueueFullNotAcknowledged).
max_queued_messages = 10000000
max_queued_bytes = 4294967296
[[listener]]
name = "mqtt"
type = "tcp"
address = "127.0.0.1:0"
allow_anonymous = true
`, mode))
			addr := addrs["mqtt"]
			const takeovers = 30
			sub := newDurSub("takeover-sub", "takeover/#")
			var dones []chan struct{}
			done, err := sub.connect(addr)
			if err != nil {
				t.Fatal(err)
			}
			dones = append(dones, done)

			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			defer func() {
				cancel()
				wg.Wait()
			}()
			pubs := []*durPub{newDurPub("takeover-pub1", "takeover/q1", 1, 8), newDurPub("takeover-pub2", "takeover/q2", 2, 8)}
			for _, p := range pubs {
				wg.Go(func() { p.run(ctx, addr) })
			}
			delivered := func() int {
				sub.mu.Lock()
				defer sub.mu.Unlock()
				n := 0
				for _, c := range sub.got {
					n += c
				}
				return n
			}
			for i := range takeovers {
				// Traffic flows to the current connection, then a new one takes the session over.
				before := delivered()
				eventuallyT(t, 10*time.Second, fmt.Sprintf("deliveries before takeover %d", i), func() bool { return delivered() >= before+20 })
				done, err := sub.connect(addr)
				if err != nil {
					t.Fatalf("takeover %d: %v", i, err)
				}
				dones = append(dones, done)
			}
			if err := durDrain(sub, pubs, 20*time.Second); err != nil {
				t.Error(err)
			}
			r := durVerify(sub, pubs)
			sub.mu.Lock()
			dupReceipts := sub.dupReceipts
			sub.mu.Unlock()
			t.Logf("takeover test (%s): %d messages (%d qos1 / %d qos2), %d takeovers, %d duplicate qos1 deliveries, %d duplicate qos2 receipts (not delivered)",
				mode, r.total, r.q1, r.q2, takeovers, r.dupQ1, dupReceipts)
			for _, p := range r.problems {
				t.Error(p)
			}
			// Every connection but the last was closed by its successor.
			for i, d := range dones[:len(dones)-1] {
				select {
				case <-d:
				case <-time.After(5 * time.Second):
					t.Errorf("connection %d still open after it was taken over", i)
				}
			}
			sub.mu.Lock()
			if sub.cur != nil {
				sub.cur.close()
			}
			sub.mu.Unlock()
		})
	}
}
