package audit

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// Errors about the Log itself.
var (
	ErrClosed      = errors.New("audit: log closed")
	ErrAlreadyOpen = errors.New("audit: log already open in this process")
)

// Log is an open audit log. Its methods are safe for concurrent use.
type Log struct {
	path, headPath string
	abs            string // absolute path, the key of openPaths
	key            []byte
	logID          string
	f              *os.File

	mu       sync.Mutex
	cond     sync.Cond // signalled when a flush ends
	seq      uint64    // seq of the last record encoded
	lastMAC  string    // its MAC
	batch    []byte    // records encoded but not yet written
	spare    []byte    // the previous batch's buffer, reused
	flushing bool      // a goroutine is writing and syncing a batch
	durable  uint64    // seq of the last record written, synced and named by the head
	headMAC  string    // its MAC
	err      error     // the first write error; the log accepts nothing after it
	closed   bool

	flushes    int    // batches written (for tests)
	beforeSync func() // test hook, called by the flusher before it writes
}

var (
	openMu    sync.Mutex
	openPaths = map[string]bool{}
)

// Open opens the audit log at path for appending, creating it (and the key at keyPath, 0600,
// if missing) when there is no log yet. An existing log is verified in full before anything is
// appended (see Verify): Open refuses, with an error wrapping ErrIntegrity that says where,
// a log whose chain is broken or whose end does not match its head file. The one thing it
// mends is an incomplete final line after records that match the head, which a crash in the
// middle of a write leaves: it cuts the line off and records TypeTailRepaired. An existing log
// with no key file is refused with ErrKeyMissing, a key file others may read with
// ErrKeyPermissions. For a log Open refuses, see OpenAfterIncident.
func Open(path, keyPath string) (*Log, error) {
	return open(path, keyPath, nil)
}

// Incident is what an operator says when starting a new log after a broken one.
type Incident struct {
	Actor  string // who decided, e.g. the admin's username
	Reason string // why, e.g. a ticket number; required
}

