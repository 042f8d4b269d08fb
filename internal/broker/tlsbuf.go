package broker

import (
	"bytes"
	"crypto/tls"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"unsafe"
)

// crypto/tls keeps, for a connection's whole life, the read buffers its handshake grew:
// the raw-record buffer sized for the ClientHello plus 512 bytes, and the handshake-message
// buffer sized for the ClientHello (with Go's post-quantum key share, 1.5 KB). Together
// about 3.6 KiB of the 9 of live heap a device cost in the RPM scenario (docs/PERFORMANCE.md,
// session 12), and crypto/tls has no call that gives them back (s2n-tls, for one, has
// s2n_connection_free_handshake). releaseTLSBuffers drops them when they hold nothing;
// crypto/tls allocates them again, small, when the next record comes. (A client certificate
// keeps the handshake-message array alive anyway: the parsed certificate points into it.)
//
// The three fields are unexported: they are located once, by name and type, through
// reflect. That they can be dropped so rests on how crypto/tls uses them, read in its
// source for each Go release listed in tlsAudited: only Read and Handshake touch them,
// under its input lock, on the goroutine that reads (Write gets past Handshake on an atomic
// once the handshake is complete; Close and ConnectionState use other fields); input is
// the only other reference into rawInput's array; and an empty buffer holds nothing
// pending (a partial record, a partial handshake message or unread data all have Len > 0).
// With another Go it does nothing, and TestDormantTLSGivesBackHandshakeBuffers fails, so
// that an upgrade re-reads crypto/tls and adds its release here.
var tlsBufs = findTLSBufs(runtime.Version())

// tlsAudited are the Go releases whose crypto/tls was read for releaseTLSBuffers.
var tlsAudited = []string{"go1.26."}

type tlsBufFields struct {
	ok                    bool
	rawInput, input, hand uintptr // offsets in tls.Conn
}

func findTLSBufs(version string) tlsBufFields {
	if !slices.ContainsFunc(tlsAudited, func(v string) bool { return strings.HasPrefix(version, v) }) {
		return tlsBufFields{}
	}
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
// the handshake (or CONNECT) grew is gone (what the first record after it grows an empty
// buffer to: a 5-byte header plus bytes.MinRead, the 576-byte size class, enough for a
// device's small publications), and of at most tlsKeepBusy bytes after that: a device
// whose messages need a larger one (records up to about 1.4 KB that arrive in one TCP
// segment) keeps it rather than growing it again at every wake, and one a larger message
// grew is given back.
const (
	tlsKeepRaw  = 576
	tlsKeepBusy = 2048
)

// tlsBuffersOf returns tc's handshake-message and raw-record buffers and the reader of the
// decrypted record (in the raw-record buffer's array). Only with tlsBufs.ok.
func tlsBuffersOf(tc *tls.Conn) (hand, raw *bytes.Buffer, in *bytes.Reader) {
	p := unsafe.Pointer(tc)
	return (*bytes.Buffer)(unsafe.Add(p, tlsBufs.hand)), (*bytes.Buffer)(unsafe.Add(p, tlsBufs.rawInput)),
		(*bytes.Reader)(unsafe.Add(p, tlsBufs.input))
}

// releaseTLSBuffers gives back tc's empty handshake-message buffer, and its raw-record
// buffer when that holds no data and has more than keep bytes. It reports whether the
// raw-record buffer now has at most tlsKeepRaw bytes (always true where nothing can be
// released). It must only run on the goroutine that reads tc, between reads, after the
// handshake (see tlsBufs).
func releaseTLSBuffers(tc *tls.Conn, keep int) bool {
	if !tlsBufs.ok {
		return true
	}
	hand, raw, in := tlsBuffersOf(tc)
	if hand.Len() == 0 && hand.Cap() > 0 {
		*hand = bytes.Buffer{}
	}
	if raw.Len() == 0 && in.Len() == 0 && raw.Cap() > keep {
		*raw = bytes.Buffer{}
		in.Reset(nil) // it points into the array just dropped
	}
	return raw.Cap() <= tlsKeepRaw
}

// tlsDrained reports whether tc holds nothing read from the socket: no record, or part of
// one, and no decrypted data not yet read; false where that cannot be known. Only on the
// goroutine that reads tc, between reads (see tlsBufs).
func tlsDrained(tc *tls.Conn) bool {
	if !tlsBufs.ok {
		return false
	}
	_, raw, in := tlsBuffersOf(tc)
	return raw.Len() == 0 && in.Len() == 0
}
