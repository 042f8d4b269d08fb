package audit

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// paths returns a log path and a key path in a fresh directory.
func paths(t testing.TB) (string, string) {
	dir := t.TempDir()
	return filepath.Join(dir, "audit.log"), filepath.Join(dir, "audit.key")
}

func mustOpen(t testing.TB, path, keyPath string) *Log {
	t.Helper()
	l, err := Open(path, keyPath)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return l
}

func authFailure(i int) Event {
	return Event{Type: TypeAuthFailure, Fields: map[string]string{
		"username": fmt.Sprintf("user%d", i), "remote": "10.0.0.9:51234", "reason": "bad_password",
	}}
}

// writeLog creates a log with the log_created record and n events: n+1 records.
func writeLog(t testing.TB, path, keyPath string, n int) {
	t.Helper()
	l := mustOpen(t, path, keyPath)
	for i := range n {
		if err := l.Append(authFailure(i)); err != nil {
			t.Fatalf("Append: %v", err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
}

// lines reads the log as lines, each with its newline.
func lines(t testing.TB, path string) [][]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.SplitAfter(b, []byte("\n"))[:bytes.Count(b, []byte("\n"))]
}

func writeLines(t testing.TB, path string, ls [][]byte) {
	t.Helper()
	if err := os.WriteFile(path, bytes.Join(ls, nil), 0o600); err != nil {
		t.Fatal(err)
	}
}

// decode parses one log line into a map, failing the test if it is not JSON.
func decode(t testing.TB, line []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(line, &m); err != nil {
		t.Fatalf("line %q: %v", line, err)
	}
	return m
}

func verifyOK(t testing.TB, path, keyPath string) Report {
	t.Helper()
	rep, err := Verify(path, keyPath)
	if err != nil {
		t.Fatalf("Verify: %v\nproblems: %v", err, rep.Problems)
	}
	return rep
}

func TestRoundTrip(t *testing.T) {
	path, keyPath := paths(t)
	before := time.Now().UTC()
	writeLog(t, path, keyPath, 100)
	rep := verifyOK(t, path, keyPath)
	if rep.Records != 101 || rep.Lines != 101 || rep.FirstSeq != 1 || rep.LastSeq != 101 || rep.HeadSeq != 101 {
		t.Errorf("report %+v, want 101 records, seq 1 to 101, head 101", rep)
	}
	if rep.First.Before(before.Add(-time.Second)) || rep.Last.Before(rep.First) || time.Since(rep.Last) > time.Minute {
		t.Errorf("times %v to %v, want from %v on", rep.First, rep.Last, before)
	}
	if len(rep.LogID) != 32 || len(rep.Notes) != 0 {
		t.Errorf("log id %q, notes %q", rep.LogID, rep.Notes)
	}
	ls := lines(t, path)
	first := decode(t, ls[0])
	if first["type"] != TypeLogCreated || first["log_id"] != rep.LogID {
		t.Errorf("first record %v", first)
	}
	m := decode(t, ls[5])
	want := map[string]any{"seq": 6.0, "type": TypeAuthFailure, "username": "user4", "remote": "10.0.0.9:51234", "reason": "bad_password"}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("line 6 %s = %v, want %v", k, m[k], v)
		}
	}
	if ts, err := time.Parse(time.RFC3339Nano, m["time"].(string)); err != nil || ts.Location() != time.UTC {
		t.Errorf("time %v: %v", m["time"], err)
	}
	if m["prev"] != decode(t, ls[4])["mac"] {
		t.Errorf("prev of line 6 is not the mac of line 5")
	}
	for _, p := range []string{path, HeadPath(path), keyPath} {
		if st, err := os.Stat(p); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v, mode %v, want 0600", p, err, st.Mode().Perm())
		}
	}
}

