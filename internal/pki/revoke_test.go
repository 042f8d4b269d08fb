package pki

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"strings"
	"sync"
	"testing"
)

// parseCRL parses a DER CRL and checks it is signed by ca.
func parseCRL(t *testing.T, ca *CA, der []byte) *x509.RevocationList {
	t.Helper()
	crl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatalf("ParseRevocationList: %v", err)
	}
	if err := crl.CheckSignatureFrom(ca.Certificate()); err != nil {
		t.Fatalf("CRL not signed by the CA: %v", err)
	}
	return crl
}

func crlFromFile(t *testing.T, ca *CA) *x509.RevocationList {
	t.Helper()
	b, err := os.ReadFile(ca.CRLFile())
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "X509 CRL" {
		t.Fatalf("crl.pem holds no X509 CRL block")
	}
	return parseCRL(t, ca, block.Bytes)
}

func crlEntries(crl *x509.RevocationList) map[string]int {
	m := map[string]int{}
	for _, e := range crl.RevokedCertificateEntries {
		m[e.SerialNumber.Text(16)] = e.ReasonCode
	}
	return m
}

func TestRevoke(t *testing.T) {
	ca := newTestCA(t)
	a1, _ := issueDevice(t, ca, "dev-a")
	a2, _ := issueDevice(t, ca, "dev-a") // re-enrolment: a second certificate for the same device
	b, _ := issueDevice(t, ca, "dev-b")
	crl0 := parseCRL(t, ca, mustCRL(t, ca))

	n, err := ca.Revoke("dev-a", "keyCompromise: stolen from ward 3")
	if err != nil || n != 2 {
		t.Fatalf("Revoke = %d, %v; want 2", n, err)
	}
	for _, c := range []struct {
		cert *x509.Certificate
		want bool
	}{{a1, true}, {a2, true}, {b, false}} {
		if got := ca.IsRevoked(c.cert.SerialNumber); got != c.want {
			t.Errorf("IsRevoked(%s) = %v, want %v", c.cert.Subject.CommonName, got, c.want)
		}
	}
	if ca.IsRevoked(big.NewInt(12345)) || ca.IsRevoked(nil) {
		t.Error("IsRevoked true for an unknown serial")
	}
	der := mustCRL(t, ca)
	crl1 := parseCRL(t, ca, der)
	entries := crlEntries(crl1)
	if len(entries) != 2 || entries[a1.SerialNumber.Text(16)] != 1 || entries[a2.SerialNumber.Text(16)] != 1 {
		t.Errorf("CRL entries %v, want both dev-a serials with reason keyCompromise (1)", entries)
	}
	if crl1.Number.Cmp(crl0.Number) <= 0 {
		t.Errorf("CRL number %v after revocation, not above %v", crl1.Number, crl0.Number)
	}
	if fileCRL := crlFromFile(t, ca); !bytes.Equal(fileCRL.Raw, der) {
		t.Error("crl.pem differs from CRL()")
	}

	// Repeating a revocation does nothing; unknown devices, serials and bad reasons are refused.
	if n, err := ca.Revoke("dev-a", "again"); err != nil || n != 0 {
		t.Errorf("second Revoke = %d, %v; want 0, nil", n, err)
	}
	if _, err := ca.Revoke("dev-zzz", ""); !errors.Is(err, ErrUnknownDevice) {
		t.Errorf("Revoke(unknown) = %v, want ErrUnknownDevice", err)
	}
	if err := ca.RevokeSerial(big.NewInt(99), ""); !errors.Is(err, ErrUnknownSerial) {
		t.Errorf("RevokeSerial(unknown) = %v, want ErrUnknownSerial", err)
	}
	for _, reason := range []string{"line\nbreak", "\x1b[31m", strings.Repeat("x", 201), "\xff"} {
		if _, err := ca.Revoke("dev-b", reason); !errors.Is(err, ErrBadReason) {
			t.Errorf("Revoke(reason %q) = %v, want ErrBadReason", reason, err)
		}
	}
	if crl := parseCRL(t, ca, mustCRL(t, ca)); crl.Number.Cmp(crl1.Number) != 0 {
		t.Errorf("CRL number moved to %v without a revocation", crl.Number)
	}

	if err := ca.RevokeSerial(b.SerialNumber, "cessation of operation"); err != nil {
		t.Fatalf("RevokeSerial: %v", err)
	}
	if !ca.IsRevoked(b.SerialNumber) {
		t.Error("RevokeSerial: not revoked")
	}
	crl2 := crlFromFile(t, ca) // written on revocation, before anyone asks for CRL()
	if crl2.Number.Cmp(crl1.Number) <= 0 || len(crl2.RevokedCertificateEntries) != 3 || crlEntries(crl2)[b.SerialNumber.Text(16)] != 5 {
		t.Errorf("crl.pem after RevokeSerial: number %v entries %v", crl2.Number, crlEntries(crl2))
	}

	devs, err := ca.Devices()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range devs {
		if !d.Revoked || d.RevokedAt.IsZero() || d.Reason == "" {
			t.Errorf("Devices: %+v not shown revoked", d)
		}
	}
	if devs[0].ID != "dev-a" || devs[2].ID != "dev-b" || devs[0].Reason != "keyCompromise: stolen from ward 3" {
		t.Errorf("Devices order/reason: %+v", devs)
	}
}

