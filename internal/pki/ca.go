package pki

import (
	"vitalmq/internal/atomicfile"

	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Validity periods.
const (
	// CAValidity is the lifetime of a CA created by Init.
	CAValidity = 10 * 365 * 24 * time.Hour
	// DefaultServerValidity is the server certificate lifetime used when a validity of 0 is given.
	DefaultServerValidity = 365 * 24 * time.Hour
	// DefaultDeviceValidity is the device certificate lifetime used when a validity of 0 is given.
	DefaultDeviceValidity = 365 * 24 * time.Hour
	// CRLValidity is the time between a CRL's ThisUpdate and NextUpdate; CRL re-issues a CRL once
	// less than half of it is left.
	CRLValidity = 7 * 24 * time.Hour
	// clockSkew backdates NotBefore so that a peer whose clock is slightly behind accepts a new certificate.
	clockSkew = 5 * time.Minute
)

// Errors returned by this package; match them with errors.Is.
var (
	// ErrExists is returned by Init when the directory already holds CA files.
	ErrExists = errors.New("pki: directory already holds a CA")
	// ErrBadDeviceID is returned for a device id that is not 1-64 characters of [a-z0-9-].
	ErrBadDeviceID = errors.New("pki: device id must be 1-64 characters of [a-z0-9-]")
	// ErrNoDeviceID is returned by DeviceID for a certificate without exactly one well-formed device URI.
	ErrNoDeviceID = errors.New("pki: certificate carries no device identity")
	// ErrBadValidity is returned for a negative validity.
	ErrBadValidity = errors.New("pki: validity must not be negative")
	// ErrBadHost is returned for a host that is neither an IP address nor a valid DNS name.
	ErrBadHost = errors.New("pki: host is neither an IP address nor a DNS name")
	// ErrBadCSR is returned by SignCSR for a CSR that does not parse or whose signature is wrong.
	ErrBadCSR = errors.New("pki: bad certificate signing request")
	// ErrWeakKey is returned by SignCSR for a public key other than ECDSA P-256/P-384 or RSA 2048-8192 bits.
	ErrWeakKey = errors.New("pki: public key type or size not accepted (ECDSA P-256/P-384 or RSA >= 2048 bits)")
	// ErrCAExpired is returned when issuing from a CA that is no longer valid.
	ErrCAExpired = errors.New("pki: CA certificate has expired")
	// ErrUnknownDevice is returned by Revoke for a device id that has no certificate.
	ErrUnknownDevice = errors.New("pki: no certificate was issued to this device")
	// ErrUnknownSerial is returned by RevokeSerial for a serial that this CA did not issue to a device.
	ErrUnknownSerial = errors.New("pki: no device certificate has this serial")
	// ErrBadReason is returned for a revocation reason longer than 200 bytes or with control characters.
	ErrBadReason = errors.New("pki: revocation reason must be at most 200 printable characters")
	// ErrRevoked is returned by VerifyClient for a revoked certificate.
	ErrRevoked = errors.New("pki: certificate has been revoked")
	// ErrNotIssued is returned by VerifyClient for a certificate that chains to the CA but is not in its index.
	ErrNotIssued = errors.New("pki: certificate is not in the CA's index of issued certificates")
	// ErrNoClientCert is returned by VerifyClient when the peer sent no certificate.
	ErrNoClientCert = errors.New("pki: no client certificate")
	// ErrInsecurePermissions is returned by Open for a private key file readable by group or others.
	ErrInsecurePermissions = errors.New("pki: private key file permissions too open")
)

// CA is a certificate authority kept in a directory (see the package documentation for its files).
// It is safe for concurrent use; several *CA values, in one process or several, may share a directory.
type CA struct {
	dir  string
	cert *x509.Certificate
	key  crypto.Signer
	pool *x509.CertPool

	wmu   sync.Mutex               // serializes this process's writers (the flock serializes processes)
	snap  atomic.Pointer[snapshot] // revocation state as last read or written
	rldMu sync.Mutex               // serializes Reload
}

// Init creates a new CA in dir (created with mode 0700, or set to 0700 if it exists) and a server
// certificate for hosts, valid for serverValidity (0 means DefaultServerValidity). localhost, 127.0.0.1
// and ::1 are always included in the server certificate. Init refuses with ErrExists when dir already
// holds any CA file; on any other failure it removes what it wrote.
func Init(dir string, hosts []string, serverValidity time.Duration) (*CA, error) {
	serverValidity, err := validityOrDefault(serverValidity, DefaultServerValidity)
	if err != nil {
		return nil, err
	}
	dnsNames, ips, err := normalizeHosts(hosts)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, dirPerm); err != nil {
		return nil, fmt.Errorf("pki: create %s: %w", dir, err)
	}
	if err := os.Chmod(dir, dirPerm); err != nil {
		return nil, fmt.Errorf("pki: chmod %s: %w", dir, err)
	}
	unlock, err := atomicfile.Lock(filepath.Join(dir, lockFileName), secretPerm)
	if err != nil {
		return nil, err
	}
	defer unlock()
	for _, name := range []string{caCertFile, caKeyFile, serverCertFile, serverKeyFile, indexFileName, crlFileName} {
		if _, err := os.Lstat(filepath.Join(dir, name)); err == nil || !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s exists", ErrExists, filepath.Join(dir, name))
		}
	}

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: generate CA key: %w", err)
	}
	suffix := make([]byte, 4)
	if _, err := rand.Read(suffix); err != nil {
		return nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "vitalmq CA " + hex.EncodeToString(suffix), Organization: []string{"vitalmq"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("pki: create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	ca := newCA(dir, cert, key)

	written := []string{}
	ok := false
	defer func() {
		if !ok {
			for _, p := range written {
				os.Remove(p)
			}
		}
	}()
	write := func(name string, data []byte, perm fs.FileMode) error {
		p := filepath.Join(dir, name)
		written = append(written, p)
		return atomicfile.WriteFile(p, data, perm)
	}
	keyPEM, err := marshalKey(key)
	if err != nil {
		return nil, err
	}
	if err := write(caKeyFile, keyPEM, secretPerm); err != nil {
		return nil, err
	}
	if err := write(caCertFile, pemBlock("CERTIFICATE", der), publicPerm); err != nil {
		return nil, err
	}
	written = append(written, filepath.Join(dir, serverKeyFile), filepath.Join(dir, serverCertFile))
	if err := ca.writeServer(dnsNames, ips, serverValidity); err != nil {
		return nil, err
	}
	idx := indexFile{Version: indexVersion, CRLNumber: 1}
	crlDER, err := ca.createCRL(&idx, now)
	if err != nil {
		return nil, err
	}
	written = append(written, filepath.Join(dir, indexFileName))
	snap, err := ca.writeIndex(&idx)
	if err != nil {
		return nil, err
	}
	if err := write(crlFileName, pemBlock("X509 CRL", crlDER), publicPerm); err != nil {
		return nil, err
	}
	ca.snap.Store(snap)
	ok = true
	return ca, nil
}

// Open opens the CA kept in dir. An error names the file that is missing, unreadable, corrupt or
// inconsistent (a key that does not match its certificate, a server certificate not issued by the CA),
// or a private key file readable by group or others (ErrInsecurePermissions).
func Open(dir string) (*CA, error) {
	path := func(name string) string { return filepath.Join(dir, name) }
	certPEM, err := readFile(path(caCertFile))
	if err != nil {
		return nil, err
	}
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: %s is corrupt: %w", path(caCertFile), err)
	}
	if !cert.IsCA || cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("pki: %s is not a CA certificate", path(caCertFile))
	}
	key, err := readKey(path(caKeyFile), cert)
	if err != nil {
		return nil, err
	}
	ca := newCA(dir, cert, key)

	scertPEM, err := readFile(path(serverCertFile))
	if err != nil {
		return nil, err
	}
	scert, err := parseCertPEM(scertPEM)
	if err != nil {
		return nil, fmt.Errorf("pki: %s is corrupt: %w", path(serverCertFile), err)
	}
	if err := scert.CheckSignatureFrom(cert); err != nil {
		return nil, fmt.Errorf("pki: %s was not issued by %s: %w", path(serverCertFile), path(caCertFile), err)
	}
	if _, err := readKey(path(serverKeyFile), scert); err != nil {
		return nil, err
	}
	if err := ca.Reload(); err != nil {
		return nil, err
	}
	return ca, nil
}