func TestConcurrentAppend(t *testing.T) {
	path, keyPath := paths(t)
	l := mustOpen(t, path, keyPath)
	const workers, each = 8, 40
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				e := Event{Type: TypeACLDeny, Fields: map[string]string{
					"client_id": fmt.Sprintf("w%d", w), "count": strconv.Itoa(i),
					"topic": strings.Repeat("x", 200),
				}}
				if err := l.Append(e); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	seq, mac := l.Head()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d appends in %d flushes", workers*each, l.flushes)
	if seq != workers*each+1 || len(mac) != 64 {
		t.Errorf("Head() = %d, %q", seq, mac)
	}
	ls := lines(t, path)
	if len(ls) != workers*each+1 {
		t.Fatalf("%d lines, want %d", len(ls), workers*each+1)
	}
	next := map[string]int{}
	for i, line := range ls {
		m := decode(t, line) // an interleaved line would not parse
		if m["seq"] != float64(i+1) {
			t.Fatalf("line %d has seq %v", i+1, m["seq"])
		}
		if i == 0 {
			continue
		}
		w := m["client_id"].(string)
		if m["count"] != strconv.Itoa(next[w]) {
			t.Errorf("line %d: %s count %v, want %d (a worker's appends out of order)", i+1, w, m["count"], next[w])
		}
		next[w]++
	}
	rep := verifyOK(t, path, keyPath)
	if rep.Records != workers*each+1 {
		t.Errorf("%d records", rep.Records)
	}
}

// TestGroupCommit holds the first flush until ten more appends are queued, and checks they
// share the next write and sync.
func TestGroupCommit(t *testing.T) {
	path, keyPath := paths(t)
	l := mustOpen(t, path, keyPath)
	defer l.Close()
	started, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	l.mu.Lock()
	l.beforeSync = func() { once.Do(func() { close(started); <-release }) }
	base := l.flushes
	l.mu.Unlock()

	var wg sync.WaitGroup
	wg.Add(11)
	go func() { defer wg.Done(); _ = l.Append(authFailure(0)) }()
	<-started
	for i := 1; i <= 10; i++ {
		go func() { defer wg.Done(); _ = l.Append(authFailure(i)) }()
	}
	for deadline := time.Now().Add(5 * time.Second); ; {
		l.mu.Lock()
		queued := l.seq - 2 // the log_created record and the one being flushed
		l.mu.Unlock()
		if queued == 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("only %d appends queued", queued)
		}
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if n := l.flushes - base; n != 2 {
		t.Errorf("11 appends took %d flushes, want 2", n)
	}
	if seq, _ := l.Head(); seq != 12 {
		t.Errorf("head seq %d, want 12", seq)
	}
}