// OpenAfterIncident is the way forward when Open refuses a log: it opens the log like Open if
// it is intact; otherwise (ErrIntegrity or ErrKeyMissing) it renames the log and its head to
// path.broken-<UTC time> (and .head), where Verify can still read them as evidence, and starts
// a new log whose first record, TypeChainBroken, names the archive, the previous log id, the
// first problem found, the number of problems, the actor and the reason. A missing key is
// created anew. Any other error is returned as from Open, and nothing is moved.
func OpenAfterIncident(path, keyPath string, inc Incident) (*Log, error) {
	if inc.Reason == "" {
		return nil, errors.New("audit: OpenAfterIncident needs a reason")
	}
	l, err := open(path, keyPath, nil)
	if err == nil || !errors.Is(err, ErrIntegrity) && !errors.Is(err, ErrKeyMissing) {
		return l, err
	}
	first := err.Error()
	var rep Report
	if _, kerr := readKey(keyPath); kerr == nil {
		rep, _ = Verify(path, keyPath)
		if len(rep.Problems) > 0 {
			first = rep.Problems[0].String()
		}
	}
	count := len(rep.Problems) + rep.MoreProblems
	if count == 0 {
		count = 1
	}
	archive, err := archiveName(path)
	if err != nil {
		return nil, err
	}
	for _, mv := range [][2]string{{path, archive}, {HeadPath(path), HeadPath(archive)}} {
		if ok, err := exists(mv[0]); err != nil {
			return nil, err
		} else if ok {
			if err := os.Rename(mv[0], mv[1]); err != nil {
				return nil, fmt.Errorf("audit: archiving broken log: %w", err)
			}
		}
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	fs := []field{
		{"actor", sanitize(inc.Actor)},
		{"archive", sanitize(filepath.Base(archive))},
		{"count", strconv.Itoa(count)},
		{"problem", sanitize(first)},
		{"reason", sanitize(inc.Reason)},
	}
	if rep.LogID != "" {
		fs = append(fs, field{"prev_log_id", sanitize(rep.LogID)})
	}
	return open(path, keyPath, fs)
}

func archiveName(path string) (string, error) {
	base := path + ".broken-" + time.Now().UTC().Format("20060102T150405Z")
	name := base
	for i := 2; ; i++ {
		a, err := exists(name)
		if err != nil {
			return "", err
		}
		b, err := exists(HeadPath(name))
		if err != nil {
			return "", err
		}
		if !a && !b {
			return name, nil
		}
		name = base + "-" + strconv.Itoa(i)
	}
}

// open opens or creates the log; a new log starts with TypeChainBroken and incident's fields
// when incident is not nil, with TypeLogCreated otherwise.
func open(path, keyPath string, incident []field) (l *Log, err error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	openMu.Lock()
	if openPaths[abs] {
		openMu.Unlock()
		return nil, fmt.Errorf("%w: %s", ErrAlreadyOpen, path)
	}
	openPaths[abs] = true
	openMu.Unlock()
	defer func() {
		if err != nil {
			openMu.Lock()
			delete(openPaths, abs)
			openMu.Unlock()
		}
	}()

	l = &Log{path: path, headPath: HeadPath(path), abs: abs}
	l.cond.L = &l.mu
	logExists, err := exists(path)
	if err != nil {
		return nil, err
	}
	headExists, err := exists(l.headPath)
	if err != nil {
		return nil, err
	}
	var size int64
	if logExists {
		st, err := os.Stat(path)
		if err != nil {
			return nil, fmt.Errorf("audit: %w", err)
		}
		size = st.Size()
	}
	l.key, err = readKey(keyPath)
	if errors.Is(err, ErrKeyMissing) && size == 0 && !headExists {
		l.key, err = createKey(keyPath)
	}
	if err != nil {
		if errors.Is(err, ErrKeyMissing) {
			err = fmt.Errorf("%w; the log %s exists, so a new key would not verify it", err, path)
		}
		return nil, err
	}

	switch {
	case size == 0 && headExists:
		what := "missing"
		if logExists {
			what = "empty"
		}
		return nil, fmt.Errorf("%w: %s is %s but its head file exists (log deleted?)%s", ErrIntegrity, path, what, advice)
	case size == 0:
		return l.create(incident)
	}
	return l.resume()
}

const advice = "; run Verify for a full report, or OpenAfterIncident to archive it and start a new log"

// create starts a new log: an empty file, then its first record.
func (l *Log) create(incident []field) (*Log, error) {
	id, err := newLogID()
	if err != nil {
		return nil, err
	}
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	if err := syncDir(filepath.Dir(l.path)); err != nil {
		f.Close()
		return nil, fmt.Errorf("audit: %w", err)
	}
	l.f, l.logID = f, id
	l.lastMAC = genesis(l.key, id)
	typ := TypeLogCreated
	fs := []field{{"log_id", id}}
	if incident != nil {
		typ = TypeChainBroken
		fs = append(fs, incident...)
		sortFields(fs)
	}
	if err := l.commit(typ, fs); err != nil {
		f.Close()
		return nil, err
	}
	return l, nil
}

// resume verifies an existing log and continues its chain.
func (l *Log) resume() (*Log, error) {
	f, err := os.OpenFile(l.path, os.O_RDWR|os.O_APPEND, 0)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	c, err := check(f, l.key, l.headPath)
	if err == nil {
		if _, serr := f.Seek(0, 2); serr != nil {
			err = fmt.Errorf("audit: %w", serr)
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	torn := false
	ps := c.rep.Problems[:0]
	for _, p := range c.rep.Problems {
		if p.torn {
			torn = true
		} else {
			ps = append(ps, p)
		}
	}
	c.rep.Problems = ps
	if !c.rep.OK() {
		f.Close()
		return nil, fmt.Errorf("audit: refusing to append to %s: %w%s", l.path, c.err(), advice)
	}
	l.f, l.logID = f, c.rep.LogID
	l.seq, l.lastMAC = c.maxSeen, c.lastMAC
	if torn {
		st, err := f.Stat()
		if err == nil {
			err = f.Truncate(c.validEnd)
		}
		if err == nil {
			err = f.Sync()
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("audit: removing torn final line: %w", err)
		}
		err = l.commit(TypeTailRepaired, []field{
			{"count", strconv.FormatInt(st.Size()-c.validEnd, 10)},
			{"reason", "incomplete final line removed on open (crash during a write)"},
		})
		if err != nil {
			f.Close()
			return nil, err
		}
		return l, nil
	}
	// Bring a head that lags after a crash up to date.
	l.durable, l.headMAC = l.seq, l.lastMAC
	if err := writeHead(l.headPath, l.key, head{l.logID, l.seq, l.lastMAC}); err != nil {
		f.Close()
		return nil, fmt.Errorf("audit: writing head: %w", err)
	}
	return l, nil
}

// Append records e durably: it returns once the record is written, synced to disk and named by
// the head file. Concurrent appends share one write and one sync (group commit). A field name
// outside AllowedFields or a malformed type is refused (ErrFieldNotAllowed, ErrBadType); values
// are escaped and capped, never refused. After a write error every Append fails.
func (l *Log) Append(e Event) error {
	fs, err := eventFields(e)
	if err != nil {
		return err
	}
	return l.commit(e.Type, fs)
}

func (l *Log) commit(typ string, fs []field) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return ErrClosed
	}
	if l.err != nil {
		return l.err
	}
	r := record{seq: l.seq + 1, time: time.Now().UTC().Format(time.RFC3339Nano), typ: typ, fields: fs, prev: l.lastMAC}
	var mac string
	l.batch, mac = seal(l.batch, l.key, domRecord, r.body())
	l.seq, l.lastMAC = r.seq, mac
	for mine := r.seq; l.durable < mine; {
		if l.err != nil {
			return l.err
		}
		if l.flushing {
			l.cond.Wait()
		} else {
			l.flushLocked()
		}
	}
	return nil
}

// flushLocked writes the current batch with one write, syncs it, then updates the head.
// It is called with l.mu held and releases it while doing I/O.
func (l *Log) flushLocked() {
	buf, end, mac := l.batch, l.seq, l.lastMAC
	l.batch, l.spare = l.spare[:0], nil
	l.flushing = true
	l.mu.Unlock()

	if l.beforeSync != nil {
		l.beforeSync()
	}
	_, err := l.f.Write(buf)
	if err == nil {
		err = l.f.Sync()
	}
	if err == nil {
		err = writeHead(l.headPath, l.key, head{l.logID, end, mac})
	}

	l.mu.Lock()
	l.flushing = false
	l.flushes++
	if err != nil {
		l.err = fmt.Errorf("audit: writing %s: %w (the log accepts nothing more; restart to verify and resume it)", l.path, err)
	} else {
		l.durable, l.headMAC = end, mac
	}
	l.spare = buf[:0]
	l.cond.Broadcast()
}

// Head returns the seq and MAC of the last durable record. Copying them somewhere the broker
// cannot rewrite (a remote syslog, a ticket) anchors the log: a later Verify that does not
// reach that seq and MAC shows what no local check can, a log and head rolled back together.
func (l *Log) Head() (seq uint64, mac string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.durable, l.headMAC
}

// LogID returns the random id of this log, fixed when it was created.
func (l *Log) LogID() string { return l.logID }

// Close waits for appends in progress, then closes the file. Appends after Close return
// ErrClosed. Close is idempotent: later calls return nil.
func (l *Log) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	for l.flushing || len(l.batch) > 0 && l.err == nil {
		if l.flushing {
			l.cond.Wait()
		} else {
			l.flushLocked()
		}
	}
	l.mu.Unlock()
	err := l.f.Close()
	openMu.Lock()
	delete(openPaths, l.abs)
	openMu.Unlock()
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}
