package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"vitalmq/internal/config"
)

// syncBuffer is a bytes.Buffer safe for the server goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startServe runs "vitalmq serve --config" with the given TOML and returns the listener
// addresses by name; the server is stopped (ctx cancelled) at the end of the test and must
// exit cleanly.
func startServe(t *testing.T, toml string) map[string]string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "vitalmq.toml")
	if err := os.WriteFile(path, []byte(toml), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--config", path, "--data-dir", filepath.Join(dir, "data")}, &stdout, &stderr)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve returned %v\nstderr:\n%s", err, stderr.String())
			}
		case <-time.After(15 * time.Second):
			t.Errorf("serve did not stop")
		}
	})
	n := strings.Count(toml, "[[listener]]")
	addrs := map[string]string{}
	deadline := time.Now().Add(10 * time.Second)
	for len(addrs) < n {
		select {
		case err := <-done:
			t.Fatalf("serve exited: %v\nstderr:\n%s", err, stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("listeners not ready; stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
		}
		for _, line := range strings.Split(stdout.String(), "\n") {
			if f := strings.Fields(line); len(f) == 4 && f[0] == "listening" {
				addrs[f[1]] = f[3]
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return addrs
}

// writeCert writes a self-signed ECDSA certificate for 127.0.0.1 and returns its paths and pool.
func writeCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "vitalmq test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

// TestServeAllTransports publishes through every listener type and receives on every other.
func TestServeAllTransports(t *testing.T) {
	certFile, keyFile, pool := writeCert(t)
	addrs := startServe(t, fmt.Sprintf(`
[[listener]]
name = "tcp"
type = "tcp"
address = "127.0.0.1:0"
allow_anonymous = true
[[listener]]
name = "ws"
type = "ws"
address = "127.0.0.1:0"
allow_anonymous = true
[[listener]]
name = "tls"
type = "tls"
address = "127.0.0.1:0"
allow_anonymous = true
cert_file = %q
key_file = %q
[[listener]]
name = "wss"
type = "wss"
address = "127.0.0.1:0"
allow_anonymous = true
cert_file = %q
key_file = %q
`, certFile, keyFile, certFile, keyFile))
	urls := map[string]string{
		"tcp": "tcp://" + addrs["tcp"], "ws": "ws://" + addrs["ws"] + "/mqtt",
		"tls": "ssl://" + addrs["tls"], "wss": "wss://" + addrs["wss"] + "/mqtt",
	}
	tlsCfg := &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	got := make(chan string, 64)
	clients := map[string]mqtt.Client{}
	for name, url := range urls {
		o := mqtt.NewClientOptions().AddBroker(url).SetClientID("c-" + name).SetTLSConfig(tlsCfg).
			SetProtocolVersion(4).SetAutoReconnect(false).SetConnectTimeout(5 * time.Second)
		c := mqtt.NewClient(o)
		if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("connect over %s: %v", name, tok.Error())
		}
		t.Cleanup(func() { c.Disconnect(100) })
		clients[name] = c
		tok := c.Subscribe("ward/"+name, 1, func(_ mqtt.Client, m mqtt.Message) { got <- m.Topic() + "=" + string(m.Payload()) })
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("subscribe over %s: %v", name, tok.Error())
		}
	}
	want := map[string]bool{}
	for from, c := range clients {
		for to := range clients {
			payload := from + ">" + to
			want["ward/"+to+"="+payload] = true
			if tok := c.Publish("ward/"+to, 1, false, payload); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
				t.Fatalf("publish %s: %v", payload, tok.Error())
			}
		}
	}
	for len(want) > 0 {
		select {
		case m := <-got:
			if !want[m] {
				t.Fatalf("unexpected or duplicate message %q", m)
			}
			delete(want, m)
		case <-time.After(5 * time.Second):
			t.Fatalf("messages not delivered: %v", want)
		}
	}
}

// TestTLSRefusesOldVersions: TLS 1.0 and 1.1 handshakes fail.
func TestTLSRefusesOldVersions(t *testing.T) {
	certFile, keyFile, pool := writeCert(t)
	addrs := startServe(t, fmt.Sprintf(`
[[listener]]
name = "tls"
type = "tls"
address = "127.0.0.1:0"
allow_anonymous = true
cert_file = %q
key_file = %q
`, certFile, keyFile))
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		c, err := tls.Dial("tcp", addrs["tls"], &tls.Config{RootCAs: pool, MinVersion: v, MaxVersion: v})
		if err == nil {
			c.Close()
			t.Errorf("TLS version %#x: handshake succeeded, want refused", v)
		}
	}
	c, err := tls.Dial("tcp", addrs["tls"], &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatalf("TLS 1.3 handshake: %v", err)
	}
	if v := c.ConnectionState().Version; v != tls.VersionTLS13 {
		t.Errorf("negotiated %#x, want TLS 1.3", v)
	}
	c.Close()
}