// tamper cases: each mutates a log of 21 records (seq 1 to 21) and names the first problem
// Verify must report.
func TestVerifyDetectsTampering(t *testing.T) {
	type files struct {
		t              *testing.T
		path, headPath string
		lines          [][]byte
	}
	replace := func(line []byte, old, new string) []byte {
		if !bytes.Contains(line, []byte(old)) {
			panic("no " + old + " in " + string(line))
		}
		return bytes.Replace(line, []byte(old), []byte(new), 1)
	}
	cases := []struct {
		name   string
		mutate func(f *files)
		want   []string // problems, in order, as "where: what" prefixes or substrings
	}{
		{"edit field value", func(f *files) {
			f.lines[6] = replace(f.lines[6], `"username":"user5"`, `"username":"user6"`)
		}, []string{"line 7: mac mismatch (record edited"}},
		{"edit type", func(f *files) {
			f.lines[6] = replace(f.lines[6], TypeAuthFailure, TypeConnect)
		}, []string{"line 7: mac mismatch"}},
		{"edit mac too", func(f *files) {
			f.lines[6] = replace(f.lines[6], `"mac":"`, `"mac":"0`)
			f.lines[6] = append(f.lines[6][:len(f.lines[6])-4], "\"}\n"...)
		}, []string{"line 7: mac mismatch"}},
		{"replace a record with a forgery", func(f *files) {
			// Record 7 with another prev and mac: the next record does not link to it.
			var m7, m3 map[string]any
			_ = json.Unmarshal(f.lines[6], &m7)
			_ = json.Unmarshal(f.lines[2], &m3)
			f.lines[6] = replace(f.lines[6], m7["prev"].(string), m3["prev"].(string))
			f.lines[6] = replace(f.lines[6], m7["mac"].(string), m3["mac"].(string))
		}, []string{"line 7: mac mismatch"}},
		{"delete middle record", func(f *files) {
			f.lines = append(f.lines[:8:8], f.lines[9:]...)
		}, []string{"line 9: seq 10 after 8 (record 9 deleted)"}},
		{"delete two records", func(f *files) {
			f.lines = append(f.lines[:8:8], f.lines[10:]...)
		}, []string{"line 9: seq 11 after 8 (records 9-10 deleted)"}},
		{"delete first record", func(f *files) {
			f.lines = f.lines[1:]
		}, []string{"line 1: seq 2 at the start of the log, want 1 (first record 1 deleted)"}},
		{"swap two records", func(f *files) {
			f.lines[4], f.lines[5] = f.lines[5], f.lines[4]
		}, []string{"line 5: seq 6, want 5 (record 5 later in the log: records reordered)", "line 6: seq 5 after 6 (out of order: records reordered)"}},
		{"move a record later", func(f *files) {
			moved := f.lines[3]
			f.lines = append(f.lines[:3:3], f.lines[4:]...)
			f.lines = append(f.lines[:10:10], append([][]byte{moved}, f.lines[10:]...)...)
		}, []string{"line 4: seq 5, want 4 (record 4 later", "line 11: seq 4 after 11 (out of order"}},
		{"duplicate a record", func(f *files) {
			f.lines = append(f.lines[:10:10], append([][]byte{f.lines[3]}, f.lines[10:]...)...)
		}, []string{"line 11: seq 4 after 10 (duplicate seq"}},
		{"insert forged record", func(f *files) {
			// Seq, prev and a SHA-256 "mac" made without the key.
			var m map[string]any
			_ = json.Unmarshal(f.lines[3], &m)
			body := fmt.Sprintf(`{"seq":5,"time":"2025-01-01T00:00:00Z","type":"client.connect","client_id":"intruder","prev":%q}`, m["mac"])
			sum := fmt.Sprintf("%x", sha256.Sum256([]byte(body)))
			forged := body[:len(body)-1] + `,"mac":"` + sum + "\"}\n"
			f.lines = append(f.lines[:4:4], append([][]byte{[]byte(forged)}, f.lines[4:]...)...)
		}, []string{"line 5: mac mismatch (record edited or forged"}},
		{"insert garbage line", func(f *files) {
			f.lines = append(f.lines[:4:4], append([][]byte{[]byte("hello\n")}, f.lines[4:]...)...)
		}, []string{"line 5: malformed record"}},
		{"truncate last record", func(f *files) {
			f.lines = f.lines[:20]
		}, []string{"end: log ends at seq 20 but head says 21 (truncated)"}},
		{"truncate last records", func(f *files) {
			f.lines = f.lines[:17]
		}, []string{"end: log ends at seq 17 but head says 21 (truncated)"}},
		{"truncate everything", func(f *files) {
			f.lines = nil
		}, []string{"end: log is empty", "end: log ends at seq 0 but head says 21 (truncated)"}},
		{"truncate mid-line", func(f *files) {
			f.lines[20] = f.lines[20][:40]
		}, []string{"line 21: incomplete final line (40 bytes", "end: log ends at seq 20 but head says 21 (truncated)"}},
		{"edit the head seq", func(f *files) {
			b, _ := os.ReadFile(f.headPath)
			b = bytes.Replace(b, []byte(`"seq":21`), []byte(`"seq":20`), 1)
			if err := os.WriteFile(f.headPath, b, 0o600); err != nil {
				f.t.Fatal(err)
			}
		}, []string{"head: mac mismatch (head file edited"}},
		{"delete the head", func(f *files) {
			if err := os.Remove(f.headPath); err != nil {
				f.t.Fatal(err)
			}
		}, []string{"head: head file missing"}},
		{"replace log and head with another log", func(f *files) {
			// Same key, another log: its head names another log id.
			other := filepath.Join(filepath.Dir(f.path), "other.log")
			writeLog(f.t, other, filepath.Join(filepath.Dir(f.path), "audit.key"), 3)
			b, _ := os.ReadFile(HeadPath(other))
			if err := os.WriteFile(f.headPath, b, 0o600); err != nil {
				f.t.Fatal(err)
			}
		}, []string{"head: head is for log"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path, keyPath := paths(t)
			writeLog(t, path, keyPath, 20)
			f := &files{t: t, path: path, headPath: HeadPath(path), lines: lines(t, path)}
			c.mutate(f)
			writeLines(t, path, f.lines)
			rep, err := Verify(path, keyPath)
			if !errors.Is(err, ErrIntegrity) {
				t.Fatalf("Verify error %v, want ErrIntegrity; report %+v", err, rep)
			}
			var got []string
			for _, p := range rep.Problems {
				got = append(got, p.String())
			}
			if len(got) != len(c.want) {
				t.Fatalf("problems:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
			for i, w := range c.want {
				if !strings.HasPrefix(got[i], w) {
					t.Errorf("problem %d: %q, want %q...", i, got[i], w)
				}
			}
			if !strings.Contains(err.Error(), got[0]) {
				t.Errorf("error %q does not name the first problem", err)
			}
			// Open refuses every one of them, saying where.
			if l, err := Open(path, keyPath); err == nil {
				l.Close()
				t.Errorf("Open accepted the tampered log")
			} else if !errors.Is(err, ErrIntegrity) || !strings.Contains(err.Error(), "OpenAfterIncident") {
				t.Errorf("Open: %v", err)
			} else if !slices.ContainsFunc(got, func(p string) bool { return strings.Contains(err.Error(), p) }) && !strings.Contains(err.Error(), "is empty but its head file exists") {
				t.Errorf("Open: %v: names none of the problems", err)
			}
		})
	}
}

func TestVerifyWrongKey(t *testing.T) {
	path, keyPath := paths(t)
	writeLog(t, path, keyPath, 5)
	other := filepath.Join(t.TempDir(), "other.key")
	if _, err := createKey(other); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(path, other)
	if !errors.Is(err, ErrIntegrity) {
		t.Fatalf("Verify with another key: %v", err)
	}
	if p := rep.Problems[0]; p.Where != "line 1" || p.Line != 1 || !strings.Contains(p.What, "mac mismatch") {
		t.Errorf("first problem %v, want line 1: mac mismatch", p)
	}
	if rep.Records != 0 || len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], "right key") {
		t.Errorf("records %d, notes %q", rep.Records, rep.Notes)
	}
	if last := rep.Problems[len(rep.Problems)-1]; last.Where != "head" {
		t.Errorf("last problem %v, want the head", last)
	}
}