func TestCRLNumberIncreases(t *testing.T) {
	ca := newTestCA(t)
	for _, id := range []string{"d1", "d2", "d3"} {
		issueDevice(t, ca, id)
	}
	other, err := Open(ca.Dir())
	if err != nil {
		t.Fatal(err)
	}
	last := parseCRL(t, ca, mustCRL(t, ca)).Number
	step := func(name string, act func(), wantIncrease bool) {
		t.Helper()
		act()
		n := parseCRL(t, ca, mustCRL(t, ca)).Number
		if increased := n.Cmp(last) > 0; increased != wantIncrease || n.Cmp(last) < 0 {
			t.Errorf("%s: CRL number %v -> %v, want increase=%v", name, last, n, wantIncrease)
		}
		last = n
	}
	step("no change", func() {}, false)
	step("revoke", func() { ca.Revoke("d1", "") }, true)
	step("revoke by another process", func() { other.Revoke("d2", "") }, true)
	step("crl.pem deleted", func() { os.Remove(ca.CRLFile()) }, true)
	step("crl.pem behind the index", func() {
		old, _ := os.ReadFile(ca.CRLFile())
		other.Revoke("d3", "")
		os.WriteFile(ca.CRLFile(), old, 0o644) // as after a crash between the two writes
	}, true)
	if got := len(crlFromFile(t, ca).RevokedCertificateEntries); got != 3 {
		t.Errorf("final CRL has %d entries, want 3", got)
	}
}

func TestReloadSeesOtherProcess(t *testing.T) {
	broker := newTestCA(t)
	cli, err := Open(broker.Dir()) // the `vitalmq device` CLI, on the same directory
	if err != nil {
		t.Fatal(err)
	}
	cert, pair := issueDevice(t, cli, "hr-monitor")
	// The broker has not reloaded, yet accepts the device (an unknown serial triggers one reload).
	if id, err := broker.VerifyClient(pair.Certificate); err != nil || id != "hr-monitor" {
		t.Fatalf("broker VerifyClient of a device enrolled by the CLI = %q, %v", id, err)
	}
	if n, err := cli.Revoke("hr-monitor", "superseded"); err != nil || n != 1 {
		t.Fatalf("CLI Revoke = %d, %v", n, err)
	}
	if broker.IsRevoked(cert.SerialNumber) {
		t.Fatal("broker saw the revocation before Reload (IsRevoked must not do I/O)")
	}
	if err := broker.Reload(); err != nil {
		t.Fatalf("Reload: %v", err)
	}
	if !broker.IsRevoked(cert.SerialNumber) {
		t.Fatal("broker does not see the revocation after Reload")
	}
	if _, err := broker.VerifyClient(pair.Certificate); !errors.Is(err, ErrRevoked) {
		t.Errorf("VerifyClient after Reload = %v, want ErrRevoked", err)
	}
	if err := broker.Reload(); err != nil { // unchanged file
		t.Errorf("second Reload: %v", err)
	}

	// A corrupt index is reported, naming the file, and the last good state is kept.
	if err := os.WriteFile(broker.indexPath(), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := broker.Reload(); err == nil || !strings.Contains(err.Error(), "devices.json") {
		t.Errorf("Reload of corrupt index = %v, want an error naming devices.json", err)
	}
	if !broker.IsRevoked(cert.SerialNumber) {
		t.Error("a failed Reload forgot a revocation")
	}
}

func TestConcurrentWritersAndReaders(t *testing.T) {
	a := newTestCA(t)
	b, err := Open(a.Dir())
	if err != nil {
		t.Fatal(err)
	}
	const perWriter = 6
	var wg sync.WaitGroup
	stop := make(chan struct{})
	var readers sync.WaitGroup
	readers.Add(1)
	go func() { // a broker polling while the CLI writes
		defer readers.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if err := a.Reload(); err != nil {
				t.Errorf("Reload: %v", err)
				return
			}
			a.IsRevoked(big.NewInt(1))
		}
	}()
	for w, ca := range []*CA{a, b, a, b} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				id := string(rune('a'+w)) + "-" + string(rune('0'+i))
				if _, _, err := ca.IssueDevice(id, 0); err != nil {
					t.Errorf("IssueDevice: %v", err)
				}
				if i%2 == 0 {
					if _, err := ca.Revoke(id, ""); err != nil {
						t.Errorf("Revoke: %v", err)
					}
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	devs, err := b.Devices()
	if err != nil {
		t.Fatal(err)
	}
	revoked := 0
	for _, d := range devs {
		if d.Revoked {
			revoked++
		}
	}
	if len(devs) != 4*perWriter || revoked != 4*perWriter/2 {
		t.Errorf("index has %d certificates (%d revoked), want %d (%d): a writer clobbered another", len(devs), revoked, 4*perWriter, 4*perWriter/2)
	}
	if n := len(crlFromFile(t, a).RevokedCertificateEntries); n != revoked {
		t.Errorf("crl.pem lists %d serials, want %d", n, revoked)
	}
}

func mustCRL(t *testing.T, ca *CA) []byte {
	t.Helper()
	der, err := ca.CRL()
	if err != nil {
		t.Fatalf("CRL: %v", err)
	}
	return der
}
