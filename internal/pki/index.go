package pki

import (
	"vitalmq/internal/atomicfile"

	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

const indexVersion = 1

// indexFile is the content of devices.json.
type indexFile struct {
	Version   int          `json:"version"`
	CRLNumber int64        `json:"crl_number"` // number of the last CRL issued
	Certs     []indexEntry `json:"certs"`      // in issue order
}

// indexEntry describes one issued device certificate.
type indexEntry struct {
	ID        string     `json:"id"`
	Serial    string     `json:"serial"` // lower-case hex, no leading zeros
	IssuedAt  time.Time  `json:"issued_at"`
	NotAfter  time.Time  `json:"not_after"`
	RevokedAt *time.Time `json:"revoked_at,omitempty"`
	Reason    string     `json:"reason,omitempty"`
}

// snapshot is an immutable, validated copy of devices.json.
type snapshot struct {
	idx      indexFile
	bySerial map[string]int // serial hex -> index in idx.Certs
	revoked  int            // how many entries are revoked
	fi       os.FileInfo    // the file it was read from or written to
}

func newSnapshot(idx indexFile, fi os.FileInfo) (*snapshot, error) {
	s := &snapshot{idx: idx, bySerial: make(map[string]int, len(idx.Certs)), fi: fi}
	if idx.Version != indexVersion {
		return nil, fmt.Errorf("unsupported version %d", idx.Version)
	}
	if idx.CRLNumber < 0 {
		return nil, fmt.Errorf("negative crl_number")
	}
	for i, e := range idx.Certs {
		if !validDeviceID(e.ID) {
			return nil, fmt.Errorf("entry %d: bad device id", i)
		}
		n, ok := new(big.Int).SetString(e.Serial, 16)
		if !ok || n.Sign() <= 0 || n.Text(16) != e.Serial {
			return nil, fmt.Errorf("entry %d: bad serial %q", i, e.Serial)
		}
		if _, dup := s.bySerial[e.Serial]; dup {
			return nil, fmt.Errorf("entry %d: duplicate serial %s", i, e.Serial)
		}
		s.bySerial[e.Serial] = i
		if e.RevokedAt != nil {
			s.revoked++
		}
	}
	return s, nil
}

func (s *snapshot) lookup(serial *big.Int) (indexEntry, bool) {
	if s == nil || serial == nil {
		return indexEntry{}, false
	}
	i, ok := s.bySerial[serial.Text(16)]
	if !ok {
		return indexEntry{}, false
	}
	return s.idx.Certs[i], true
}

func (ca *CA) indexPath() string { return filepath.Join(ca.dir, indexFileName) }

// readIndex reads and validates devices.json; errors name the file.
func readIndex(path string) (*snapshot, error) {
	f, err := os.Open(path)
	if err != nil {
		_, err = readFile(path) // same error wording as the other files
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("pki: read %s: %w", path, err)
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("pki: read %s: %w", path, err)
	}
	var idx indexFile
	if err := json.Unmarshal(data, &idx); err != nil {
		return nil, fmt.Errorf("pki: %s is corrupt: %w", path, err)
	}
	s, err := newSnapshot(idx, fi)
	if err != nil {
		return nil, fmt.Errorf("pki: %s is corrupt: %w", path, err)
	}
	return s, nil
}

// writeIndex writes idx to devices.json; the caller holds the writer locks.
func (ca *CA) writeIndex(idx *indexFile) (*snapshot, error) {
	if idx.Certs == nil {
		idx.Certs = []indexEntry{}
	}
	data, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("pki: encode %s: %w", ca.indexPath(), err)
	}
	if err := atomicfile.WriteFile(ca.indexPath(), append(data, '\n'), secretPerm); err != nil {
		return nil, err
	}
	fi, err := os.Stat(ca.indexPath())
	if err != nil {
		return nil, fmt.Errorf("pki: %s: %w", ca.indexPath(), err)
	}
	s, err := newSnapshot(*idx, fi)
	if err != nil {
		return nil, fmt.Errorf("pki: %s: %w", ca.indexPath(), err)
	}
	return s, nil
}

