// Package idlewait waits for many sockets at once without a goroutine each: a connection
// adds its socket once, and the Waiter calls its wake function every time data (or a
// hang-up) arrives on it, from one goroutine (Run). A connection with nothing to read
// ends its reader goroutine and is woken by the next call; one that is reading simply
// ignores the calls. On Linux this is an edge-triggered epoll set of its own, itself
// waited on through the Go runtime's poller; elsewhere New reports errors.ErrUnsupported
// and callers keep a reader goroutine per connection.
//
// A goroutine parked in a read keeps a stack of at least 4 KiB (the runtime never shrinks
// one that deep), and its connection keeps its read buffer: 40 MB for 10,000 idle devices,
// a fifth of what each of them costs in all.
//
// Edge-triggered, a socket is added once and never re-armed (a system call per wake
// saved), and a wake function may be called for data its connection already read. The
// caller's side of the race (data that arrives between its last read and its going to
// sleep) is its own: count the calls, and read again when one came since the last read.
package idlewait
