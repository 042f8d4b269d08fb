// Package idlewait waits for many idle sockets at once without a goroutine each: a
// connection whose client has been silent for a while hands its socket to a Waiter and
// ends its reader goroutine; the Waiter calls it back when the socket has something to
// read (or was hung up). On Linux this is an epoll set of its own, itself waited on
// through the Go runtime's poller; elsewhere New reports errors.ErrUnsupported and callers
// keep a reader goroutine per connection.
//
// A goroutine parked in a read keeps a stack of at least 4 KiB (the runtime never shrinks
// one that deep), and its connection keeps its read buffer: 40 MB for 10,000 idle devices,
// a fifth of what each of them costs in all.
package idlewait
