package broker

import (
	"bytes"
	"crypto/tls"
	"reflect"
	"unsafe"
)

// crypto/tls keeps, for a connection's whole life, the read buffers its handshake grew:
// the raw-record buffer sized for the ClientHello plus 512 bytes, and the handshake-message
// buffer sized for the ClientHello (with Go's post-quantum key share, 1.5 KB). Together
// 3.6 KiB of the 9 of live heap a device cost in the RPM scenario (docs/PERFORMANCE.md,
// session 12), and crypto/tls has no call that gives them back (s2n-tls, for one, has
// s2n_connection_free_handshake).
// releaseTLSBuffers drops them when they hold nothing, locating the three fields once by
// name and type through reflect; crypto/tls allocates them again, small, when the next
// record comes. With a Go whose tls.Conn has other fields, it does nothing (and
// TestTLSBufferFieldsFound fails, so that an upgrade notices).
var tlsBufs = findTLSBufs()

type tlsBufFields struct {
	ok                    bool
	rawInput, input, hand uintptr // offsets in tls.Conn
}

func findTLSBufs() tlsBufFields {
	t := reflect.TypeFor[tls.Conn]()
	field := func(name string, typ reflect.Type) (uintptr, bool) {
		f, ok := t.FieldByName(name)
		return f.Offset, ok && len(f.Index) == 1 && f.Type == typ
	}
	buffer, reader := reflect.TypeFor[bytes.Buffer](), reflect.TypeFor[bytes.Reader]()
	raw, ok1 := field("rawInput", buffer) // records as read from the socket
	in, ok2 := field("input", reader)     // the decrypted record being read: in rawInput's array
	hand, ok3 := field("hand", buffer)    // handshake messages
	return tlsBufFields{ok: ok1 && ok2 && ok3, rawInput: raw, input: in, hand: hand}
}

// A dormant connection keeps a raw-record buffer of at most tlsKeepRaw bytes until the one
// the handshake grew is gone (what the first record after it grows an empty buffer to: a
// 5-byte header plus bytes.MinRead, the 576-byte size class, enough for a device's small
// publications), and of at most tlsKeepBusy bytes after that: a device whose messages need
// a larger one (up to about 1.4 KB) keeps it rather than growing it again at every wake,
// and one a large message grew is given back.
const (
	tlsKeepRaw  = 576
	tlsKeepBusy = 2048
)

// releaseTLSBuffers gives back tc's empty handshake-message buffer, and its raw-record
// buffer when that holds no data and has more than keep bytes. It reports whether the
// raw-record buffer now has at most tlsKeepRaw bytes. It must only run on the goroutine
// that reads tc, between reads, after the handshake: crypto/tls touches these buffers only
// in Read and Handshake (under its input lock, which this does not take).
func releaseTLSBuffers(tc *tls.Conn, keep int) bool {
	if !tlsBufs.ok {
		return true // nothing to do, ever
	}
	p := unsafe.Pointer(tc)
	if hand := (*bytes.Buffer)(unsafe.Add(p, tlsBufs.hand)); hand.Len() == 0 && hand.Cap() > 0 {
		*hand = bytes.Buffer{}
	}
	raw := (*bytes.Buffer)(unsafe.Add(p, tlsBufs.rawInput))
	in := (*bytes.Reader)(unsafe.Add(p, tlsBufs.input))
	if raw.Len() == 0 && in.Len() == 0 && raw.Cap() > keep {
		*raw = bytes.Buffer{}
		in.Reset(nil) // it points into the array just dropped
	}
	return raw.Cap() <= tlsKeepRaw
}