func TestReopenContinuesChain(t *testing.T) {
	path, keyPath := paths(t)
	writeLog(t, path, keyPath, 10)
	key1, _ := os.ReadFile(keyPath)
	l := mustOpen(t, path, keyPath)
	if seq, _ := l.Head(); seq != 11 {
		t.Errorf("reopened at seq %d, want 11", seq)
	}
	id := l.LogID()
	for i := range 10 {
		if err := l.Append(authFailure(i)); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	writeLog(t, path, keyPath, 0) // open and close with nothing appended
	key2, _ := os.ReadFile(keyPath)
	if !bytes.Equal(key1, key2) {
		t.Error("the key changed on reopen")
	}
	rep := verifyOK(t, path, keyPath)
	if rep.Records != 21 || rep.LastSeq != 21 || rep.LogID != id {
		t.Errorf("report %+v, want 21 records of log %s", rep, id)
	}
}

func TestOpenRefusesMismatchedEnd(t *testing.T) {
	cases := []struct {
		name    string
		mutate  func(path string) error
		wantErr error
		want    string
	}{
		{"truncated", func(path string) error {
			b, _ := os.ReadFile(path)
			i := bytes.LastIndexByte(b[:len(b)-1], '\n')
			return os.WriteFile(path, b[:i+1], 0o600)
		}, ErrIntegrity, "end: log ends at seq 5 but head says 6 (truncated)"},
		{"head from earlier", func(path string) error {
			// A head that names a record the log does not have at that seq.
			b, _ := os.ReadFile(path)
			return os.WriteFile(path, append(b, b...), 0o600)
		}, ErrIntegrity, "line 7: seq 1 after 6 (duplicate seq"},
		{"log deleted", os.Remove, ErrIntegrity, "is missing but its head file exists"},
		{"log emptied", func(path string) error { return os.Truncate(path, 0) }, ErrIntegrity, "is empty but its head file exists"},
		{"key deleted", func(path string) error {
			return os.Remove(filepath.Join(filepath.Dir(path), "audit.key"))
		}, ErrKeyMissing, "a new key would not verify it"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path, keyPath := paths(t)
			writeLog(t, path, keyPath, 5)
			if err := c.mutate(path); err != nil {
				t.Fatal(err)
			}
			l, err := Open(path, keyPath)
			if err == nil {
				l.Close()
				t.Fatal("Open accepted it")
			}
			if !errors.Is(err, c.wantErr) || !strings.Contains(err.Error(), c.want) {
				t.Errorf("Open: %v\nwant %v, containing %q", err, c.wantErr, c.want)
			}
			if _, err := os.Stat(keyPath); c.wantErr == ErrKeyMissing && err == nil {
				t.Error("Open created a new key next to an existing log")
			}
		})
	}
}

