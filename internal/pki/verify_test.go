package pki

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"math/big"
	"net/url"
	"testing"
	"time"
)

func TestVerifyClient(t *testing.T) {
	ca := newTestCA(t)
	otherCA := newTestCA(t)
	now := time.Now()

	_, good := issueDevice(t, ca, "good-1")
	_, revoked := issueDevice(t, ca, "revoked-1")
	if _, err := ca.Revoke("revoked-1", ""); err != nil {
		t.Fatal(err)
	}
	_, expired := issueDeviceAt(t, ca, "expired-1", now.Add(-2*time.Hour), now.Add(-time.Hour))
	_, notYet := issueDeviceAt(t, ca, "future-1", now.Add(time.Hour), now.Add(2*time.Hour))
	_, foreign := issueDevice(t, otherCA, "good-1") // same id, another CA
	certFile, keyFile := ca.ServerCertFiles()
	server, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	// Signed with the CA key but never recorded in the index (as with a stolen key or a lost index).
	key := newKey(t)
	unindexed, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: mustSerial(t), Subject: pkix.Name{CommonName: "ghost"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs: []*url.URL{{Scheme: "urn", Opaque: "vitalmq:device:ghost"}},
	}, ca.Certificate(), &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	// Signed by the CA, ClientAuth, but without a device identity.
	anonymous, err := x509.CreateCertificate(rand.Reader, &x509.Certificate{
		SerialNumber: mustSerial(t), Subject: pkix.Name{CommonName: "good-1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, ca.Certificate(), &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		name   string
		raw    [][]byte
		wantID string
		want   error // nil: any error
	}{
		{"good device", good.Certificate, "good-1", nil},
		{"good device with extra chain certs", [][]byte{good.Certificate[0], ca.Certificate().Raw}, "good-1", nil},
		{"revoked", revoked.Certificate, "", ErrRevoked},
		{"expired", expired.Certificate, "", nil},
		{"not yet valid", notYet.Certificate, "", nil},
		{"other CA", foreign.Certificate, "", nil},
		{"server certificate", server.Certificate, "", nil},
		{"CA certificate", [][]byte{ca.Certificate().Raw}, "", nil},
		{"not in index", [][]byte{unindexed}, "", ErrNotIssued},
		{"no device identity", [][]byte{anonymous}, "", ErrNoDeviceID},
		{"no certificate", nil, "", ErrNoClientCert},
		{"garbage", [][]byte{{0x30, 0x01, 0x00}}, "", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			id, err := ca.VerifyClient(c.raw)
			if c.wantID != "" {
				if err != nil || id != c.wantID {
					t.Errorf("VerifyClient = %q, %v; want %q", id, err, c.wantID)
				}
				return
			}
			if err == nil || id != "" {
				t.Fatalf("VerifyClient = %q, %v; want an error", id, err)
			}
			if c.want != nil && !errors.Is(err, c.want) {
				t.Errorf("VerifyClient error %v, want %v", err, c.want)
			}
		})
	}
}

func TestTLSHandshake(t *testing.T) {
	ca := newTestCA(t)
	otherCA := newTestCA(t)
	now := time.Now()
	_, good := issueDevice(t, ca, "spo2-1")
	_, revoked := issueDevice(t, ca, "spo2-2")
	if _, err := ca.Revoke("spo2-2", "keyCompromise"); err != nil {
		t.Fatal(err)
	}
	_, expired := issueDeviceAt(t, ca, "spo2-3", now.Add(-2*time.Hour), now.Add(-time.Hour))
	_, foreign := issueDevice(t, otherCA, "spo2-1")

	for _, c := range []struct {
		name   string
		certs  []tls.Certificate
		server string // ServerName the client asks for
		wantOK bool
	}{
		{"enrolled device", []tls.Certificate{good}, "localhost", true},
		{"enrolled device to 127.0.0.1", []tls.Certificate{good}, "127.0.0.1", true},
		{"enrolled device to configured host", []tls.Certificate{good}, "mqtt.example.org", true},
		{"revoked device", []tls.Certificate{revoked}, "localhost", false},
		{"expired device", []tls.Certificate{expired}, "localhost", false},
		{"device of another CA", []tls.Certificate{foreign}, "localhost", false},
		{"no client certificate", nil, "localhost", false},
		{"server name not in certificate", []tls.Certificate{good}, "evil.example.org", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := handshake(t, serverTLSConfig(t, ca), &tls.Config{
				RootCAs: ca.Pool(), ServerName: c.server, Certificates: c.certs, MinVersion: tls.VersionTLS12,
			})
			if !c.wantOK {
				if r.serverErr == nil && r.clientErr == nil {
					t.Fatal("handshake succeeded")
				}
				return
			}
			if r.serverErr != nil || r.clientErr != nil {
				t.Fatalf("handshake: server %v, client %v", r.serverErr, r.clientErr)
			}
			if len(r.server.PeerCertificates) == 0 {
				t.Fatal("server saw no client certificate")
			}
			if id, err := DeviceID(r.server.PeerCertificates[0]); err != nil || id != "spo2-1" {
				t.Errorf("DeviceID of the peer = %q, %v", id, err)
			}
		})
	}
}

// TestTLSResumptionRechecksRevocation: a revoked device must not get back in by resuming a TLS session
// (tls.Config.VerifyPeerCertificate is not called on resumption; VerifyConnection is).
func TestTLSResumptionRechecksRevocation(t *testing.T) {
	ca := newTestCA(t)
	_, pair := issueDevice(t, ca, "ecg-1")
	serverCfg := serverTLSConfig(t, ca)
	clientCfg := &tls.Config{
		RootCAs: ca.Pool(), ServerName: "localhost", Certificates: []tls.Certificate{pair},
		ClientSessionCache: tls.NewLRUClientSessionCache(4),
	}
	resume := func() handshakeResult {
		s, c := tcpPair(t)
		return handshakeOver(t, s, c, serverCfg, clientCfg)
	}
	if r := resume(); r.serverErr != nil || r.clientErr != nil {
		t.Fatalf("first handshake: server %v, client %v", r.serverErr, r.clientErr)
	}
	r := resume()
	if r.serverErr != nil || r.clientErr != nil {
		t.Fatalf("second handshake: server %v, client %v", r.serverErr, r.clientErr)
	}
	if !r.client.DidResume {
		t.Fatal("second handshake did not resume: the test would prove nothing")
	}
	if _, err := ca.Revoke("ecg-1", ""); err != nil {
		t.Fatal(err)
	}
	r = resume()
	if r.serverErr == nil {
		t.Fatalf("revoked device resumed its session (client resumed=%v)", r.client.DidResume)
	}
	if !errors.Is(r.serverErr, ErrRevoked) {
		t.Errorf("server error %v, want ErrRevoked", r.serverErr)
	}
}

func mustSerial(t *testing.T) *big.Int {
	t.Helper()
	n, err := randomSerial()
	if err != nil {
		t.Fatal(err)
	}
	return n
}
