package loadgen

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net/url"
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

// NewCertMinter loads the CA certificate and its private key (PEM; the key must match).
func NewCertMinter(certFile, keyFile string) (*CertMinter, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("CA certificate and key: %w", err)
	}
	if !pair.Leaf.IsCA {
		return nil, fmt.Errorf("%s: not a CA certificate", certFile)
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, errors.New(keyFile + ": not a signing key")
	}
	return &CertMinter{ca: pair.Leaf, key: signer}, nil
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