func TestOpenAfterIncident(t *testing.T) {
	path, keyPath := paths(t)
	writeLog(t, path, keyPath, 5)
	b, _ := os.ReadFile(path)
	tornLen := len(lines(t, path)[5]) - 10
	os.WriteFile(path, b[:len(b)-10], 0o600) // truncated mid-record

	if _, err := OpenAfterIncident(path, keyPath, Incident{Actor: "admin"}); err == nil {
		t.Error("OpenAfterIncident without a reason succeeded")
	}
	l, err := OpenAfterIncident(path, keyPath, Incident{Actor: "admin", Reason: "INC-42"})
	if err != nil {
		t.Fatalf("OpenAfterIncident: %v", err)
	}
	if err := l.Append(authFailure(1)); err != nil {
		t.Fatal(err)
	}
	l.Close()

	archives, _ := filepath.Glob(path + ".broken-*")
	if len(archives) != 2 { // the log and its head
		t.Fatalf("archives %q", archives)
	}
	archive := archives[0]
	old, err := Verify(archive, keyPath)
	if !errors.Is(err, ErrIntegrity) || old.LastSeq != 5 || old.HeadSeq != 6 {
		t.Errorf("Verify(archive): %v, %+v", err, old)
	}
	rep := verifyOK(t, path, keyPath)
	if rep.Records != 2 || rep.LogID == old.LogID {
		t.Errorf("new log: %+v", rep)
	}
	first := decode(t, lines(t, path)[0])
	want := map[string]any{
		"type": TypeChainBroken, "actor": "admin", "reason": "INC-42", "archive": filepath.Base(archive),
		"prev_log_id": old.LogID, "count": "2", "problem": "line 6: incomplete final line (" + strconv.Itoa(tornLen) + " bytes without a newline: torn write or truncated mid-record)",
	}
	for k, v := range want {
		if first[k] != v {
			t.Errorf("first record %s = %v, want %v", k, first[k], v)
		}
	}

	// On an intact log it is Open.
	l, err = OpenAfterIncident(path, keyPath, Incident{Actor: "admin", Reason: "again"})
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if a, _ := filepath.Glob(path + ".broken-*"); len(a) != 2 {
		t.Errorf("an intact log was archived: %q", a)
	}
	if rep := verifyOK(t, path, keyPath); rep.Records != 2 {
		t.Errorf("records %d", rep.Records)
	}

	// With the key lost: a new key, a new log.
	os.Remove(keyPath)
	l, err = OpenAfterIncident(path, keyPath, Incident{Actor: "admin", Reason: "key lost"})
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if a, _ := filepath.Glob(path + ".broken-*"); len(a) != 4 {
		t.Errorf("archives %q", a)
	}
	verifyOK(t, path, keyPath)
}

func TestOpenRepairsTornTail(t *testing.T) {
	path, keyPath := paths(t)
	writeLog(t, path, keyPath, 5)
	// A crash in the middle of writing record 7: part of a line, no newline, head still at 6.
	f, _ := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	f.WriteString(`{"seq":7,"time":"2025-01-0`)
	f.Close()
	rep, err := Verify(path, keyPath)
	if !errors.Is(err, ErrIntegrity) || len(rep.Problems) != 1 || !strings.HasPrefix(rep.Problems[0].String(), "line 7: incomplete final line (26 bytes") {
		t.Fatalf("Verify: %v %v", err, rep.Problems)
	}
	l := mustOpen(t, path, keyPath)
	l.Append(authFailure(9))
	l.Close()
	rep = verifyOK(t, path, keyPath)
	if rep.Records != 8 {
		t.Errorf("%d records, want 8", rep.Records)
	}
	m := decode(t, lines(t, path)[6])
	if m["type"] != TypeTailRepaired || m["count"] != "26" || m["seq"] != 7.0 {
		t.Errorf("record 7: %v", m)
	}
}