// mutate applies fn to a fresh copy of devices.json, read under the writer locks (this process's mutex
// and the directory's flock), and writes the result back. When fn returns newCRL, the CRL number is
// incremented and crl.pem rewritten; the new CRL's DER is returned.
func (ca *CA) mutate(fn func(idx *indexFile) (newCRL bool, err error)) ([]byte, error) {
	ca.wmu.Lock()
	defer ca.wmu.Unlock()
	unlock, err := atomicfile.Lock(filepath.Join(ca.dir, lockFileName), secretPerm)
	if err != nil {
		return nil, err
	}
	defer unlock()
	cur, err := readIndex(ca.indexPath())
	if err != nil {
		return nil, err
	}
	ca.store(cur)
	idx := cur.idx
	idx.Certs = append([]indexEntry(nil), cur.idx.Certs...)
	newCRL, err := fn(&idx)
	if err != nil {
		return nil, err
	}
	var crlDER []byte
	if newCRL {
		idx.CRLNumber++
		if crlDER, err = ca.createCRL(&idx, time.Now()); err != nil {
			return nil, err
		}
	}
	// The index goes first: a crash before crl.pem is written leaves a CRL whose number is behind the
	// index, which CRL detects and re-issues.
	snap, err := ca.writeIndex(&idx)
	if err != nil {
		return nil, err
	}
	ca.store(snap)
	if newCRL {
		if err := atomicfile.WriteFile(ca.CRLFile(), pemBlock("X509 CRL", crlDER), publicPerm); err != nil {
			return nil, err
		}
	}
	return crlDER, nil
}

// store installs s as the current revocation state.
func (ca *CA) store(s *snapshot) {
	ca.rldMu.Lock()
	ca.snap.Store(s)
	ca.rldMu.Unlock()
}

// Reload re-reads devices.json (the issued certificates and the revocations) from disk, so that changes
// made by another process, such as the `vitalmq device revoke` CLI, take effect. It only stats the file
// when it has not changed since it was last read or written. It is safe for concurrent use with every
// other method; on error the previous state is kept.
func (ca *CA) Reload() error {
	ca.rldMu.Lock()
	defer ca.rldMu.Unlock()
	if cur := ca.snap.Load(); cur != nil && cur.fi != nil {
		if fi, err := os.Stat(ca.indexPath()); err == nil && os.SameFile(cur.fi, fi) &&
			fi.ModTime().Equal(cur.fi.ModTime()) && fi.Size() == cur.fi.Size() {
			return nil
		}
	}
	s, err := readIndex(ca.indexPath())
	if err != nil {
		return err
	}
	ca.snap.Store(s)
	return nil
}

// IsRevoked reports whether the certificate with this serial was revoked, as of the last Reload or
// change made through ca. It does no I/O.
func (ca *CA) IsRevoked(serial *big.Int) bool {
	e, ok := ca.snap.Load().lookup(serial)
	return ok && e.RevokedAt != nil
}

// Revoke revokes every not yet revoked certificate issued to device id, records reason (at most 200
// printable characters; a leading RFC 5280 reason name such as "keyCompromise" or "cessationOfOperation",
// optionally followed by ": details", also sets the CRL reason code), rewrites crl.pem, and returns how
// many certificates it revoked. A device without any certificate is ErrUnknownDevice.
func (ca *CA) Revoke(id, reason string) (int, error) {
	if !validDeviceID(id) {
		return 0, ErrBadDeviceID
	}
	if err := checkReason(reason); err != nil {
		return 0, err
	}
	n := 0
	_, err := ca.mutate(func(idx *indexFile) (bool, error) {
		found := false
		now := time.Now().UTC().Truncate(time.Second)
		for i := range idx.Certs {
			e := &idx.Certs[i]
			if e.ID != id {
				continue
			}
			found = true
			if e.RevokedAt == nil {
				t := now
				e.RevokedAt, e.Reason = &t, reason
				n++
			}
		}
		if !found {
			return false, fmt.Errorf("%w: %q", ErrUnknownDevice, id)
		}
		return n > 0, nil
	})
	if err != nil {
		return 0, err
	}
	return n, nil
}

// RevokeSerial revokes the device certificate with this serial (see Revoke for reason). Revoking a
// revoked certificate again does nothing; a serial not in the index is ErrUnknownSerial.
func (ca *CA) RevokeSerial(serial *big.Int, reason string) error {
	if serial == nil {
		return ErrUnknownSerial
	}
	if err := checkReason(reason); err != nil {
		return err
	}
	key := serial.Text(16)
	_, err := ca.mutate(func(idx *indexFile) (bool, error) {
		for i := range idx.Certs {
			e := &idx.Certs[i]
			if e.Serial != key {
				continue
			}
			if e.RevokedAt != nil {
				return false, nil
			}
			t := time.Now().UTC().Truncate(time.Second)
			e.RevokedAt, e.Reason = &t, reason
			return true, nil
		}
		return false, fmt.Errorf("%w: %s", ErrUnknownSerial, key)
	})
	return err
}

