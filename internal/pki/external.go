package pki

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// External trusts client certificates issued by a hospital's own CA instead of the built-in
// one: a PEM bundle of CA certificates and, optionally, that CA's certificate revocation
// lists (one file, PEM blocks "X509 CRL" or a single DER CRL). [External.Reload] re-reads a
// file that changed, so a rotated CA or a new CRL applies without a restart; a file that no
// longer reads or verifies keeps the previous one in force. A CRL whose next update has
// passed stays in force until it is replaced: a stale list still revokes.
type External struct {
	caFile, crlFile string
	mu              sync.Mutex // serializes Reload
	cur             atomic.Pointer[extState]
	failed          string // the stamps of files that did not load, reported once
}

type extState struct {
	roots    *x509.CertPool
	cas      []*x509.Certificate
	revoked  map[string]bool // CertKey of every revoked certificate
	caStamp  string          // file size and modification time, to notice changes
	crlStamp string
}

// OpenExternal loads the CA bundle in caFile and the CRLs in crlFile ("" for none). Errors
// name the file.
func OpenExternal(caFile, crlFile string) (*External, error) {
	e := &External{caFile: caFile, crlFile: crlFile}
	if _, err := e.Reload(); err != nil {
		return nil, err
	}
	return e, nil
}

func stamp(path string) string {
	st, err := os.Stat(path)
	if err != nil {
		return "missing"
	}
	return fmt.Sprint(st.Size(), st.ModTime().UnixNano())
}

// Reload re-reads the files that changed since the last successful load and reports
// whether the trust changed. On error the previous state stays in force; the same broken
// files are reported once, not on every call.
func (e *External) Reload() (changed bool, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	old := e.cur.Load()
	caStamp, crlStamp := stamp(e.caFile), ""
	if e.crlFile != "" {
		crlStamp = stamp(e.crlFile)
	}
	if old != nil && (old.caStamp == caStamp && old.crlStamp == crlStamp || e.failed == caStamp+"/"+crlStamp) {
		return false, nil
	}
	st, err := loadExternal(e.caFile, e.crlFile)
	if err != nil {
		e.failed = caStamp + "/" + crlStamp
		return false, err
	}
	st.caStamp, st.crlStamp = caStamp, crlStamp
	e.cur.Store(st)
	return true, nil
}

func loadExternal(caFile, crlFile string) (*extState, error) {
	cas, err := readCAs(caFile)
	if err != nil {
		return nil, err
	}
	st := &extState{cas: cas, roots: x509.NewCertPool(), revoked: map[string]bool{}}
	for _, c := range cas {
		st.roots.AddCert(c)
	}
	if crlFile != "" {
		if err := st.readCRLs(crlFile); err != nil {
			return nil, err
		}
	}
	return st, nil
}

func readCAs(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("pki: client CA bundle: %w", err)
	}
	var cas []*x509.Certificate
	for {
		var blk *pem.Block
		if blk, b = pem.Decode(b); blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("pki: client CA bundle %s: %w", path, err)
		}
		if !c.IsCA {
			return nil, fmt.Errorf("pki: client CA bundle %s: %q is not a CA certificate", path, c.Subject.CommonName)
		}
		cas = append(cas, c)
	}
	if len(cas) == 0 {
		return nil, fmt.Errorf("pki: client CA bundle %s: no PEM certificate in it", path)
	}
	return cas, nil
}

// readCRLs loads every CRL in path; each must be signed by one of the bundle's CAs.
func (st *extState) readCRLs(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("pki: client CRL: %w", err)
	}
	var ders [][]byte
	for rest := b; ; {
		var blk *pem.Block
		if blk, rest = pem.Decode(rest); blk == nil {
			break
		}
		if blk.Type == "X509 CRL" {
			ders = append(ders, blk.Bytes)
		}
	}
	if len(ders) == 0 {
		ders = [][]byte{b} // DER
	}
	for _, der := range ders {
		crl, err := x509.ParseRevocationList(der)
		if err != nil {
			return fmt.Errorf("pki: client CRL %s: %w", path, err)
		}
		if err := st.checkCRL(crl); err != nil {
			return fmt.Errorf("pki: client CRL %s: %w", path, err)
		}
		for _, r := range crl.RevokedCertificateEntries {
			st.revoked[certKey(crl.RawIssuer, r.SerialNumber.Bytes())] = true
		}
	}
	return nil
}

func (st *extState) checkCRL(crl *x509.RevocationList) error {
	for _, ca := range st.cas {
		if string(ca.RawSubject) == string(crl.RawIssuer) && crl.CheckSignatureFrom(ca) == nil {
			return nil
		}
	}
	return errors.New("not signed by a CA in the client CA bundle")
}

func certKey(rawIssuer, serial []byte) string {
	h := sha256.Sum256(rawIssuer)
	return hex.EncodeToString(h[:8]) + ":" + hex.EncodeToString(serial)
}

// CertKey names a certificate by its issuer and serial number: what a CRL revokes.
func CertKey(c *x509.Certificate) string { return certKey(c.RawIssuer, c.SerialNumber.Bytes()) }

// Revoked reports whether the certificate named by key (see [CertKey]) is on a CRL now.
func (e *External) Revoked(key string) bool { return e.cur.Load().revoked[key] }

// VerifyConnection is a tls.Config.VerifyConnection callback for a listener whose
// ClientAuth asks for a certificate without verifying it (tls.RequestClientCert or
// tls.RequireAnyClientCert): it verifies the peer's chain against the current CA bundle
// (ClientAuth usage, valid now) and refuses a revoked certificate, on resumed sessions too.
// A connection without a certificate passes: the caller decides whether one is required.
func (e *External) VerifyConnection(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return nil
	}
	st := e.cur.Load()
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	chains, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
		Roots: st.roots, Intermediates: inter, CurrentTime: time.Now(),
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return fmt.Errorf("pki: client certificate not trusted: %w", err)
	}
	for _, chain := range chains {
		for _, c := range chain[:len(chain)-1] {
			if st.revoked[CertKey(c)] {
				return fmt.Errorf("%w: serial %s", ErrRevoked, c.SerialNumber.Text(16))
			}
		}
	}
	return nil
}
