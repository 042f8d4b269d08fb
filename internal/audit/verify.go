package audit

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// ErrIntegrity is wrapped by the error Verify returns when the log or its head fails a check,
// and by the error Open returns when it refuses to extend a log for that reason.
var ErrIntegrity = errors.New("audit: log integrity check failed")

// Problem is one thing wrong with a log, and where.
type Problem struct {
	Where string // "line 7", "end" (the end of the log against the head) or "head" (the head file)
	Line  int    // 1-based line of the log; 0 for "end" and "head"
	Seq   uint64 // seq of the record concerned, where known
	What  string // e.g. "mac mismatch (record edited or forged, or wrong key)"

	torn bool // the incomplete final line a crash can leave; Open may repair it
}

func (p Problem) String() string { return p.Where + ": " + p.What }

// Report is what Verify found.
type Report struct {
	LogID    string    // from the first record ("" if it is missing or bad)
	Lines    int       // lines in the log, including bad ones and an incomplete last line
	Records  int       // records whose MAC verifies
	FirstSeq uint64    // seq of the first verified record
	LastSeq  uint64    // highest verified seq
	First    time.Time // time of the first verified record
	Last     time.Time // time of the last verified record
	HeadSeq  uint64    // seq the head file names (0 if it is missing or bad)

	Problems     []Problem // in file order, then end and head; at most maxProblems
	MoreProblems int       // problems found beyond those listed
	Notes        []string  // harmless findings, e.g. a head that lags after a crash
}

// OK reports whether no problem was found.
func (r *Report) OK() bool { return len(r.Problems) == 0 }

const (
	maxProblems = 1000
	macWindow   = 4096 // seq→MAC kept for recent records, to check prev links and the head
	maxMissing  = 1000 // seqs of one gap remembered to tell a deletion from a reordering
)

