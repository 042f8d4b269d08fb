package limiter

import (
	"fmt"
	"sync"
	"testing"
)

func TestConcurrencyLimit(t *testing.T) {
	c := NewConcurrency(2, 10)
	for i := range 2 {
		if !c.Acquire("ip") {
			t.Fatalf("holder %d refused within the limit", i+1)
		}
	}
	if c.Acquire("ip") {
		t.Fatal("third holder allowed with limit 2")
	}
	if !c.Acquire("other") {
		t.Fatal("other key refused")
	}
	c.Release("ip")
	if c.Count("ip") != 1 || !c.Acquire("ip") {
		t.Fatal("a released slot was not reusable")
	}
	c.Release("ip")
	c.Release("ip")
	c.Release("ip") // extra release: no-op, never negative
	if c.Count("ip") != 0 || c.Len() != 1 {
		t.Fatalf("Count = %d, Len = %d, want 0 and 1", c.Count("ip"), c.Len())
	}
	c.Release("never")
	ok1, ok2, ok3 := c.Acquire("ip"), c.Acquire("ip"), c.Acquire("ip")
	if !ok1 || !ok2 || ok3 {
		t.Fatal("extra releases raised the limit")
	}
}

func TestConcurrencyBoundedKeys(t *testing.T) {
	c := NewConcurrency(1, 100)
	for i := range 100_000 {
		k := fmt.Sprint("k", i)
		ok := c.Acquire(k)
		if i < 100 && !ok || i >= 100 && ok {
			t.Fatalf("Acquire(%s) = %v with %d keys held", k, ok, c.Len())
		}
	}
	if c.Len() != 100 {
		t.Fatalf("Len = %d, want 100", c.Len())
	}
	c.Release("k0")
	if !c.Acquire("new") {
		t.Fatal("a freed key slot was not reusable")
	}
	for i := range 100 {
		c.Release(fmt.Sprint("k", i))
	}
	c.Release("new")
	if c.Len() != 0 || len(c.count) != 0 {
		t.Fatalf("Len = %d after releasing everything, want 0", c.Len())
	}
}

func TestConcurrencyRace(t *testing.T) {
	const limit = 5
	c := NewConcurrency(limit, 1000)
	var wg sync.WaitGroup
	var mu sync.Mutex
	peak, cur := 0, 0
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 500 {
				if !c.Acquire("ip") {
					continue
				}
				mu.Lock()
				cur++
				peak = max(peak, cur)
				mu.Unlock()
				mu.Lock()
				cur--
				mu.Unlock()
				c.Release("ip")
			}
		}()
	}
	wg.Wait()
	if peak > limit {
		t.Fatalf("peak holders %d > limit %d", peak, limit)
	}
	if c.Len() != 0 {
		t.Fatalf("Len = %d after all released", c.Len())
	}
}
