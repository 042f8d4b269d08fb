package pki

import (
	"vitalmq/internal/atomicfile"

	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

func TestInitOpenRoundTrip(t *testing.T) {
	atomicfile.Sync = true // exercise the fsync path once
	defer func() { atomicfile.Sync = false }()
	dir := filepath.Join(t.TempDir(), "data") // Init creates the directory
	ca1, err := Init(dir, testHosts, 0)
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	cert := ca1.Certificate()
	if !cert.IsCA || !strings.HasPrefix(cert.Subject.CommonName, "vitalmq CA ") || len(cert.Subject.CommonName) <= len("vitalmq CA ") {
		t.Errorf("CA certificate: IsCA=%v CN=%q", cert.IsCA, cert.Subject.CommonName)
	}
	if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || pub.Curve != elliptic.P256() {
		t.Errorf("CA key is %T, want ECDSA P-256", cert.PublicKey)
	}
	if life := time.Until(cert.NotAfter); life < CAValidity-time.Hour || life > CAValidity {
		t.Errorf("CA lifetime %v, want about %v", life, CAValidity)
	}
	if cert.KeyUsage&(x509.KeyUsageCertSign|x509.KeyUsageCRLSign) != x509.KeyUsageCertSign|x509.KeyUsageCRLSign {
		t.Errorf("CA key usage %v lacks CertSign|CRLSign", cert.KeyUsage)
	}
	serverCertFile, _ := ca1.ServerCertFiles()
	b, err := os.ReadFile(serverCertFile)
	if err != nil {
		t.Fatal(err)
	}
	if life := time.Until(mustParseCert(t, b).NotAfter); life < DefaultServerValidity-time.Hour || life > DefaultServerValidity {
		t.Errorf("server certificate lifetime %v, want about %v", life, DefaultServerValidity)
	}
	_, pair := issueDevice(t, ca1, "pump-1")

	ca2, err := Open(dir)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if !bytes.Equal(ca2.Certificate().Raw, cert.Raw) {
		t.Error("Open read a different CA certificate")
	}
	c1, k1 := ca1.ServerCertFiles()
	c2, k2 := ca2.ServerCertFiles()
	if c1 != c2 || k1 != k2 || c1 != filepath.Join(dir, "server.crt") || k1 != filepath.Join(dir, "server.key") {
		t.Errorf("ServerCertFiles: %s %s / %s %s", c1, k1, c2, k2)
	}
	if id, err := ca2.VerifyClient(pair.Certificate); err != nil || id != "pump-1" {
		t.Errorf("reopened CA: VerifyClient = %q, %v", id, err)
	}
	// The reopened CA signs: a device it issues verifies against the first CA's pool.
	dev, _ := issueDevice(t, ca2, "pump-2")
	if _, err := dev.Verify(x509.VerifyOptions{Roots: ca1.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("device issued after Open does not verify: %v", err)
	}
}

func TestInitRefusesExistingCA(t *testing.T) {
	for _, name := range []string{"ca.crt", "ca.key", "server.crt", "server.key", "devices.json", "crl.pem"} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, name), []byte("keep me"), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := Init(dir, nil, 0); !errors.Is(err, ErrExists) {
				t.Fatalf("Init over %s: %v, want ErrExists", name, err)
			}
			if b, _ := os.ReadFile(filepath.Join(dir, name)); string(b) != "keep me" {
				t.Errorf("%s was overwritten", name)
			}
			if entries, _ := os.ReadDir(dir); len(entries) != 2 { // the file and .lock
				t.Errorf("Init left %d entries, want 2", len(entries))
			}
		})
	}
	t.Run("full CA", func(t *testing.T) {
		ca := newTestCA(t)
		before, _ := os.ReadFile(filepath.Join(ca.Dir(), "ca.key"))
		if _, err := Init(ca.Dir(), nil, 0); !errors.Is(err, ErrExists) {
			t.Fatalf("second Init: %v, want ErrExists", err)
		}
		if after, _ := os.ReadFile(filepath.Join(ca.Dir(), "ca.key")); !bytes.Equal(before, after) {
			t.Error("ca.key changed")
		}
	})
}