func TestHeadLagAfterCrash(t *testing.T) {
	path, keyPath := paths(t)
	writeLog(t, path, keyPath, 3)
	oldHead, _ := os.ReadFile(HeadPath(path))
	writeLog(t, path, keyPath, 2)
	// A crash after syncing records 5 and 6 but before renaming the new head.
	os.WriteFile(HeadPath(path), oldHead, 0o600)
	rep := verifyOK(t, path, keyPath)
	if rep.HeadSeq != 4 || rep.LastSeq != 6 || len(rep.Notes) != 1 || !strings.Contains(rep.Notes[0], "2 record(s) after the head") {
		t.Errorf("report %+v", rep)
	}
	writeLog(t, path, keyPath, 0) // Open brings the head up to date
	if rep := verifyOK(t, path, keyPath); rep.HeadSeq != 6 || len(rep.Notes) != 0 {
		t.Errorf("after Open: %+v", rep)
	}
}

func TestFieldAllowList(t *testing.T) {
	path, keyPath := paths(t)
	l := mustOpen(t, path, keyPath)
	defer l.Close()
	for _, name := range []string{"password", "payload", "secret", "token", "Password", "USERNAME", "", "log_id", "seq", "mac", "prev", "time", "type"} {
		err := l.Append(Event{Type: TypeAuthFailure, Fields: map[string]string{"username": "u", name: "hunter2"}})
		if !errors.Is(err, ErrFieldNotAllowed) {
			t.Errorf("field %q: %v, want ErrFieldNotAllowed", name, err)
		}
	}
	for _, typ := range []string{"", "auth", "Auth.failure", "auth..failure", ".auth", "auth.failure.", "auth failure", "auth.fäil", TypeLogCreated, TypeChainBroken, "audit.anything", strings.Repeat("a.", 40)} {
		if err := l.Append(Event{Type: typ}); !errors.Is(err, ErrBadType) {
			t.Errorf("type %q: %v, want ErrBadType", typ, err)
		}
	}
	all := map[string]string{}
	for name := range AllowedFields() {
		all[name] = "v"
	}
	if err := l.Append(Event{Type: "admin.test_2", Fields: all}); err != nil {
		t.Errorf("every allowed field: %v", err)
	}
	if seq, _ := l.Head(); seq != 2 {
		t.Errorf("refused events were written: head seq %d", seq)
	}
	for _, name := range []string{"client_id", "username", "device", "remote", "listener", "topic_filter", "reason", "actor", "action", "serial", "count"} {
		if _, ok := AllowedFields()[name]; !ok {
			t.Errorf("%q is not allowed", name)
		}
	}
}

func TestValuesSanitized(t *testing.T) {
	cases := []struct{ in, want string }{
		{"nurse1", "nurse1"},
		{"a\nb", `a\x0ab`},
		{"x\r\n{\"seq\":1}", `x\x0d\x0a{"seq":1}`},
		{"\x1b[31mred\x1b[0m", `\x1b[31mred\x1b[0m`},
		{"nul\x00", `nul\x00`},
		{"del\x7f c1\u0085", `del\x7f c1\x85`},
		{`back\slash`, `back\\slash`},
		{"evil\u202etxt.exe", `evil\u{202e}txt.exe`},
		{"sep\u2028", `sep\u{2028}`},
		{"bad\xffutf8", "bad\uFFFDutf8"},
		{"überwachung 監視", "überwachung 監視"},
		{strings.Repeat("a", MaxValueLen), strings.Repeat("a", MaxValueLen)},
		{strings.Repeat("a", MaxValueLen+1), strings.Repeat("a", MaxValueLen-3) + "..."},
		{strings.Repeat("a", 1<<20), strings.Repeat("a", MaxValueLen-3) + "..."},
		{strings.Repeat("€", 200), strings.Repeat("€", (MaxValueLen-3)/3) + "..."},
		{strings.Repeat("\n", 100), strings.Repeat(`\x0a`, (MaxValueLen-3)/4) + "..."},
	}
	for _, c := range cases {
		got := sanitize(c.in)
		if got != c.want {
			t.Errorf("sanitize(%.40q) = %.60q, want %.60q", c.in, got, c.want)
		}
		if len(got) > MaxValueLen || !utf8.ValidString(got) {
			t.Errorf("sanitize(%.40q): %d bytes, valid UTF-8 %v", c.in, len(got), utf8.ValidString(got))
		}
	}

	// Through the log: one line per record, and the value reads back escaped and capped.
	path, keyPath := paths(t)
	l := mustOpen(t, path, keyPath)
	evil := "admin\n{\"seq\":99}\r\x1b[2J" + strings.Repeat("x", 5000)
	if err := l.Append(Event{Type: TypeAuthFailure, Fields: map[string]string{"username": evil, "remote": "\xff"}}); err != nil {
		t.Fatal(err)
	}
	l.Close()
	ls := lines(t, path)
	if len(ls) != 2 {
		t.Fatalf("%d lines, want 2", len(ls))
	}
	m := decode(t, ls[1])
	if u := m["username"].(string); u != sanitize(evil) || len(u) > MaxValueLen || !strings.HasPrefix(u, `admin\x0a{"seq":99}\x0d\x1b[2J`) {
		t.Errorf("username %q", u)
	}
	verifyOK(t, path, keyPath)
}

