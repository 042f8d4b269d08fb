package loadgen

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// writeCert creates a self-signed certificate (a CA when isCA) and writes it and its key as
// PEM files; it returns their paths.
func writeCert(t *testing.T, dir, name string, isCA bool) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: isCA, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile
}

// Minted certificates chain to the CA, are for client authentication and carry the client
// id as vitalmq device identity; a non-CA certificate or a key of another certificate is
// refused.
func TestCertMinter(t *testing.T) {
	dir := t.TempDir()
	caCert, caKey := writeCert(t, dir, "ca", true)
	m, err := NewCertMinter(caCert, caKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := m.Cert("dev-7")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(m.ca)
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("minted certificate does not verify against the CA: %v", err)
	}
	if len(leaf.URIs) != 1 || leaf.URIs[0].String() != "urn:vitalmq:device:dev-7" || leaf.Subject.CommonName != "dev-7" {
		t.Fatalf("identity: CN %q, URIs %v", leaf.Subject.CommonName, leaf.URIs)
	}

	leafCert, leafKey := writeCert(t, dir, "leaf", false)
	if _, err := NewCertMinter(leafCert, leafKey); err == nil {
		t.Fatal("a certificate that is not a CA was accepted")
	}
	if _, err := NewCertMinter(caCert, leafKey); err == nil {
		t.Fatal("a key that does not match the CA certificate was accepted")
	}
}
