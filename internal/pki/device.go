package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"net/url"
	"strings"
	"time"
)

// DeviceURIPrefix is the start of the SAN URI that carries a device's identity: "urn:vitalmq:device:<id>".
const DeviceURIPrefix = "urn:vitalmq:device:"

// maxCSRSize bounds the PEM accepted by SignCSR.
const maxCSRSize = 64 << 10

// validDeviceID reports whether id is 1-64 characters of [a-z0-9-].
func validDeviceID(id string) bool {
	if len(id) < 1 || len(id) > 64 {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// ValidDeviceID reports whether id is a valid device id: 1 to 64 characters of [a-z0-9-].
func ValidDeviceID(id string) bool { return validDeviceID(id) }

// DeviceID returns the device id carried by cert's SAN URI "urn:vitalmq:device:<id>". A certificate with
// no such URI, more than one, or a malformed one is ErrNoDeviceID. DeviceID does not verify cert: use it
// on a certificate verified by VerifyClient (or the TLS handshake with VerifyConnection).
func DeviceID(cert *x509.Certificate) (string, error) {
	if cert == nil {
		return "", ErrNoDeviceID
	}
	id, n := "", 0
	for _, u := range cert.URIs {
		rest, ok := strings.CutPrefix(u.String(), DeviceURIPrefix)
		if !ok {
			continue
		}
		n++
		if !validDeviceID(rest) {
			return "", fmt.Errorf("%w: malformed device URI", ErrNoDeviceID)
		}
		id = rest
	}
	switch n {
	case 0:
		return "", ErrNoDeviceID
	case 1:
		return id, nil
	}
	return "", fmt.Errorf("%w: %d device URIs", ErrNoDeviceID, n)
}

// IssueDevice generates an ECDSA P-256 key pair for device id and a certificate for it valid for
// validity (0 means DefaultDeviceValidity; never beyond the CA's own expiry), records it in the index,
// and returns both as PEM (the key as PKCS#8). The private key is not kept by the CA.
func (ca *CA) IssueDevice(id string, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if !validDeviceID(id) {
		return nil, nil, ErrBadDeviceID
	}
	v, err := validityOrDefault(validity, DefaultDeviceValidity)
	if err != nil {
		return nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: generate device key: %w", err)
	}
	keyPEM, err = marshalKey(key)
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	der, err := ca.issueDevice(id, &key.PublicKey, now.Add(-clockSkew), now.Add(v))
	if err != nil {
		return nil, nil, err
	}
	return pemBlock("CERTIFICATE", der), keyPEM, nil
}

// SignCSR issues a device certificate for the public key of a PEM CSR, so the private key never leaves
// the device. The identity is id; everything else the CSR asks for (subject, SANs, extensions) is
// ignored. The CSR's signature must verify, and its key must be ECDSA P-256/P-384 or RSA of 2048 to
// 8192 bits (ErrWeakKey otherwise). validity 0 means DefaultDeviceValidity.
func (ca *CA) SignCSR(csrPEM []byte, id string, validity time.Duration) (certPEM []byte, err error) {
	if !validDeviceID(id) {
		return nil, ErrBadDeviceID
	}
	v, err := validityOrDefault(validity, DefaultDeviceValidity)
	if err != nil {
		return nil, err
	}
	if len(csrPEM) > maxCSRSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrBadCSR, maxCSRSize)
	}
	block, rest := pem.Decode(csrPEM)
	if block == nil || block.Type != "CERTIFICATE REQUEST" && block.Type != "NEW CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("%w: no CERTIFICATE REQUEST PEM block", ErrBadCSR)
	}
	if extra, _ := pem.Decode(rest); extra != nil {
		return nil, fmt.Errorf("%w: more than one PEM block", ErrBadCSR)
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadCSR, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: signature does not verify: %v", ErrBadCSR, err)
	}
	if err := checkPublicKey(csr.PublicKey); err != nil {
		return nil, err
	}
	now := time.Now()
	der, err := ca.issueDevice(id, csr.PublicKey, now.Add(-clockSkew), now.Add(v))
	if err != nil {
		return nil, err
	}
	return pemBlock("CERTIFICATE", der), nil
}

