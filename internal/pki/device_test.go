package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"
)

func TestIssueDevice(t *testing.T) {
	ca := newTestCA(t)
	for _, c := range []struct {
		id       string
		validity time.Duration
		wantLife time.Duration
	}{
		{"pump-1", 0, DefaultDeviceValidity},
		{"a", time.Hour, time.Hour},
		{strings.Repeat("0123456789abcdef", 4), 24 * time.Hour, 24 * time.Hour},
	} {
		t.Run(c.id, func(t *testing.T) {
			certPEM, keyPEM, err := ca.IssueDevice(c.id, c.validity)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Contains(keyPEM, []byte("BEGIN PRIVATE KEY")) {
				t.Error("key is not PKCS#8 PEM")
			}
			cert := mustParseCert(t, certPEM)
			if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
				t.Errorf("device certificate does not verify for ClientAuth: %v", err)
			}
			if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
				t.Error("device certificate verifies for ServerAuth")
			}
			if id, err := DeviceID(cert); err != nil || id != c.id {
				t.Errorf("DeviceID = %q, %v; want %q", id, err, c.id)
			}
			if cert.Subject.CommonName != c.id || len(cert.URIs) != 1 || cert.URIs[0].String() != "urn:vitalmq:device:"+c.id {
				t.Errorf("subject %q, URIs %v", cert.Subject.CommonName, cert.URIs)
			}
			if len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth || cert.IsCA || len(cert.DNSNames) > 0 {
				t.Errorf("ExtKeyUsage %v IsCA %v DNSNames %v", cert.ExtKeyUsage, cert.IsCA, cert.DNSNames)
			}
			if life := time.Until(cert.NotAfter); life < c.wantLife-time.Minute || life > c.wantLife {
				t.Errorf("lifetime %v, want %v", life, c.wantLife)
			}
			if cert.SerialNumber.Sign() <= 0 || cert.SerialNumber.BitLen() > 128 {
				t.Errorf("serial %v not a positive 128-bit number", cert.SerialNumber)
			}
		})
	}
	devs, err := ca.Devices()
	if err != nil || len(devs) != 3 {
		t.Fatalf("Devices = %d entries, %v; want 3", len(devs), err)
	}
	serials := map[string]bool{}
	for _, d := range devs {
		serials[d.Serial.Text(16)] = true
		if d.Revoked || d.NotAfter.IsZero() || d.IssuedAt.IsZero() {
			t.Errorf("device entry %+v", d)
		}
	}
	if len(serials) != 3 {
		t.Errorf("serials not unique: %v", serials)
	}
}

func TestBadDeviceIDs(t *testing.T) {
	ca := newTestCA(t)
	csr := makeCSR(t, newKey(t), nil)
	for _, id := range []string{"", "Pump", "pump_1", "pump 1", "pump/1", "../x", "pump.1", "pümp", "urn:vitalmq:device:x", "a\x00", strings.Repeat("a", 65)} {
		if _, _, err := ca.IssueDevice(id, 0); !errors.Is(err, ErrBadDeviceID) {
			t.Errorf("IssueDevice(%q): %v, want ErrBadDeviceID", id, err)
		}
		if _, err := ca.SignCSR(csr, id, 0); !errors.Is(err, ErrBadDeviceID) {
			t.Errorf("SignCSR(%q): %v, want ErrBadDeviceID", id, err)
		}
		if _, err := ca.Revoke(id, ""); !errors.Is(err, ErrBadDeviceID) {
			t.Errorf("Revoke(%q): %v, want ErrBadDeviceID", id, err)
		}
		if ValidDeviceID(id) {
			t.Errorf("ValidDeviceID(%q) = true", id)
		}
	}
	for _, id := range []string{"a", "0", "-", "bed-12-hr", strings.Repeat("z", 64)} {
		if !ValidDeviceID(id) {
			t.Errorf("ValidDeviceID(%q) = false", id)
		}
	}
	if devs, _ := ca.Devices(); len(devs) != 0 {
		t.Errorf("refused ids left %d index entries", len(devs))
	}
}

func TestDeviceID(t *testing.T) {
	for _, c := range []struct {
		name string
		cert *x509.Certificate
		want string
	}{
		{"device URI", selfSigned(t, "urn:vitalmq:device:bed-7"), "bed-7"},
		{"device URI among others", selfSigned(t, "https://example.org", "urn:vitalmq:device:bed-7", "urn:other:x"), "bed-7"},
		{"nil", nil, ""},
		{"no URI", selfSigned(t), ""},
		{"other URN", selfSigned(t, "urn:vitalmq:user:bed-7"), ""},
		{"two device URIs", selfSigned(t, "urn:vitalmq:device:a", "urn:vitalmq:device:b"), ""},
		{"bad id in URI", selfSigned(t, "urn:vitalmq:device:BED_7"), ""},
		{"empty id", selfSigned(t, "urn:vitalmq:device:"), ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			id, err := DeviceID(c.cert)
			if c.want == "" {
				if !errors.Is(err, ErrNoDeviceID) {
					t.Errorf("DeviceID = %q, %v; want ErrNoDeviceID", id, err)
				}
				return
			}
			if err != nil || id != c.want {
				t.Errorf("DeviceID = %q, %v; want %q", id, err, c.want)
			}
		})
	}
}

