package pki

import (
	"vitalmq/internal/atomicfile"

	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/url"
	"os"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	atomicfile.Sync = false // fsync is slow on shared CI disks; TestInitOpenRoundTrip turns it back on
	os.Exit(m.Run())
}

// testHosts are the extra server hosts every test CA is created with.
var testHosts = []string{"mqtt.example.org", "10.0.0.5"}

func newTestCA(t *testing.T) *CA {
	t.Helper()
	ca, err := Init(t.TempDir(), testHosts, 0)
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	return ca
}

func mustParseCert(t *testing.T, certPEM []byte) *x509.Certificate {
	t.Helper()
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		t.Fatalf("parse certificate: %v", err)
	}
	return cert
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// issueDevice issues a device certificate and returns it parsed, with its PEM pair.
func issueDevice(t *testing.T, ca *CA, id string) (*x509.Certificate, tls.Certificate) {
	t.Helper()
	certPEM, keyPEM, err := ca.IssueDevice(id, 0)
	if err != nil {
		t.Fatalf("IssueDevice(%q): %v", id, err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatalf("X509KeyPair: %v", err)
	}
	return mustParseCert(t, certPEM), pair
}

// issueDeviceAt issues a device certificate with explicit validity bounds (for expired certificates).
func issueDeviceAt(t *testing.T, ca *CA, id string, notBefore, notAfter time.Time) (*x509.Certificate, tls.Certificate) {
	t.Helper()
	key := newKey(t)
	der, err := ca.issueDevice(id, &key.PublicKey, notBefore, notAfter)
	if err != nil {
		t.Fatalf("issueDevice: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: cert}
}

// selfSigned returns a throwaway self-signed certificate carrying uris, for DeviceID tests.
func selfSigned(t *testing.T, uris ...string) *x509.Certificate {
	t.Helper()
	key := newKey(t)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "x"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	for _, u := range uris {
		pu, err := url.Parse(u)
		if err != nil {
			t.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, pu)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

func makeCSR(t *testing.T, key crypto.Signer, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	if tmpl == nil {
		tmpl = &x509.CertificateRequest{Subject: pkix.Name{CommonName: "device"}}
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatalf("CreateCertificateRequest: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

func serverTLSConfig(t *testing.T, ca *CA) *tls.Config {
	t.Helper()
	certFile, keyFile := ca.ServerCertFiles()
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatalf("LoadX509KeyPair: %v", err)
	}
	return &tls.Config{
		Certificates:     []tls.Certificate{pair},
		ClientAuth:       tls.RequireAndVerifyClientCert,
		ClientCAs:        ca.Pool(),
		VerifyConnection: ca.VerifyConnection,
		MinVersion:       tls.VersionTLS12,
	}
}

type handshakeResult struct {
	server, client       tls.ConnectionState
	serverErr, clientErr error
}

// handshake runs a TLS handshake over net.Pipe; on success the server writes one byte that the client
// reads (which also makes the client process TLS 1.3 session tickets).
func handshake(t *testing.T, serverCfg, clientCfg *tls.Config) handshakeResult {
	t.Helper()
	c1, c2 := net.Pipe()
	return handshakeOver(t, c1, c2, serverCfg, clientCfg)
}

// tcpPair returns both ends of a loopback TCP connection. Unlike net.Pipe it buffers, which a TLS 1.3
// resumption needs: there both sides write at once (the server's session tickets, the client's Finished).
func tcpPair(t *testing.T) (server, client net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-accepted
	if server == nil {
		t.Fatal("accept failed")
	}
	return server, client
}

// handshakeOver runs handshake on the given connection pair.
func handshakeOver(t *testing.T, c1, c2 net.Conn, serverCfg, clientCfg *tls.Config) handshakeResult {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	c1.SetDeadline(deadline)
	c2.SetDeadline(deadline)
	srv, cli := tls.Server(c1, serverCfg), tls.Client(c2, clientCfg)
	var r handshakeResult
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer c1.Close() // not srv.Close: no close_notify, which would block on an unbuffered pipe
		if r.serverErr = srv.Handshake(); r.serverErr == nil {
			r.server = srv.ConnectionState()
			_, r.serverErr = srv.Write([]byte("x"))
		}
	}()
	if r.clientErr = cli.Handshake(); r.clientErr == nil {
		_, r.clientErr = io.ReadFull(cli, make([]byte, 1))
		r.client = cli.ConnectionState()
	}
	c2.Close()
	<-done
	return r
}