// CRL returns a DER CRL signed by the CA listing every revoked device certificate. It reloads the
// index, and returns the CRL in crl.pem when it is current (its number is the index's and more than half
// of its validity is left); otherwise it issues a new one with the next CRL number and rewrites crl.pem.
// CRL numbers increase monotonically across processes sharing the directory.
func (ca *CA) CRL() ([]byte, error) {
	if err := ca.Reload(); err != nil {
		return nil, err
	}
	if der := ca.cachedCRL(ca.snap.Load(), time.Now()); der != nil {
		return der, nil
	}
	return ca.mutate(func(*indexFile) (bool, error) { return true, nil })
}

// cachedCRL returns crl.pem's DER if it is valid, signed by ca, matches s, and is fresh enough.
func (ca *CA) cachedCRL(s *snapshot, now time.Time) []byte {
	b, err := os.ReadFile(ca.CRLFile())
	if err != nil {
		return nil
	}
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "X509 CRL" {
		return nil
	}
	crl, err := x509.ParseRevocationList(block.Bytes)
	if err != nil || crl.CheckSignatureFrom(ca.cert) != nil || crl.Number == nil {
		return nil
	}
	if crl.Number.Cmp(big.NewInt(s.idx.CRLNumber)) != 0 || len(crl.RevokedCertificateEntries) != s.revoked {
		return nil
	}
	if !now.Before(crl.ThisUpdate.Add(CRLValidity/2)) || !now.Before(crl.NextUpdate) {
		return nil
	}
	return block.Bytes
}

// createCRL signs the CRL for idx.
func (ca *CA) createCRL(idx *indexFile, now time.Time) ([]byte, error) {
	var entries []x509.RevocationListEntry
	for _, e := range idx.Certs {
		if e.RevokedAt == nil {
			continue
		}
		serial, _ := new(big.Int).SetString(e.Serial, 16)
		entries = append(entries, x509.RevocationListEntry{
			SerialNumber:   serial,
			RevocationTime: *e.RevokedAt,
			ReasonCode:     reasonCode(e.Reason),
		})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    big.NewInt(idx.CRLNumber),
		ThisUpdate:                now,
		NextUpdate:                now.Add(CRLValidity),
		RevokedCertificateEntries: entries,
	}, ca.cert, ca.key)
	if err != nil {
		return nil, fmt.Errorf("pki: create CRL: %w", err)
	}
	return der, nil
}

// DeviceCert describes one device certificate issued by the CA.
type DeviceCert struct {
	ID        string    // device id
	Serial    *big.Int  // certificate serial number
	IssuedAt  time.Time // when it was issued
	NotAfter  time.Time // when it expires
	Revoked   bool      // whether it was revoked
	RevokedAt time.Time // when it was revoked (zero if not)
	Reason    string    // revocation reason ("" if not revoked)
}

// Devices reloads the index and lists the issued device certificates, by device id then issue time.
func (ca *CA) Devices() ([]DeviceCert, error) {
	if err := ca.Reload(); err != nil {
		return nil, err
	}
	s := ca.snap.Load()
	out := make([]DeviceCert, 0, len(s.idx.Certs))
	for _, e := range s.idx.Certs {
		serial, _ := new(big.Int).SetString(e.Serial, 16)
		d := DeviceCert{ID: e.ID, Serial: serial, IssuedAt: e.IssuedAt, NotAfter: e.NotAfter, Reason: e.Reason}
		if e.RevokedAt != nil {
			d.Revoked, d.RevokedAt = true, *e.RevokedAt
		}
		out = append(out, d)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// checkReason accepts at most 200 bytes of valid UTF-8 without control characters.
func checkReason(reason string) error {
	if len(reason) > 200 || !utf8.ValidString(reason) {
		return ErrBadReason
	}
	for _, r := range reason {
		if unicode.IsControl(r) {
			return ErrBadReason
		}
	}
	return nil
}

// reasonCodes maps RFC 5280 reason names (lower case, without separators) to CRL reason codes.
// certificateHold and removeFromCRL are left out: revocation here is permanent.
var reasonCodes = map[string]int{
	"unspecified": 0, "keycompromise": 1, "cacompromise": 2, "affiliationchanged": 3, "superseded": 4,
	"cessationofoperation": 5, "privilegewithdrawn": 9, "aacompromise": 10,
}

// reasonCode returns the CRL reason code named by the start of reason (up to a ':'), or 0.
func reasonCode(reason string) int {
	name, _, _ := strings.Cut(reason, ":")
	name = strings.ToLower(strings.NewReplacer(" ", "", "-", "", "_", "").Replace(name))
	return reasonCodes[name]
}