func newCA(dir string, cert *x509.Certificate, key crypto.Signer) *CA {
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &CA{dir: dir, cert: cert, key: key, pool: pool}
}

// Dir returns the CA's directory.
func (ca *CA) Dir() string { return ca.dir }

// Certificate returns the CA certificate. The caller must not modify it.
func (ca *CA) Certificate() *x509.Certificate { return ca.cert }

// Pool returns a new certificate pool holding only the CA certificate (for tls.Config.ClientCAs on the
// broker, and RootCAs on clients).
func (ca *CA) Pool() *x509.CertPool { return ca.pool.Clone() }

// ServerCertFiles returns the paths of the server certificate and its private key.
func (ca *CA) ServerCertFiles() (certFile, keyFile string) {
	return filepath.Join(ca.dir, serverCertFile), filepath.Join(ca.dir, serverKeyFile)
}

// CRLFile returns the path of the PEM CRL rewritten on every revocation.
func (ca *CA) CRLFile() string { return filepath.Join(ca.dir, crlFileName) }

// IssueServer issues a new server key and certificate for hosts (localhost, 127.0.0.1 and ::1 are
// always included), valid for validity (0 means DefaultServerValidity), and replaces server.crt and
// server.key (the key first, then the certificate, each atomically).
func (ca *CA) IssueServer(hosts []string, validity time.Duration) error {
	v, err := validityOrDefault(validity, DefaultServerValidity)
	if err != nil {
		return err
	}
	dnsNames, ips, err := normalizeHosts(hosts)
	if err != nil {
		return err
	}
	ca.wmu.Lock()
	defer ca.wmu.Unlock()
	unlock, err := atomicfile.Lock(filepath.Join(ca.dir, lockFileName), secretPerm)
	if err != nil {
		return err
	}
	defer unlock()
	return ca.writeServer(dnsNames, ips, v)
}