// checkPublicKey accepts ECDSA P-256/P-384 and RSA 2048-8192 bits.
func checkPublicKey(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		if k.Curve == elliptic.P256() || k.Curve == elliptic.P384() {
			return nil
		}
		return fmt.Errorf("%w: ECDSA curve %s", ErrWeakKey, k.Curve.Params().Name)
	case *rsa.PublicKey:
		if bits := k.N.BitLen(); bits >= 2048 && bits <= 8192 {
			return nil
		}
		return fmt.Errorf("%w: RSA %d bits", ErrWeakKey, k.N.BitLen())
	}
	return fmt.Errorf("%w: %T", ErrWeakKey, pub)
}

// issueDevice signs a ClientAuth certificate for device id and pub valid from notBefore to notAfter
// (clamped to the CA's expiry), and records it in the index. The certificate is returned (DER) only
// once it is recorded.
func (ca *CA) issueDevice(id string, pub crypto.PublicKey, notBefore, notAfter time.Time) ([]byte, error) {
	notAfter, err := ca.clampNotAfter(time.Now(), notAfter)
	if err != nil {
		return nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: id, Organization: []string{"vitalmq"}},
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
		URIs:                  []*url.URL{{Scheme: "urn", Opaque: strings.TrimPrefix(DeviceURIPrefix, "urn:") + id}},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, pub, ca.key)
	if err != nil {
		return nil, fmt.Errorf("pki: create device certificate: %w", err)
	}
	entry := indexEntry{ID: id, Serial: serial.Text(16), IssuedAt: time.Now().UTC().Truncate(time.Second), NotAfter: notAfter.UTC()}
	_, err = ca.mutate(func(idx *indexFile) (bool, error) {
		for _, e := range idx.Certs {
			if e.Serial == entry.Serial {
				return false, fmt.Errorf("pki: serial %s already issued", entry.Serial)
			}
		}
		idx.Certs = append(idx.Certs, entry)
		return false, nil
	})
	if err != nil {
		return nil, err
	}
	return der, nil
}

// VerifyClient verifies a client certificate chain as received in a TLS handshake (the leaf first, as
// tls.Config.VerifyPeerCertificate gets it) and returns the device id. The leaf must chain directly to
// this CA (other certificates sent are ignored), be valid now, allow ClientAuth, carry a device
// identity, be in the CA's index of issued certificates (re-read once if it is not, for a device
// enrolled by another process), and not be revoked (ErrRevoked).
func (ca *CA) VerifyClient(rawCerts [][]byte) (string, error) {
	if len(rawCerts) == 0 {
		return "", ErrNoClientCert
	}
	leaf, err := x509.ParseCertificate(rawCerts[0])
	if err != nil {
		return "", fmt.Errorf("pki: client certificate does not parse: %w", err)
	}
	return ca.VerifyClientCert(leaf)
}

// VerifyClientCert is VerifyClient for a parsed leaf certificate.
func (ca *CA) VerifyClientCert(leaf *x509.Certificate) (string, error) {
	if leaf == nil {
		return "", ErrNoClientCert
	}
	if leaf.IsCA {
		return "", fmt.Errorf("pki: client certificate is a CA certificate")
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:       ca.pool,
		KeyUsages:   []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		CurrentTime: time.Now(),
	})
	if err != nil {
		return "", fmt.Errorf("pki: client certificate not trusted: %w", err)
	}
	id, err := DeviceID(leaf)
	if err != nil {
		return "", err
	}
	e, ok := ca.snap.Load().lookup(leaf.SerialNumber)
	if !ok {
		// Signed by this CA but unknown: perhaps enrolled by another process since the last read.
		if err := ca.Reload(); err != nil {
			return "", err
		}
		if e, ok = ca.snap.Load().lookup(leaf.SerialNumber); !ok {
			return "", fmt.Errorf("%w: device %s serial %s", ErrNotIssued, id, leaf.SerialNumber.Text(16))
		}
	}
	if e.ID != id {
		return "", fmt.Errorf("%w: serial %s is indexed for another device", ErrNotIssued, leaf.SerialNumber.Text(16))
	}
	if e.RevokedAt != nil {
		return "", fmt.Errorf("%w: device %s serial %s", ErrRevoked, id, e.Serial)
	}
	return id, nil
}

// VerifyConnection is a tls.Config.VerifyConnection callback for the broker: it applies VerifyClient to
// the peer's certificate. Unlike VerifyPeerCertificate it also runs on resumed sessions, so a revoked or
// expired device cannot come back with a session ticket.
func (ca *CA) VerifyConnection(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return ErrNoClientCert
	}
	_, err := ca.VerifyClientCert(cs.PeerCertificates[0])
	return err
}