// TestServeRefusesBadConfig: bad settings are refused at start with the setting named.
func TestServeRefusesBadConfig(t *testing.T) {
	for _, c := range []struct{ name, toml, want string }{
		{"plaintext on a public address", "[[listener]]\ntype = \"tcp\"\naddress = \"0.0.0.0:1883\"\n", "listener[0].address"},
		{"anonymous on a public address", "[[listener]]\ntype = \"tls\"\naddress = \"0.0.0.0:8883\"\nallow_anonymous = true\ncert_file=\"a\"\nkey_file=\"b\"\n", "listener[0].allow_anonymous"},
		{"certificate without a key", "[[listener]]\ntype = \"tls\"\naddress = \"127.0.0.1:8883\"\ncert_file = \"a\"\n", "listener[0].cert_file"},
		{"bad client_auth", "[[listener]]\ntype = \"tls\"\naddress = \"127.0.0.1:8883\"\nclient_auth = \"maybe\"\n", "listener[0].client_auth"},
		{"bad acl rule", "[[listener]]\ntype = \"tcp\"\naddress = \"127.0.0.1:0\"\n[[acl.rule]]\nrole = \"device\"\npublish = [\"dev/#/x\"]\n", "acl"},
		{"unknown listener type", "[[listener]]\ntype = \"udp\"\naddress = \"127.0.0.1:1\"\n", "listener[0].type"},
		{"unknown setting", "[broker]\nmax_packet_sise = 5\n[[listener]]\ntype = \"tcp\"\naddress = \"127.0.0.1:0\"\n", "broker.max_packet_sise"},
		{"bad duration", "[broker]\nconnect_timeout = \"ten\"\n[[listener]]\ntype = \"tcp\"\naddress = \"127.0.0.1:0\"\n", "connect_timeout"},
		{"negative limit", "[broker]\nmax_queued_messages = -1\n[[listener]]\ntype = \"tcp\"\naddress = \"127.0.0.1:0\"\n", "MaxQueuedMessages"},
		{"keep alive out of range", "[broker]\nmax_keep_alive = 70000\n[[listener]]\ntype = \"tcp\"\naddress = \"127.0.0.1:0\"\n", "broker.max_keep_alive"},
		{"no listener", "log_level = \"info\"\n", "listener"},
		{"bad log level", "log_level = \"loud\"\n[[listener]]\ntype = \"tcp\"\naddress = \"127.0.0.1:0\"\n", "log_level"},
		{"client id limit below the spec's 23", "[broker]\nmax_client_id_length = 10\n[[listener]]\ntype = \"tcp\"\naddress = \"127.0.0.1:0\"\n", "MaxClientIDLength"},
		{"keep readers not a boolean", "[broker]\nkeep_readers = \"yes\"\n[[listener]]\ntype = \"tcp\"\naddress = \"127.0.0.1:0\"\n", "keep_readers"},
		{"gc percent below 10", "[broker]\ngc_percent = 5\n[[listener]]\ntype = \"tcp\"\naddress = \"127.0.0.1:0\"\n", "broker.gc_percent"},
		{"sync interval too long", "[storage]\nsync_interval = \"2s\"\n[[listener]]\ntype = \"tcp\"\naddress = \"127.0.0.1:0\"\n", "storage.sync_interval"},
		{"crl without its ca", "[[listener]]\ntype = \"tls\"\naddress = \"127.0.0.1:0\"\nclient_crl = \"x.crl\"\n", "listener[0].client_crl"},
		{"missing client ca", "[[listener]]\ntype = \"tls\"\naddress = \"127.0.0.1:0\"\nclient_ca = \"/nonexistent/ca.pem\"\n", "client_ca"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "c.toml")
			os.WriteFile(path, []byte(c.toml), 0o600)
			var out, errb bytes.Buffer
			err := run(context.Background(), []string{"serve", "--config", path, "--data-dir", t.TempDir()}, &out, &errb)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("serve = %v, want an error naming %q", err, c.want)
			}
		})
	}
}

// TestEmbeddedDefaultsParse: the embedded default configuration is valid and loopback only.
func TestEmbeddedDefaultsParse(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"config"}, &out, &out); err != nil {
		t.Fatal(err)
	}
	f, err := config.Parse("printed", out.Bytes())
	if err != nil {
		t.Fatalf("printed default config does not parse: %v", err)
	}
	for _, l := range f.Listeners {
		if l.Type != "tls" && l.Type != "wss" || l.AllowAnonymous {
			t.Errorf("default listener %s is %s, anonymous %v: want TLS only, no anonymous access", l.Name, l.Type, l.AllowAnonymous)
		}
	}
}

func TestUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if err := run(context.Background(), nil, &out, &errb); err == nil || !strings.Contains(errb.String(), "vitalmq serve") {
		t.Fatalf("run() = %v, stderr %q; want usage", err, errb.String())
	}
	if err := run(context.Background(), []string{"bogus"}, &out, &errb); err == nil || !strings.Contains(errb.String(), `unknown command "bogus"`) {
		t.Fatalf("run(bogus) = %v; want unknown command", err)
	}
}

// TestTuneGC: serve sets the collector's heap growth from gc_percent (Go's 100 unless set), and
// leaves it to Go's GOGC when the operator set that.
func TestTuneGC(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	f, err := config.Parse("test", []byte("[[listener]]\ntype = \"tcp\"\naddress = \"127.0.0.1:0\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if f.Broker.GCPercent != config.DefaultGCPercent {
		t.Fatalf("gc_percent unset: %d, want the default %d", f.Broker.GCPercent, config.DefaultGCPercent)
	}
	t.Setenv("GOGC", "")
	t.Setenv("GOMEMLIMIT", "")
	debug.SetGCPercent(55) // not the default: tuneGC must set it
	tuneGC(f.Broker.GCPercent, 1<<30)
	if got := debug.SetGCPercent(100); got != config.DefaultGCPercent {
		t.Errorf("GC percent %d, want %d", got, config.DefaultGCPercent)
	}
	tuneGC(70, 1<<30)
	if got := debug.SetGCPercent(100); got != 70 {
		t.Errorf("gc_percent = 70: GC percent %d, want 70", got)
	}
	if got := debug.SetMemoryLimit(-1); got != 1<<30 {
		t.Errorf("memory limit %d, want the budget %d", got, 1<<30)
	}
	t.Setenv("GOGC", "200") // the operator's choice: the runtime read it at start, serve keeps off
	tuneGC(55, 1<<30)
	if got := debug.SetGCPercent(100); got != 100 {
		t.Errorf("with GOGC set, GC percent %d, want it left at 100", got)
	}
}