// writeServer issues and writes the server key and certificate; the caller holds the locks.
func (ca *CA) writeServer(dnsNames []string, ips []net.IP, v time.Duration) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return fmt.Errorf("pki: generate server key: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return err
	}
	now := time.Now()
	notAfter, err := ca.clampNotAfter(now, now.Add(v))
	if err != nil {
		return err
	}
	cn := "localhost"
	if len(dnsNames) > 0 {
		cn = dnsNames[0]
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"vitalmq"}},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		DNSNames:              dnsNames,
		IPAddresses:           ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		return fmt.Errorf("pki: create server certificate: %w", err)
	}
	keyPEM, err := marshalKey(key)
	if err != nil {
		return err
	}
	certFile, keyFile := ca.ServerCertFiles()
	if err := atomicfile.WriteFile(keyFile, keyPEM, secretPerm); err != nil {
		return err
	}
	return atomicfile.WriteFile(certFile, pemBlock("CERTIFICATE", der), publicPerm)
}

// clampNotAfter keeps a certificate from outliving the CA.
func (ca *CA) clampNotAfter(now, notAfter time.Time) (time.Time, error) {
	if !now.Before(ca.cert.NotAfter) {
		return time.Time{}, ErrCAExpired
	}
	if notAfter.After(ca.cert.NotAfter) {
		notAfter = ca.cert.NotAfter
	}
	return notAfter, nil
}

// validityOrDefault returns v, or def when v is 0; a negative v is ErrBadValidity.
func validityOrDefault(v, def time.Duration) (time.Duration, error) {
	switch {
	case v < 0:
		return 0, ErrBadValidity
	case v == 0:
		return def, nil
	}
	return v, nil
}

// normalizeHosts splits hosts into DNS names (lower-cased) and IP addresses, adds the loopback names,
// and removes duplicates.
func normalizeHosts(hosts []string) ([]string, []net.IP, error) {
	var dnsNames []string
	var ips []net.IP
	seen := map[string]bool{}
	for _, h := range append(append([]string{}, hosts...), "localhost", "127.0.0.1", "::1") {
		h = strings.TrimSpace(h)
		if strings.HasPrefix(h, "[") && strings.HasSuffix(h, "]") {
			h = h[1 : len(h)-1]
		}
		if ip := net.ParseIP(h); ip != nil {
			if ip4 := ip.To4(); ip4 != nil {
				ip = ip4
			}
			if !seen[ip.String()] {
				seen[ip.String()] = true
				ips = append(ips, ip)
			}
			continue
		}
		h = strings.TrimSuffix(strings.ToLower(h), ".")
		if !validDNSName(h) {
			return nil, nil, fmt.Errorf("%w: %q", ErrBadHost, h)
		}
		if !seen[h] {
			seen[h] = true
			dnsNames = append(dnsNames, h)
		}
	}
	return dnsNames, ips, nil
}

// validDNSName accepts a lower-case host name of labels [a-z0-9-] (not starting or ending with '-'),
// optionally with a leading "*." wildcard label.
func validDNSName(h string) bool {
	h = strings.TrimPrefix(h, "*.")
	if h == "" || len(h) > 253 {
		return false
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

// randomSerial returns a random, positive 128-bit serial number.
func randomSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("pki: serial: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func marshalKey(key any) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("pki: encode private key: %w", err)
	}
	return pemBlock("PRIVATE KEY", der), nil
}

func parseCertPEM(b []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no CERTIFICATE PEM block")
	}
	return x509.ParseCertificate(block.Bytes)
}

// readKey reads the private key in path, checks its permissions, and that it matches cert.
// Errors never include key material.
func readKey(path string, cert *x509.Certificate) (crypto.Signer, error) {
	b, err := readFile(path)
	if err != nil {
		return nil, err
	}
	if err := checkKeyPerm(path); err != nil {
		return nil, err
	}
	block, _ := pem.Decode(b)
	if block == nil {
		return nil, fmt.Errorf("pki: %s is corrupt: no PEM block", path)
	}
	var key any
	switch block.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(block.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(block.Bytes)
	default:
		return nil, fmt.Errorf("pki: %s is corrupt: unexpected PEM block %q", path, block.Type)
	}
	if err != nil {
		return nil, fmt.Errorf("pki: %s is corrupt: private key does not parse", path)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("pki: %s: unsupported private key type", path)
	}
	pub, ok := signer.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("pki: %s does not match the public key of its certificate", path)
	}
	return signer, nil
}
