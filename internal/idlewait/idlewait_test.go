//go:build linux

package idlewait

import (
	"net"
	"sync"
	"syscall"
	"testing"
	"time"
)

// pair returns both ends of a loopback TCP connection and the accepted end's RawConn.
func pair(t *testing.T) (server, client net.Conn, rc syscall.RawConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close(); client.Close() })
	rc, err = server.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return server, client, rc
}

func start(t *testing.T) *Waiter {
	t.Helper()
	w, err := New()
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(w.Run)
	t.Cleanup(func() { w.Close(); wg.Wait() })
	return w
}

func wait(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(10 * time.Second):
		t.Fatalf("no wake: %s", what)
	}
}

// TestWakeOnEveryArrival: edge-triggered, a socket is called for each arrival of data,
// read or not, and for its hang-up, which says so.
func TestWakeOnEveryArrival(t *testing.T) {
	w := start(t)
	server, client, rc := pair(t)
	woke := make(chan bool, 4)
	if _, err := w.Add(rc, func(hup bool) { woke <- hup }); err != nil {
		t.Fatal(err)
	}
	next := func(what string) bool {
		t.Helper()
		select {
		case hup := <-woke:
			return hup
		case <-time.After(10 * time.Second):
			t.Fatalf("no wake: %s", what)
			return false
		}
	}
	client.Write([]byte("a"))
	if next("first byte") {
		t.Fatal("woken as hung up by data")
	}
	client.Write([]byte("b")) // not read: a new arrival calls again all the same
	if next("second byte, the first unread") {
		t.Fatal("woken as hung up by data")
	}
	buf := make([]byte, 2)
	if n, err := server.Read(buf); err != nil || n != 2 {
		t.Fatalf("read %d, %v", n, err)
	}
	client.Close()
	if !next("hang-up") {
		t.Fatal("the hang-up's wake does not say so")
	}
}

func TestRemovedNotCalled(t *testing.T) {
	w := start(t)
	_, c1, rc1 := pair(t)
	_, c2, rc2 := pair(t)
	called1 := make(chan struct{}, 1)
	called2 := make(chan struct{}, 1)
	k1, err := w.Add(rc1, func(bool) { called1 <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Add(rc2, func(bool) { called2 <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	w.Remove(k1)
	c1.Write([]byte("x"))
	c2.Write([]byte("y"))
	wait(t, called2, "added socket")
	select {
	case <-called1:
		t.Fatal("a removed socket's wake was called")
	default: // and never will be: Remove took it out before the data was sent
	}
}

func TestAddClosedSocketFails(t *testing.T) {
	w := start(t)
	server, _, rc := pair(t)
	server.Close()
	if _, err := w.Add(rc, func(bool) {}); err == nil {
		t.Fatal("adding a closed socket succeeded")
	}
	w.mu.Lock()
	n := len(w.wake)
	w.mu.Unlock()
	if n != 0 {
		t.Fatalf("a failed Add left %d wake functions", n)
	}
}

func TestManySockets(t *testing.T) {
	w := start(t) // more sockets than one epoll_pwait batch takes
	const n = 300
	var wg sync.WaitGroup
	wg.Add(n)
	clients := make([]net.Conn, n)
	for i := range clients {
		_, c, rc := pair(t)
		clients[i] = c
		if _, err := w.Add(rc, func(bool) { wg.Done() }); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range clients {
		c.Write([]byte("z"))
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	wait(t, done, "all 300 sockets")
}
