package limiter

import (
	"fmt"
	"sync"
)

// Concurrency counts concurrent holders per key (for example open connections per source
// address) and refuses a key more than limit holders. Keys with no holder are dropped, so it holds
// one entry per key that currently has a holder, and at most maxKeys: while the table is full, a
// new key is refused (a key with holders is never evicted, which would break its limit). It is
// safe for concurrent use.
type Concurrency struct {
	limit   int
	maxKeys int

	mu    sync.Mutex
	count map[string]int
}

// NewConcurrency returns a Concurrency of at most limit holders per key and maxKeys keys with
// holders. It panics if limit < 1 or maxKeys < 1.
func NewConcurrency(limit, maxKeys int) *Concurrency {
	if limit < 1 || maxKeys < 1 {
		panic(fmt.Sprintf("limiter: invalid concurrency limit %d or maxKeys %d", limit, maxKeys))
	}
	return &Concurrency{limit: limit, maxKeys: maxKeys, count: make(map[string]int)}
}

// Acquire adds a holder to key and reports whether it could: false when key already has limit
// holders, or when key is new and maxKeys keys already have holders. Every successful Acquire must
// be matched by one Release.
func (c *Concurrency) Acquire(key string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	n, ok := c.count[key]
	switch {
	case n >= c.limit:
		return false
	case !ok && len(c.count) >= c.maxKeys:
		return false
	}
	c.count[key] = n + 1
	return true
}

// Release removes a holder from key; the key is dropped when its last holder goes. Releasing a
// key with no holder does nothing.
func (c *Concurrency) Release(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch n := c.count[key]; {
	case n > 1:
		c.count[key] = n - 1
	case n == 1:
		delete(c.count, key)
	}
}

// Count returns key's current number of holders.
func (c *Concurrency) Count(key string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.count[key]
}

// Len returns the number of keys with holders.
func (c *Concurrency) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.count)
}