func TestKeyFile(t *testing.T) {
	path, keyPath := paths(t)
	writeLog(t, path, keyPath, 1)
	st, err := os.Stat(keyPath)
	if err != nil || st.Mode().Perm() != 0o600 || st.Size() != KeySize {
		t.Fatalf("key file: %v, mode %v, %d bytes", err, st.Mode().Perm(), st.Size())
	}
	key, _ := os.ReadFile(keyPath)

	// An existing key is used for a new log, not replaced.
	other := filepath.Join(filepath.Dir(path), "second.log")
	writeLog(t, other, keyPath, 1)
	if k, _ := os.ReadFile(keyPath); !bytes.Equal(k, key) {
		t.Error("key replaced")
	}
	verifyOK(t, other, keyPath)

	os.Chmod(keyPath, 0o640)
	if _, err := Open(path, keyPath); !errors.Is(err, ErrKeyPermissions) {
		t.Errorf("Open with a group-readable key: %v", err)
	}
	if _, err := Verify(path, keyPath); !errors.Is(err, ErrKeyPermissions) {
		t.Errorf("Verify with a group-readable key: %v", err)
	}
	os.Chmod(keyPath, 0o600)
	os.WriteFile(keyPath, key[:16], 0o600)
	if _, err := Open(path, keyPath); !errors.Is(err, ErrKey) {
		t.Errorf("Open with a short key: %v", err)
	}
	os.Remove(keyPath)
	if _, err := Verify(path, keyPath); !errors.Is(err, ErrKeyMissing) {
		t.Errorf("Verify with no key: %v", err)
	}
}

func TestCloseAndDoubleOpen(t *testing.T) {
	path, keyPath := paths(t)
	l := mustOpen(t, path, keyPath)
	if _, err := Open(path, keyPath); !errors.Is(err, ErrAlreadyOpen) {
		t.Errorf("second Open: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := l.Append(authFailure(1)); !errors.Is(err, ErrClosed) {
		t.Errorf("Append after Close: %v", err)
	}
	l = mustOpen(t, path, keyPath) // closing released the path
	l.Close()
}

// TestConcurrentAppendAndClose: every Append either succeeds and is in the log, or fails with
// ErrClosed.
func TestConcurrentAppendAndClose(t *testing.T) {
	path, keyPath := paths(t)
	l := mustOpen(t, path, keyPath)
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok := 0
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := l.Append(authFailure(i))
			if err != nil && !errors.Is(err, ErrClosed) {
				t.Error(err)
			}
			if err == nil {
				mu.Lock()
				ok++
				mu.Unlock()
			}
		}()
	}
	l.Close()
	wg.Wait()
	if rep := verifyOK(t, path, keyPath); rep.Records != ok+1 {
		t.Errorf("%d records, %d appends succeeded", rep.Records, ok)
	}
}

// TestStdlibOnly keeps the package at layer 0: no vitalmq or third-party imports.
func TestStdlibOnly(t *testing.T) {
	files, _ := filepath.Glob("*.go")
	for _, name := range files {
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if first, _, _ := strings.Cut(p, "/"); strings.Contains(first, ".") || first == "vitalmq" || p == "log" || p == "log/slog" {
				t.Errorf("%s imports %s", name, p)
			}
		}
	}
}