func TestFilePermissions(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix permissions")
	}
	dir := filepath.Join(t.TempDir(), "data")
	if err := os.Mkdir(dir, 0o755); err != nil { // a pre-existing, too open directory is tightened
		t.Fatal(err)
	}
	ca, err := Init(dir, nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := ca.IssueDevice("d1", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Revoke("d1", ""); err != nil {
		t.Fatal(err)
	}
	if err := ca.IssueServer(nil, 0); err != nil {
		t.Fatal(err)
	}
	want := map[string]os.FileMode{
		".": 0o700, "ca.key": 0o600, "server.key": 0o600, "devices.json": 0o600, ".lock": 0o600,
		"ca.crt": 0o644, "server.crt": 0o644, "crl.pem": 0o644,
	}
	for name, perm := range want {
		st, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if st.Mode().Perm() != perm {
			t.Errorf("%s: mode %04o, want %04o", name, st.Mode().Perm(), perm)
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if _, ok := want[e.Name()]; !ok {
			t.Errorf("unexpected file %s (temporary file left behind?)", e.Name())
		}
	}
}

func TestOpenErrorsNameTheFile(t *testing.T) {
	other := newTestCA(t)
	otherServerCert, otherServerKey := other.ServerCertFiles()
	copyFrom := func(src string) func(t *testing.T, path string) {
		return func(t *testing.T, path string) {
			b, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	remove := func(t *testing.T, path string) { os.Remove(path) }
	garbage := func(t *testing.T, path string) { os.WriteFile(path, []byte("garbage\n"), 0o600) }
	cases := []struct {
		name, file string
		damage     func(t *testing.T, path string)
		want       error
	}{
		{"missing ca.crt", "ca.crt", remove, os.ErrNotExist},
		{"missing ca.key", "ca.key", remove, os.ErrNotExist},
		{"missing server.crt", "server.crt", remove, os.ErrNotExist},
		{"missing server.key", "server.key", remove, os.ErrNotExist},
		{"missing devices.json", "devices.json", remove, os.ErrNotExist},
		{"corrupt ca.crt", "ca.crt", garbage, nil},
		{"corrupt ca.key", "ca.key", garbage, nil},
		{"corrupt server.crt", "server.crt", garbage, nil},
		{"corrupt server.key", "server.key", garbage, nil},
		{"corrupt devices.json", "devices.json", garbage, nil},
		{"devices.json bad serial", "devices.json", func(t *testing.T, path string) {
			os.WriteFile(path, []byte(`{"version":1,"crl_number":1,"certs":[{"id":"a","serial":"xyz"}]}`), 0o600)
		}, nil},
		{"ca.crt is not a CA", "ca.crt", copyFrom(otherServerCert), nil},
		{"server.key of another CA", "server.key", copyFrom(otherServerKey), nil},
		{"server.crt of another CA", "server.crt", copyFrom(otherServerCert), nil},
	}
	if runtime.GOOS != "windows" {
		cases = append(cases, struct {
			name, file string
			damage     func(t *testing.T, path string)
			want       error
		}{"ca.key world readable", "ca.key", func(t *testing.T, path string) { os.Chmod(path, 0o644) }, ErrInsecurePermissions})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ca := newTestCA(t)
			c.damage(t, filepath.Join(ca.Dir(), c.file))
			_, err := Open(ca.Dir())
			if err == nil {
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), c.file) {
				t.Errorf("error %q does not name %s", err, c.file)
			}
			if c.want != nil && !errors.Is(err, c.want) {
				t.Errorf("error %v, want %v", err, c.want)
			}
			if strings.Contains(err.Error(), "BEGIN") || strings.Contains(err.Error(), "PRIVATE") {
				t.Errorf("error leaks file content: %q", err)
			}
		})
	}
}

func TestServerCertificateHosts(t *testing.T) {
	dir := t.TempDir()
	ca, err := Init(dir, []string{"mqtt.example.org", "10.0.0.5", "[fd00::1]", "Ward-3.Hospital.LOCAL."}, 0)
	if err != nil {
		t.Fatal(err)
	}
	serverCert := func() *x509.Certificate {
		certFile, keyFile := ca.ServerCertFiles()
		pair, err := tls.LoadX509KeyPair(certFile, keyFile) // also checks the key matches
		if err != nil {
			t.Fatal(err)
		}
		cert, err := x509.ParseCertificate(pair.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return cert
	}
	check := func(cert *x509.Certificate, host string, want bool) {
		t.Helper()
		_, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: host, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
		if (err == nil) != want {
			t.Errorf("server certificate for %q: err=%v, want valid=%v", host, err, want)
		}
	}
	cert := serverCert()
	for _, c := range []struct {
		host string
		want bool
	}{
		{"localhost", true}, {"127.0.0.1", true}, {"::1", true}, {"mqtt.example.org", true}, {"10.0.0.5", true},
		{"fd00::1", true}, {"ward-3.hospital.local", true},
		{"evil.example.org", false}, {"example.org", false}, {"10.0.0.6", false}, {"127.0.0.2", false}, {"fd00::2", false},
	} {
		check(cert, c.host, c.want)
	}
	if len(cert.ExtKeyUsage) != 1 || cert.ExtKeyUsage[0] != x509.ExtKeyUsageServerAuth {
		t.Errorf("server ExtKeyUsage = %v, want ServerAuth only", cert.ExtKeyUsage)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("server certificate is valid for ClientAuth")
	}

	// Re-issue for a new host name.
	if err := ca.IssueServer([]string{"new.example.org"}, time.Hour); err != nil {
		t.Fatalf("IssueServer: %v", err)
	}
	cert = serverCert()
	check(cert, "new.example.org", true)
	check(cert, "localhost", true)
	check(cert, "mqtt.example.org", false)
	if life := time.Until(cert.NotAfter); life < 59*time.Minute || life > time.Hour {
		t.Errorf("re-issued server certificate lifetime %v, want 1h", life)
	}
	if _, err := Open(dir); err != nil {
		t.Errorf("Open after IssueServer: %v", err)
	}
}

func TestBadHostsAndValidity(t *testing.T) {
	for _, h := range []string{"", "bad host", "mqtt.example.org:8883", "-a.example.org", "a..b", "fe80::1%eth0", "https://x", strings.Repeat("a", 64) + ".org"} {
		dir := filepath.Join(t.TempDir(), "data")
		if _, err := Init(dir, []string{h}, 0); !errors.Is(err, ErrBadHost) {
			t.Errorf("Init(host %q): %v, want ErrBadHost", h, err)
		}
		if _, err := os.Stat(dir); err == nil {
			t.Errorf("Init(host %q) created the directory before failing", h)
		}
	}
	if _, err := Init(t.TempDir(), nil, -time.Hour); !errors.Is(err, ErrBadValidity) {
		t.Errorf("Init(negative validity): %v, want ErrBadValidity", err)
	}
	ca := newTestCA(t)
	if err := ca.IssueServer([]string{"a b"}, 0); !errors.Is(err, ErrBadHost) {
		t.Errorf("IssueServer(bad host): %v", err)
	}
	if err := ca.IssueServer(nil, -1); !errors.Is(err, ErrBadValidity) {
		t.Errorf("IssueServer(negative validity): %v", err)
	}
	if _, _, err := ca.IssueDevice("d", -1); !errors.Is(err, ErrBadValidity) {
		t.Errorf("IssueDevice(negative validity): %v", err)
	}
	// A validity beyond the CA's own is clamped to it.
	cert, _, err := ca.IssueDevice("d", 2*CAValidity)
	if err != nil {
		t.Fatal(err)
	}
	if got := mustParseCert(t, cert).NotAfter; !got.Equal(ca.Certificate().NotAfter) {
		t.Errorf("device NotAfter %v, want the CA's %v", got, ca.Certificate().NotAfter)
	}
}
