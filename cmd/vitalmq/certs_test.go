package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"vitalmq/internal/pki"
)

// watchLost connects id with opts and reports when the broker ends the connection.
func (s *secServer) watchLost(t *testing.T, id string, opts func(*mqtt.ClientOptions)) *atomic.Bool {
	t.Helper()
	var lost atomic.Bool
	_, err := s.client(t, id, func(o *mqtt.ClientOptions) {
		opts(o)
		o.SetConnectionLostHandler(func(mqtt.Client, error) { lost.Store(true) })
	})
	if err != nil {
		t.Fatalf("%s: connect: %v", id, err)
	}
	return &lost
}

// A live session ends when its client certificate expires, and the certificate is refused
// from then on (issue 3: expired certificate; CASES 2.10 siblings).
func TestCertificateExpiryEndsSession(t *testing.T) {
	s := startSecure(t)
	ca, err := pki.Open(filepath.Join(s.dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	certPEM, keyPEM, err := ca.IssueDevice("short-1", 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "c.crt"), filepath.Join(dir, "c.key")
	os.WriteFile(certFile, certPEM, 0o600)
	os.WriteFile(keyFile, keyPEM, 0o600)
	leaf, _ := pem.Decode(certPEM)
	cert, _ := x509.ParseCertificate(leaf.Bytes)

	lost := s.watchLost(t, "short-1", withCert(t, s, certFile, keyFile))
	eventuallyT(t, 10*time.Second, "the session to end at the certificate's expiry", lost.Load)
	if time.Now().Before(cert.NotAfter) {
		t.Fatalf("session ended before the certificate expired (%v)", cert.NotAfter)
	}
	if _, err := s.client(t, "short-1", withCert(t, s, certFile, keyFile)); err == nil {
		t.Fatal("expired certificate accepted")
	}
}

// hospitalCA is an external CA as a hospital runs it: its own root, device certificates
// with the vitalmq device identity, and a CRL file it rewrites.
type hospitalCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	crl  int64 // CRL number
}

func newHospitalCA(t *testing.T, name string) *hospitalCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return &hospitalCA{cert: c, key: key}
}

func (h *hospitalCA) pem() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: h.cert.Raw})
}

// device issues a client certificate for device id; it returns the files and the serial.
func (h *hospitalCA) device(t *testing.T, id string, serial int64) (certFile, keyFile string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	u, _ := url.Parse("urn:vitalmq:device:" + id)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: id},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), URIs: []*url.URL{u},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, h.cert, &key.PublicKey, h.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, id+".crt"), filepath.Join(dir, id+".key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)
	return certFile, keyFile
}

// writeCRL writes a CRL revoking serials, atomically as an operator's tooling would.
func (h *hospitalCA) writeCRL(t *testing.T, path string, serials ...int64) {
	t.Helper()
	h.crl++
	tmpl := &x509.RevocationList{Number: big.NewInt(h.crl), ThisUpdate: time.Now().Add(-time.Minute), NextUpdate: time.Now().Add(time.Hour)}
	for _, s := range serials {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: big.NewInt(s), RevocationTime: time.Now()})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, h.cert, h.key)
	if err != nil {
		t.Fatal(err)
	}
	writeAtomic(t, path, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}))
}

func writeAtomic(t *testing.T, path string, b []byte) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// An external hospital CA (client_ca) with its CRL (client_crl): its devices connect, the
// built-in CA's do not; a new CRL disconnects a revoked device's live session within a
// second and refuses it from then on, without touching other devices; a rotated CA bundle
// and a broken CRL file apply (or are refused) without a restart.
func TestExternalCAWithCRL(t *testing.T) {
	dir := t.TempDir()
	caFile, crlFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.crl")
	hosp := newHospitalCA(t, "Hospital Devices CA")
	writeAtomic(t, caFile, hosp.pem())
	hosp.writeCRL(t, crlFile)
	s := startSecureWith(t, fmt.Sprintf(`
[[listener]]
name = "mqtts"
type = "tls"
address = "127.0.0.1:0"
client_auth = "required"
client_ca = %q
client_crl = %q
`, caFile, crlFile))

	c1, k1 := hosp.device(t, "ext-1", 101)
	c2, k2 := hosp.device(t, "ext-2", 102)
	lost1 := s.watchLost(t, "ext-1", withCert(t, s, c1, k1))
	lost2 := s.watchLost(t, "ext-2", withCert(t, s, c2, k2))

	bc, bk := s.enroll(t, "builtin-1")
	if _, err := s.client(t, "builtin-1", withCert(t, s, bc, bk)); err == nil {
		t.Error("a built-in CA certificate was accepted on a listener that trusts only the hospital CA")
	}

	// Revocation: ext-1 is cut off, ext-2 stays.
	revokedAt := time.Now()
	hosp.writeCRL(t, crlFile, 101)
	eventuallyT(t, 5*time.Second, "the revoked device to be disconnected", lost1.Load)
	t.Logf("revoked device disconnected after %v", time.Since(revokedAt).Round(time.Millisecond))
	if _, err := s.client(t, "ext-1", withCert(t, s, c1, k1)); err == nil {
		t.Error("revoked certificate accepted")
	}
	if lost2.Load() {
		t.Error("another device lost its connection")
	}

	// A CRL file that does not parse keeps the previous trust in force (and is audited).
	writeAtomic(t, crlFile, []byte("not a CRL"))
	eventuallyT(t, 5*time.Second, "the failed reload to be audited", func() bool {
		b, _ := os.ReadFile(filepath.Join(s.dir, "audit", "audit.log"))
		return strings.Contains(string(b), `"reload_failed"`) && strings.Contains(string(b), `"client_ca"`)
	})
	if _, err := s.client(t, "ext-1", withCert(t, s, c1, k1)); err == nil {
		t.Error("revoked certificate accepted after a broken CRL was written")
	}
	hosp.writeCRL(t, crlFile, 101) // fixed

	// CA rotation: a bundle with a second CA; its devices are accepted without a restart.
	hosp2 := newHospitalCA(t, "Hospital Devices CA 2026")
	writeAtomic(t, caFile, append(hosp.pem(), hosp2.pem()...))
	c3, k3 := hosp2.device(t, "ext-3", 7)
	eventuallyT(t, 5*time.Second, "a device of the rotated CA to connect", func() bool {
		_, err := s.client(t, "ext-3", withCert(t, s, c3, k3))
		return err == nil
	})
	if lost2.Load() {
		t.Error("another device lost its connection")
	}
}