// Verify checks the log at path and its head file with the key at keyPath: every record's MAC,
// its seq (one more than the previous), its prev (the previous record's MAC; for the first, a
// MAC of the log id), the canonical encoding, a complete last line, and the head (same log, and
// the log reaches the seq and MAC it names). It returns the report, and an error wrapping
// ErrIntegrity if there is any problem, or the I/O error that stopped it.
func Verify(path, keyPath string) (Report, error) {
	key, err := readKey(keyPath)
	if err != nil {
		return Report{}, err
	}
	f, err := os.Open(path)
	if err != nil {
		return Report{}, fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	c, err := check(f, key, HeadPath(path))
	if err != nil {
		return c.rep, err
	}
	return c.rep, c.err()
}

type gap struct {
	problem   int // index in rep.Problems
	lo, hi    uint64
	remaining int // seqs of [lo, hi] not seen later; -1 if the gap was too wide to track
}

type pendingRec struct {
	seq  uint64
	mac  string
	line int
}

// checker walks a log line by line.
type checker struct {
	key []byte
	rep Report

	maxSeen  uint64            // highest seq of a trusted record
	macs     map[uint64]string // seq → MAC of trusted records, recent ones only
	missing  map[uint64]int    // seq → index in gaps, for seqs skipped so far
	gaps     []gap
	pending  []pendingRec // records with a bad MAC since the last good one
	lastMAC  string       // MAC of the record with seq maxSeen
	validEnd int64        // offset just past the last complete line
}

func (c *checker) problem(line int, seq uint64, format string, args ...any) int {
	p := Problem{Line: line, Seq: seq, What: fmt.Sprintf(format, args...)}
	switch line {
	case 0:
		p.Where = "end"
	case -1:
		p.Where, p.Line = "head", 0
	default:
		p.Where = fmt.Sprintf("line %d", line)
	}
	if len(c.rep.Problems) >= maxProblems {
		c.rep.MoreProblems++
		return -1
	}
	c.rep.Problems = append(c.rep.Problems, p)
	return len(c.rep.Problems) - 1
}

func (c *checker) err() error {
	if c.rep.OK() {
		return nil
	}
	more := len(c.rep.Problems) - 1 + c.rep.MoreProblems
	if more == 0 {
		return fmt.Errorf("%w: %s", ErrIntegrity, c.rep.Problems[0])
	}
	return fmt.Errorf("%w: %s (and %d more)", ErrIntegrity, c.rep.Problems[0], more)
}

// check reads the whole log from r and compares its end with the head file at headPath.
func check(r io.Reader, key []byte, headPath string) (*checker, error) {
	c := &checker{key: key, macs: map[uint64]string{}, missing: map[uint64]int{}}
	br := bufio.NewReaderSize(r, 64<<10)
	var off int64
	for n := 1; ; n++ {
		line, long, err := readLine(br)
		if len(line) == 0 && !long && err == io.EOF {
			break
		}
		if err != nil && err != io.EOF {
			return c, fmt.Errorf("audit: reading log: %w", err)
		}
		c.rep.Lines = n
		if err == io.EOF { // bytes after the last newline
			i := c.problem(n, 0, "incomplete final line (%d bytes without a newline: torn write or truncated mid-record)", len(line))
			if i >= 0 {
				c.rep.Problems[i].torn = true
			}
			break
		}
		off += int64(len(line)) + 1
		if long {
			c.problem(n, 0, "malformed record (line longer than %d bytes)", maxLineLen)
		} else {
			c.line(n, line)
		}
		c.validEnd = off
	}
	c.finish(headPath)
	return c, nil
}

// readLine returns the next line without its newline. A line longer than maxLineLen is skipped
// and reported as long; err is io.EOF for a last line with no newline (or none at all).
func readLine(br *bufio.Reader) (line []byte, long bool, err error) {
	for {
		chunk, err := br.ReadSlice('\n')
		if !long {
			line = append(line, chunk...)
			if len(line) > maxLineLen+1 {
				long, line = true, nil
			}
		}
		switch err {
		case bufio.ErrBufferFull:
			continue
		case nil:
			if long {
				return nil, true, nil
			}
			return line[:len(line)-1], false, nil
		default:
			return line, long, err
		}
	}
}

func (c *checker) line(n int, line []byte) {
	body, mac, good, err := unseal(c.key, domRecord, line)
	if err != nil {
		c.problem(n, 0, "malformed record (%v)", err)
		return
	}
	rec, perr := parseBody(body)
	if !good {
		var seq uint64
		if rec != nil {
			seq = rec.seq
			c.pending = append(c.pending, pendingRec{seq, mac, n})
		}
		c.problem(n, seq, "mac mismatch (record edited or forged, or wrong key)")
		return
	}
	if perr != nil {
		// Only the key holder can produce a good MAC, so this is a bug, not an attack.
		c.problem(n, 0, "malformed record with a good mac (%v)", perr)
		return
	}
	c.adopt(rec)
	seqOK := true
	switch {
	case rec.seq == c.maxSeen+1:
	case rec.seq > c.maxSeen+1:
		seqOK = false
		lo, hi := c.maxSeen+1, rec.seq-1
		var i int
		if c.maxSeen == 0 {
			i = c.problem(n, rec.seq, "seq %d at the start of the log, want 1 (%s deleted)", rec.seq, plural(lo, hi, "first record", "first records"))
		} else {
			i = c.problem(n, rec.seq, "seq %d after %d (%s deleted)", rec.seq, c.maxSeen, plural(lo, hi, "record", "records"))
		}
		g := gap{problem: i, lo: lo, hi: hi, remaining: -1}
		if hi-lo < maxMissing && i >= 0 {
			g.remaining = int(hi - lo + 1)
			for k := range uint64(g.remaining) {
				c.missing[lo+k] = len(c.gaps)
			}
		}
		c.gaps = append(c.gaps, g)
	default:
		seqOK = false
		if gi, ok := c.missing[rec.seq]; ok {
			delete(c.missing, rec.seq)
			c.gaps[gi].remaining--
			c.problem(n, rec.seq, "seq %d after %d (out of order: records reordered)", rec.seq, c.maxSeen)
		} else {
			c.problem(n, rec.seq, "seq %d after %d (duplicate seq: record copied or replayed)", rec.seq, c.maxSeen)
		}
	}
	if rec.seq == 1 {
		logID := rec.get("log_id")
		switch {
		case rec.typ != TypeLogCreated && rec.typ != TypeChainBroken:
			c.problem(n, 1, "first record has type %q, want %s or %s", rec.typ, TypeLogCreated, TypeChainBroken)
		case logID == "":
			c.problem(n, 1, "first record has no log_id")
		case rec.prev != genesis(c.key, logID):
			c.problem(n, 1, "prev is not the genesis of log %s", logID)
		}
		if c.rep.LogID == "" {
			c.rep.LogID = logID
		}
	} else if m, ok := c.macs[rec.seq-1]; ok && seqOK && m != rec.prev {
		c.problem(n, rec.seq, "prev does not match record %d (record replaced, or spliced from another log)", rec.seq-1)
	}
	c.trust(rec.seq, mac)
	t, err := time.Parse(time.RFC3339Nano, rec.time)
	if err != nil {
		c.problem(n, rec.seq, "bad time %q", rec.time)
	}
	if c.rep.Records == 0 {
		c.rep.FirstSeq, c.rep.First = rec.seq, t
	}
	c.rep.Records++
	c.rep.Last = t
}

// adopt deals with a record with a bad MAC just before rec, carrying the seq before rec's: it
// holds that seq's place (already reported), so the seq is not missing. If rec links to its
// MAC it is a genuine record edited in place and its MAC is trusted for the head check; if not,
// it is a forgery in place of the real record. Other bad records are inserted and ignored.
func (c *checker) adopt(rec *record) {
	if n := len(c.pending); n > 0 {
		p := c.pending[n-1]
		if p.seq == rec.seq-1 && p.seq > c.maxSeen {
			if p.mac == rec.prev {
				c.trust(p.seq, p.mac)
			} else {
				c.trust(p.seq, "")
				delete(c.macs, p.seq)
			}
		}
	}
	c.pending = c.pending[:0]
}

func (c *checker) trust(seq uint64, mac string) {
	if gi, ok := c.missing[seq]; ok {
		delete(c.missing, seq)
		c.gaps[gi].remaining--
	}
	if seq >= c.maxSeen {
		c.maxSeen, c.lastMAC = seq, mac
	}
	c.macs[seq] = mac
	if len(c.macs) > 2*macWindow {
		for s := range c.macs {
			if s+macWindow < c.maxSeen {
				delete(c.macs, s)
			}
		}
	}
}

func plural(lo, hi uint64, one, many string) string {
	if lo == hi {
		return fmt.Sprintf("%s %d", one, lo)
	}
	return fmt.Sprintf("%s %d-%d", many, lo, hi)
}

// finish rewords gaps that turned out to be reorderings and compares the end with the head.
func (c *checker) finish(headPath string) {
	for _, g := range c.gaps {
		if g.remaining == 0 && g.problem >= 0 {
			p := &c.rep.Problems[g.problem]
			p.What = fmt.Sprintf("seq %d, want %d (%s later in the log: records reordered)", p.Seq, g.lo, plural(g.lo, g.hi, "record", "records"))
		}
	}
	c.rep.LastSeq = c.maxSeen
	if c.rep.Records == 0 && c.rep.Lines > 0 {
		c.rep.Notes = append(c.rep.Notes, "no record verifies: is it the right key file?")
	}
	if c.rep.Lines == 0 {
		c.problem(0, 0, "log is empty")
	}
	h, err := readHead(headPath, c.key)
	if err != nil {
		c.problem(-1, 0, "%v", err)
		return
	}
	c.rep.HeadSeq = h.Seq
	switch {
	case c.rep.LogID != "" && h.LogID != c.rep.LogID:
		c.problem(-1, h.Seq, "head is for log %s, the log is %s (log or head replaced)", h.LogID, c.rep.LogID)
	case h.Seq > c.maxSeen:
		c.problem(0, h.Seq, "log ends at seq %d but head says %d (truncated)", c.maxSeen, h.Seq)
	default:
		m, ok := c.macs[h.Seq]
		switch {
		case !ok:
			c.problem(-1, h.Seq, "head names seq %d, which is not a verified recent record (log ends at %d)", h.Seq, c.maxSeen)
		case m != h.Last:
			c.problem(-1, h.Seq, "record %d is not the one the head names (log rewritten)", h.Seq)
		case h.Seq < c.maxSeen:
			c.rep.Notes = append(c.rep.Notes, fmt.Sprintf("the log has %d record(s) after the head (seq %d): a crash between writing and updating the head", c.maxSeen-h.Seq, h.Seq))
		}
	}
}
