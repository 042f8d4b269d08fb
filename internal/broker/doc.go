// Package broker is the MQTT server: it accepts connections from any net.Listener, runs
// the CONNECT handshake, routes PUBLISH through the subscription trie to sessions, runs
// the QoS 1 and 2 flows, keeps retained messages and wills, and enforces keep alive and
// every configured limit. In-process code publishes and subscribes with Publish and
// Subscribe, with the same routing as network clients.
//
// Goroutines: Serve runs one accept loop per listener; a connection has a reader goroutine
// (decodes and handles packets, and delivers the publications it receives to matching
// sessions) while it has something to read and, only while it has bytes to write, a
// flusher (drains the connection's pending bytes, many packets per write, then moves on; the
// reader writes its own client's acknowledgements itself, once per read, before it may
// block, and the deliveries it routed to up to maxClaims subscribers that had no flusher:
// conn.unlockFlushBy; such a write never waits for that subscriber, sock.noWait). A
// reader whose client sends without pause lets the other goroutines run after
// readerTurn publications, so that such publishers do not starve the flushers of what they
// route. A TCP or TLS connection whose socket has nothing more goes dormant (unless
// Config.KeepReaders): its reader moves on, and the Server's idlewait.Waiter (one
// goroutine) finds it a reader again when data arrives, as do its keep alive timer and
// closeSocket; so a connection between packets costs no goroutine. Readers and flushers
// are pooled (connPool): up to maxIdle of each wait for the next connection, so that a wake
// or a flush costs neither a new goroutine nor the growth of its stack. Such a connection
// reads and writes its socket with raw non-blocking system calls (sock; the runtime's
// poller waits for data or room), so that the runtime does not wake its monitor thread for
// each. The dormant
// connection's count in the WaitGroup passes to the reader that resumes it. Past Config.FlowControlReaders
// publishers waiting on their reader for a subscriber's queue (flow control,
// Config.FlowControlWait), one that is to wait is held the same way (conn.hold): its reader moves on, and closing the room or drained channel, the end of
// its wait or closeSocket finds it a reader again, so thousands of devices waiting for one slow
// dashboard cost no stacks. One janitor goroutine runs will delays, session expiry and $SYS
// statistics; each in-process subscriber has one goroutine. All are tracked by the
// Server's WaitGroup (a timer's callback, which only hands a connection to a reader, is
// not); a connection's flush ends before its reader does (finish waits for writerDone).
// Each recovers its own panics and closes only the connection concerned.
//
// Lock order: Server.mu, then sess.mu, then conn.outMu; crypto/tls's write lock, then
// sock.wmu (held across a write that may wait, so taken only by writes to its socket). The
// trie and the retained store
// have their own locks and are never called with conn.outMu held; Server.retainMu (the
// retained-message bookkeeping) is a leaf. No other lock is held
// across network I/O.
package broker
