package loadgen

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// ProcSample is what /proc says about a process at one moment.
type ProcSample struct {
	CPU     time.Duration // user + system time of all its threads, live and exited
	RSS     int64         // VmRSS, bytes
	RSSAnon int64         // RssAnon: VmRSS less the pages of mapped files (the executable's), bytes
	HWM     int64         // VmHWM: peak resident set since the process started, bytes
}

// clockTicks is USER_HZ, the unit of utime/stime in /proc/<pid>/stat; 100 on every Linux
// architecture Go supports (sysconf(_SC_CLK_TCK) would need cgo).
const clockTicks = 100

// ReadProc reads /proc/<pid>/stat and /proc/<pid>/status.
func ReadProc(pid int) (ProcSample, error) {
	return readProcDir("/proc/" + strconv.Itoa(pid))
}

func readProcDir(dir string) (ProcSample, error) {
	var s ProcSample
	stat, err := os.ReadFile(dir + "/stat")
	if err != nil {
		return s, err
	}
	if s.CPU, err = parseStatCPU(stat); err != nil {
		return s, fmt.Errorf("%s/stat: %w", dir, err)
	}
	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		return s, err
	}
	s.RSS = statusKB(status, "VmRSS:") * 1024
	s.RSSAnon = statusKB(status, "RssAnon:") * 1024
	s.HWM = statusKB(status, "VmHWM:") * 1024
	return s, nil
}

// parseStatCPU returns utime + stime from a /proc/<pid>/stat line. The command name (field 2)
// is in parentheses and may itself contain spaces and parentheses, so fields are counted
// from the last ')'.
func parseStatCPU(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("no command name")
	}
	f := bytes.Fields(b[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, errors.New("too few fields")
	}
	u, err1 := strconv.ParseUint(string(f[11]), 10, 64)
	s, err2 := strconv.ParseUint(string(f[12]), 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(u+s) * (time.Second / clockTicks), nil
}

// statusKB returns the value in kB of a "Key:   123 kB" line of /proc/<pid>/status, or 0.
func statusKB(b []byte, key string) int64 {
	f := strings.Fields(statusField(b, key))
	if len(f) == 0 {
		return 0
	}
	n, _ := strconv.ParseInt(f[0], 10, 64)
	return n
}

// statusField returns the text after key on its line of /proc/<pid>/status, or "".
func statusField(b []byte, key string) string {
	i := bytes.Index(b, []byte(key))
	if i < 0 {
		return ""
	}
	line, _, _ := bytes.Cut(b[i+len(key):], []byte{'\n'})
	return string(line)
}

// stealTime is the time a hypervisor gave the CPUs a process may run on to other guests: what
// /proc/stat calls steal, summed over the CPUs of the process's Cpus_allowed_list. On a
// shared VM, a tail latency measured while the broker's CPU was stolen from measures the
// host (docs/PERFORMANCE.md, session 19); 0 where the kernel reports none (no hypervisor).
type stealTime struct {
	Time time.Duration // summed over the CPUs
	CPUs int           // how many of them /proc/stat lists (offline ones it does not)
}

// readSteal reads pid's allowed CPUs and their steal time so far.
func readSteal(pid int) (stealTime, error) {
	dir := "/proc/" + strconv.Itoa(pid)
	status, err := os.ReadFile(dir + "/status")
	if err != nil {
		return stealTime{}, err
	}
	cpus, err := parseCPUList(statusField(status, "Cpus_allowed_list:"))
	if err != nil {
		return stealTime{}, fmt.Errorf("%s/status: Cpus_allowed_list: %w", dir, err)
	}
	stat, err := os.ReadFile("/proc/stat")
	if err != nil {
		return stealTime{}, err
	}
	t, n, err := parseSteal(stat, cpus)
	if err == nil && n == 0 {
		err = fmt.Errorf("no line for the CPUs that %s/status allows", dir)
	}
	if err != nil {
		return stealTime{}, fmt.Errorf("/proc/stat: %w", err)
	}
	return stealTime{Time: t, CPUs: n}, nil
}

// stealMark is a process's CPUs' steal time at a moment.
type stealMark struct {
	at time.Time
	stealTime
}

func markSteal(pid int) (stealMark, error) {
	st, err := readSteal(pid)
	return stealMark{time.Now(), st}, err
}

// stealSince measures the steal on a process's CPUs from startSteal to end.
type stealSince struct {
	pid   int
	start stealMark
	err   error
}

func startSteal(pid int) stealSince {
	m, err := markSteal(pid)
	return stealSince{pid, m, err}
}

// end is the share (%) of the CPUs' time stolen since startSteal; nil where /proc could
// not tell.
func (s stealSince) end() *float64 {
	if s.err != nil {
		return nil
	}
	m, err := markSteal(s.pid)
	if err != nil {
		return nil
	}
	return stealPct(s.start, m)
}

// stealPct is the share (%) of the CPUs' time between a and b that was stolen; nil when that
// is unknown: the CPUs changed between the marks (affinity, hotplug), or no time passed.
func stealPct(a, b stealMark) *float64 {
	wall := b.at.Sub(a.at)
	if wall <= 0 || b.CPUs == 0 || a.CPUs != b.CPUs || b.Time < a.Time {
		return nil
	}
	pct := 100 * (b.Time - a.Time).Seconds() / (wall.Seconds() * float64(b.CPUs))
	return &pct
}

// parseCPUList parses a CPU list such as "0-3,8,10-11" into the set of CPUs.
func parseCPUList(s string) (map[int]bool, error) {
	set := map[int]bool{}
	for part := range strings.SplitSeq(strings.TrimSpace(s), ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		b := a
		if isRange && err == nil {
			b, err = strconv.Atoi(hi)
		}
		if err != nil || a < 0 || b < a || b-a > 1<<16 {
			return nil, fmt.Errorf("bad CPU list %q", s)
		}
		for c := a; c <= b; c++ {
			set[c] = true
		}
	}
	return set, nil
}

// parseSteal sums the steal field (the eighth value) of /proc/stat's "cpuN" lines for the
// CPUs in set, and counts those lines. A kernel line with fewer than eight values has no
// steal: it counts 0.
func parseSteal(stat []byte, set map[int]bool) (steal time.Duration, lines int, err error) {
	var ticks uint64
	for line := range bytes.SplitSeq(stat, []byte{'\n'}) {
		f := bytes.Fields(line)
		if len(f) == 0 || !bytes.HasPrefix(f[0], []byte("cpu")) || len(f[0]) == 3 {
			continue
		}
		n, err := strconv.Atoi(string(f[0][3:]))
		if err != nil || !set[n] {
			continue
		}
		lines++
		if len(f) < 9 {
			continue
		}
		v, err := strconv.ParseUint(string(f[8]), 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("cpu%d steal: %w", n, err)
		}
		ticks += v
	}
	return time.Duration(ticks) * (time.Second / clockTicks), lines, nil
}
