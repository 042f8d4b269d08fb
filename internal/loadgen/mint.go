package loadgen

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
	"os"
	"time"
)

// CertMinter issues a client certificate per connection, signed by a CA the broker trusts,
// so that thousands of connections each present their own device identity (mTLS at scale):
// ECDSA P-256, ClientAuth, the client id as subject CN and as the SAN URI
// urn:vitalmq:device:<client id> (vitalmq's device identity), valid for a day.
type CertMinter struct {
	ca  *x509.Certificate
	key crypto.Signer
}

// NewCertMinter loads the CA certificate and its private key (PEM; PKCS#8, EC or PKCS#1).
func NewCertMinter(certFile, keyFile string) (*CertMinter, error) {
	b, err := os.ReadFile(certFile)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%s: no PEM certificate", certFile)
	}
	ca, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", certFile, err)
	}
	if !ca.IsCA {
		return nil, fmt.Errorf("%s: not a CA certificate", certFile)
	}
	if b, err = os.ReadFile(keyFile); err != nil {
		return nil, err
	}
	if blk, _ = pem.Decode(b); blk == nil {
		return nil, fmt.Errorf("%s: no PEM key", keyFile)
	}
	var key any
	switch blk.Type {
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(blk.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", keyFile, err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, errors.New(keyFile + ": not a signing key")
	}
	return &CertMinter{ca: ca, key: signer}, nil
}

// Cert issues a certificate for clientID.
func (m *CertMinter) Cert(clientID string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 126))
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial.Add(serial, big.NewInt(1)),
		Subject:      pkix.Name{CommonName: clientID},
		NotBefore:    now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		URIs:        []*url.URL{{Scheme: "urn", Opaque: "vitalmq:device:" + clientID}},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, m.ca, &key.PublicKey, m.key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}
