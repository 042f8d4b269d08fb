// Package tlsconfig builds hardened *tls.Config values: TLS 1.2 minimum (1.3 preferred by
// Go), AEAD cipher suites only, and certificates reloaded from disk when they change.
package tlsconfig

import (
	"crypto/tls"
	"fmt"
	"os"
	"sync"
	"time"
)

// suites are the TLS 1.2 suites allowed: forward secret and AEAD only (TLS 1.3 suites are always AEAD).
var suites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// Server returns a server configuration serving the certificate in certFile/keyFile.
// The pair is loaded now (an error names the file) and reloaded on the next handshake
// after either file's modification time changes.
func Server(certFile, keyFile string) (*tls.Config, error) {
	r := &reloader{certFile: certFile, keyFile: keyFile}
	if err := r.load(); err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		CipherSuites:   suites,
		GetCertificate: r.get,
		NextProtos:     []string{"mqtt", "http/1.1"},
	}, nil
}

type reloader struct {
	certFile, keyFile string
	mu                sync.Mutex
	cert              *tls.Certificate
	mtime             time.Time
}

func (r *reloader) modTime() time.Time {
	var t time.Time
	for _, f := range []string{r.certFile, r.keyFile} {
		if st, err := os.Stat(f); err == nil && st.ModTime().After(t) {
			t = st.ModTime()
		}
	}
	return t
}

func (r *reloader) load() error {
	mt := r.modTime()
	cert, err := tls.LoadX509KeyPair(r.certFile, r.keyFile)
	if err != nil {
		return fmt.Errorf("tls certificate %s / key %s: %w", r.certFile, r.keyFile, err)
	}
	r.cert, r.mtime = &cert, mt
	return nil
}

func (r *reloader) get(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if mt := r.modTime(); mt.After(r.mtime) {
		_ = r.load() // keep serving the old certificate if the new one is broken
	}
	return r.cert, nil
}