func TestSignCSR(t *testing.T) {
	ca := newTestCA(t)
	p256, p384 := newKey(t), mustECDSA(t, elliptic.P384())
	p224 := mustECDSA(t, elliptic.P224())
	rsa1024, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)

	// A CSR that asks for another identity, server use and CA rights.
	bc, _ := asn1.Marshal(struct{ IsCA bool }{true})
	eku, _ := asn1.Marshal([]asn1.ObjectIdentifier{{1, 3, 6, 1, 5, 5, 7, 3, 1}})
	forged := makeCSR(t, p256, &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: "admin", Organization: []string{"vitalmq"}},
		DNSNames: []string{"broker.example.org"},
		URIs:     []*url.URL{{Scheme: "urn", Opaque: "vitalmq:device:other"}},
		ExtraExtensions: []pkix.Extension{
			{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: bc},
			{Id: asn1.ObjectIdentifier{2, 5, 29, 37}, Value: eku},
		},
	})

	// A CSR whose signed content was altered after signing.
	badSig := makeCSR(t, p256, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "device-sig"}})
	block, _ := pem.Decode(badSig)
	i := bytes.Index(block.Bytes, []byte("device-sig"))
	block.Bytes[i] ^= 0x01
	badSig = pem.EncodeToMemory(block)

	cases := []struct {
		name string
		csr  []byte
		key  crypto.PublicKey
		want error
	}{
		{"ECDSA P-256", makeCSR(t, p256, nil), &p256.PublicKey, nil},
		{"ECDSA P-384", makeCSR(t, p384, nil), &p384.PublicKey, nil},
		{"forged subject", forged, &p256.PublicKey, nil},
		{"bad signature", badSig, nil, ErrBadCSR},
		{"RSA 1024", makeCSR(t, rsa1024, nil), nil, ErrWeakKey},
		{"ECDSA P-224", makeCSR(t, p224, nil), nil, ErrWeakKey},
		{"Ed25519", makeCSR(t, edKey, nil), nil, ErrWeakKey},
		{"not PEM", []byte("hello"), nil, ErrBadCSR},
		{"certificate not CSR", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Certificate().Raw}), nil, ErrBadCSR},
		{"garbage DER", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: []byte{0x30, 0x03, 1, 2, 3}}), nil, ErrBadCSR},
		{"two CSRs", append(makeCSR(t, p256, nil), makeCSR(t, p384, nil)...), nil, ErrBadCSR},
		{"oversized", append(makeCSR(t, p256, nil), make([]byte, maxCSRSize)...), nil, ErrBadCSR},
	}
	issued := 0
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			certPEM, err := ca.SignCSR(c.csr, "pump-9", time.Hour)
			if c.want != nil {
				if !errors.Is(err, c.want) || certPEM != nil {
					t.Fatalf("SignCSR = %v, want %v", err, c.want)
				}
				return
			}
			if err != nil {
				t.Fatalf("SignCSR: %v", err)
			}
			issued++
			cert := mustParseCert(t, certPEM)
			if id, err := ca.VerifyClientCert(cert); err != nil || id != "pump-9" {
				t.Errorf("VerifyClientCert = %q, %v", id, err)
			}
			if cert.Subject.CommonName != "pump-9" || len(cert.Subject.Organization) != 1 || len(cert.URIs) != 1 ||
				len(cert.DNSNames) != 0 || cert.IsCA || len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
				t.Errorf("certificate took something from the CSR: CN %q URIs %v DNS %v IsCA %v EKU %v",
					cert.Subject.CommonName, cert.URIs, cert.DNSNames, cert.IsCA, cert.ExtKeyUsage)
			}
			if !c.key.(interface{ Equal(crypto.PublicKey) bool }).Equal(cert.PublicKey) {
				t.Error("certificate is not for the CSR's key")
			}
		})
	}
	if devs, _ := ca.Devices(); len(devs) != issued {
		t.Errorf("index holds %d certificates, want %d (refused CSRs must not be recorded)", len(devs), issued)
	}
}

func TestSignCSRRSA2048(t *testing.T) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ca := newTestCA(t)
	certPEM, err := ca.SignCSR(makeCSR(t, key, nil), "rsa-dev", 0)
	if err != nil {
		t.Fatalf("SignCSR(RSA 2048): %v", err)
	}
	if id, err := ca.VerifyClientCert(mustParseCert(t, certPEM)); err != nil || id != "rsa-dev" {
		t.Errorf("VerifyClientCert = %q, %v", id, err)
	}
}

func mustECDSA(t *testing.T, curve elliptic.Curve) *ecdsa.PrivateKey {
	t.Helper()
	key, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return key
}
