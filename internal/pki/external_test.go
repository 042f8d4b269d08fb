package pki

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func caPEM(ca *CA) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.cert.Raw})
}

func derCRL(t *testing.T, ca *CA, serials ...*big.Int) []byte {
	t.Helper()
	tmpl := &x509.RevocationList{Number: big.NewInt(time.Now().UnixNano()), ThisUpdate: time.Now(), NextUpdate: time.Now().Add(time.Hour)}
	for _, s := range serials {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries, x509.RevocationListEntry{SerialNumber: s, RevocationTime: time.Now()})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, ca.cert, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func peer(c *x509.Certificate) tls.ConnectionState {
	return tls.ConnectionState{PeerCertificates: []*x509.Certificate{c}}
}

// External verifies chains against the bundle, applies CRLs (DER or PEM) signed by a CA of
// the bundle, and keeps the previous trust when a changed file is bad.
func TestExternal(t *testing.T) {
	hosp, other := newTestCA(t), newTestCA(t)
	dir := t.TempDir()
	caFile, crlFile := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.crl")
	os.WriteFile(caFile, caPEM(hosp), 0o644)
	os.WriteFile(crlFile, derCRL(t, hosp), 0o644)
	e, err := OpenExternal(caFile, crlFile)
	if err != nil {
		t.Fatal(err)
	}
	good, _ := issueDevice(t, hosp, "good-1")
	foreign, _ := issueDevice(t, other, "foreign-1")
	expired, _ := issueDeviceAt(t, hosp, "old-1", time.Now().Add(-2*time.Hour), time.Now().Add(-time.Hour))
	if err := e.VerifyConnection(peer(good)); err != nil {
		t.Fatalf("device of the bundle's CA refused: %v", err)
	}
	for name, c := range map[string]*x509.Certificate{"other CA": foreign, "expired": expired} {
		if err := e.VerifyConnection(peer(c)); err == nil {
			t.Errorf("%s certificate accepted", name)
		}
	}

	// A new CRL (DER) revokes.
	os.WriteFile(crlFile, derCRL(t, hosp, good.SerialNumber), 0o644)
	if changed, err := e.Reload(); !changed || err != nil {
		t.Fatalf("Reload = %v, %v; want changed", changed, err)
	}
	if err := e.VerifyConnection(peer(good)); !errors.Is(err, ErrRevoked) {
		t.Fatalf("revoked certificate: %v, want ErrRevoked", err)
	}
	if !e.Revoked(CertKey(good)) {
		t.Fatal("Revoked(CertKey) false for a revoked certificate")
	}

	// A CRL signed by a CA outside the bundle is refused, once; the previous list stays.
	os.WriteFile(crlFile, pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: derCRL(t, other)}), 0o644)
	if _, err := e.Reload(); err == nil || !strings.Contains(err.Error(), crlFile) {
		t.Fatalf("foreign CRL: %v, want an error naming %s", err, crlFile)
	}
	if changed, err := e.Reload(); changed || err != nil {
		t.Fatalf("second Reload of the same bad file = %v, %v; want it reported once", changed, err)
	}
	if !e.Revoked(CertKey(good)) {
		t.Fatal("a bad CRL file dropped the previous revocations")
	}

	// A bundle with a non-CA certificate is refused, naming the file.
	leafPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: good.Raw})
	os.WriteFile(filepath.Join(dir, "leaf.pem"), leafPEM, 0o644)
	if _, err := OpenExternal(filepath.Join(dir, "leaf.pem"), ""); err == nil || !strings.Contains(err.Error(), "leaf.pem") {
		t.Fatalf("leaf as CA bundle: %v", err)
	}
}