// TestWriteErrorIsSticky: after a failed write the log refuses every append instead of leaving
// a hole in the chain, and a restart resumes from what is on disk.
func TestWriteErrorIsSticky(t *testing.T) {
	path, keyPath := paths(t)
	l := mustOpen(t, path, keyPath)
	if err := l.Append(authFailure(1)); err != nil {
		t.Fatal(err)
	}
	l.f.Close() // the disk goes away
	err1 := l.Append(authFailure(2))
	err2 := l.Append(authFailure(3))
	if err1 == nil || err2 == nil || !strings.Contains(err2.Error(), "accepts nothing more") {
		t.Fatalf("Append after a write error: %v, %v", err1, err2)
	}
	if seq, _ := l.Head(); seq != 2 {
		t.Errorf("head seq %d, want 2", seq)
	}
	l.Close()
	if rep := verifyOK(t, path, keyPath); rep.LastSeq != 2 {
		t.Errorf("last seq %d", rep.LastSeq)
	}
	writeLog(t, path, keyPath, 1)
	if rep := verifyOK(t, path, keyPath); rep.LastSeq != 3 {
		t.Errorf("after restart, last seq %d, want 3", rep.LastSeq)
	}
}

// BenchmarkVerify measures what Open and Verify cost per record of an existing log.
func BenchmarkVerify(b *testing.B) {
	path, keyPath := paths(b)
	l := mustOpen(b, path, keyPath)
	var wg sync.WaitGroup
	for w := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				if err := l.Append(authFailure(w*1000 + i)); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	l.Close()
	st, _ := os.Stat(path)
	b.SetBytes(st.Size())
	b.ResetTimer()
	for b.Loop() {
		if _, err := Verify(path, keyPath); err != nil {
			b.Fatal(err)
		}
	}
}

// TestNonCanonicalRecordRefused: even with a good MAC (only the key holder can make one), a
// record is accepted only in the one encoding the log writes.
func TestNonCanonicalRecordRefused(t *testing.T) {
	key := bytes.Repeat([]byte{7}, KeySize)
	good := `{"seq":2,"time":"2025-01-01T00:00:00Z","type":"auth.failure","reason":"x\"y\\z\u001f","username":"u","prev":"p"}`
	if _, err := parseBody([]byte(good)); err != nil {
		t.Fatalf("canonical body refused: %v", err)
	}
	for _, body := range []string{
		`{"seq":2, "time":"2025-01-01T00:00:00Z","type":"auth.failure","prev":"p"}`,
		`{"seq":02,"time":"2025-01-01T00:00:00Z","type":"auth.failure","prev":"p"}`,
		`{"seq":0,"time":"2025-01-01T00:00:00Z","type":"auth.failure","prev":"p"}`,
		`{"time":"2025-01-01T00:00:00Z","seq":2,"type":"auth.failure","prev":"p"}`,
		`{"seq":2,"time":"2025-01-01T00:00:00Z","type":"auth.failure","username":"u","reason":"r","prev":"p"}`,
		`{"seq":2,"time":"2025-01-01T00:00:00Z","type":"auth.failure","reason":"r","reason":"s","prev":"p"}`,
		`{"seq":2,"time":"2025-01-01T00:00:00Z","type":"auth.failure","seq":"3","prev":"p"}`,
		`{"seq":2,"time":"2025-01-01T00:00:00Z","type":"auth.failure","reason":"\u0061","prev":"p"}`,
		`{"seq":2,"time":"2025-01-01T00:00:00Z","type":"auth.failure","reason":"\u001F","prev":"p"}`,
		`{"seq":2,"time":"2025-01-01T00:00:00Z","type":"auth.failure","reason":"\/","prev":"p"}`,
		`{"seq":2,"time":"2025-01-01T00:00:00Z","type":"auth.failure","reason":"` + "\x01" + `","prev":"p"}`,
		`{"seq":2,"time":"2025-01-01T00:00:00Z","type":"auth.failure","reason":"` + "\xff" + `","prev":"p"}`,
		`{"seq":2,"time":"2025-01-01T00:00:00Z","type":"auth.failure","reason":5,"prev":"p"}`,
		`{"seq":2,"time":"2025-01-01T00:00:00Z","type":"auth.failure","prev":"p","reason":"r"}`,
		`{"seq":2,"time":"2025-01-01T00:00:00Z","type":"auth.failure","prev":"p" }`,
	} {
		if _, err := parseBody([]byte(body)); err == nil {
			t.Errorf("accepted %s", body)
		}
		line, _ := seal(nil, key, domRecord, []byte(body))
		c := &checker{key: key, macs: map[uint64]string{}, missing: map[uint64]int{}}
		c.line(1, line[:len(line)-1])
		if len(c.rep.Problems) != 1 || !strings.Contains(c.rep.Problems[0].What, "malformed record with a good mac") {
			t.Errorf("%s: problems %v", body, c.rep.Problems)
		}
	}
}
