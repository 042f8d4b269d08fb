package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"

	"vitalmq/internal/auth"
	"vitalmq/internal/broker"
	"vitalmq/internal/limiter"
)

// secServer runs serve with the default security on a loopback TLS listener.
type secServer struct {
	addr, dir, adminPW, cfg string
	pool                    *x509.CertPool
}

const secListener = `
[[listener]]
name = "mqtts"
type = "tls"
address = "127.0.0.1:0"
`

func startSecure(t *testing.T) *secServer { return startSecureWith(t, secListener) }

func startSecureWith(t *testing.T, toml string) *secServer {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "data")
	path := filepath.Join(t.TempDir(), "c.toml")
	os.WriteFile(path, []byte(toml), 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve", "--config", path, "--data-dir", dir}, &stdout, &stderr) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v\n%s", err, stderr.String())
		}
	})
	s := &secServer{dir: dir, cfg: path}
	deadline := time.Now().Add(15 * time.Second)
	for s.addr == "" {
		if time.Now().After(deadline) {
			t.Fatalf("serve not ready:\n%s\n%s", stdout.String(), stderr.String())
		}
		for _, line := range strings.Split(stdout.String(), "\n") {
			if f := strings.Fields(line); len(f) == 4 && f[0] == "listening" {
				s.addr = f[3]
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	m := regexp.MustCompile(`admin password \(shown once[^)]*\): (\S+)`).FindStringSubmatch(stdout.String())
	if m == nil {
		t.Fatalf("no admin password in the first-start output:\n%s", stdout.String())
	}
	s.adminPW = m[1]
	ca, err := os.ReadFile(filepath.Join(dir, "pki", "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	s.pool = x509.NewCertPool()
	s.pool.AppendCertsFromPEM(ca)
	return s
}

func (s *secServer) cli(t *testing.T, input string, args ...string) (string, error) {
	t.Helper()
	old := stdin
	stdin = strings.NewReader(input)
	defer func() { stdin = old }()
	var out, errb bytes.Buffer
	err := run(context.Background(), append(args, "--data-dir", s.dir), &out, &errb)
	return out.String() + errb.String(), err
}

func (s *secServer) enroll(t *testing.T, id string) (certFile, keyFile string) {
	t.Helper()
	out := t.TempDir()
	args := []string{"device", "enroll", "--out", out, "--data-dir", s.dir, id}
	var o, e bytes.Buffer
	if err := run(context.Background(), args, &o, &e); err != nil {
		t.Fatalf("enroll %s: %v %s", id, err, e.String())
	}
	return filepath.Join(out, id+".crt"), filepath.Join(out, id+".key")
}

func (s *secServer) client(t *testing.T, id string, opts func(*mqtt.ClientOptions)) (mqtt.Client, error) {
	t.Helper()
	o := mqtt.NewClientOptions().AddBroker("ssl://" + s.addr).SetClientID(id).SetAutoReconnect(false).
		SetConnectRetry(false).SetConnectTimeout(5 * time.Second).SetProtocolVersion(4).SetTLSConfig(&tls.Config{RootCAs: s.pool})
	if opts != nil {
		opts(o)
	}
	c := mqtt.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(10 * time.Second) {
		return nil, fmt.Errorf("connect timed out")
	}
	if tok.Error() != nil {
		return nil, tok.Error()
	}
	t.Cleanup(func() { c.Disconnect(50) })
	return c, nil
}

func withCert(t *testing.T, s *secServer, certFile, keyFile string) func(*mqtt.ClientOptions) {
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return func(o *mqtt.ClientOptions) {
		o.SetTLSConfig(&tls.Config{RootCAs: s.pool, Certificates: []tls.Certificate{cert}})
	}
}

func withPassword(user, pw string) func(*mqtt.ClientOptions) {
	return func(o *mqtt.ClientOptions) { o.SetUsername(user).SetPassword(pw) }
}

// The secure defaults end to end: an enrolled device publishes with its certificate
// (paho and mosquitto_pub), a clinician with a password reads it, every refusal holds, a
// revoked device is cut off within a second, and the audit trail verifies.
func TestSecureDefaults(t *testing.T) {
	s := startSecure(t)
	devCert, devKey := s.enroll(t, "mon-1")
	if out, err := s.cli(t, "correct horse battery\n", "user", "add", "nurse", "--role", "clinician"); err != nil {
		t.Fatalf("user add: %v %s", err, out)
	}

	got := make(chan string, 64)
	clin, err := s.client(t, "nurse:tab", withPassword("nurse", "correct horse battery"))
	if err != nil {
		t.Fatalf("clinician connect: %v", err)
	}
	if tok := clin.Subscribe("dev/#", 1, func(_ mqtt.Client, m mqtt.Message) { got <- m.Topic() + "=" + string(m.Payload()) }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	expect := func(want string) {
		t.Helper()
		select {
		case m := <-got:
			if m != want {
				t.Fatalf("clinician got %q, want %q", m, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("clinician did not get %q", want)
		}
	}
	expectNothing := func() {
		t.Helper()
		select {
		case m := <-got:
			t.Fatalf("clinician got %q, want nothing", m)
		case <-time.After(300 * time.Millisecond):
		}
	}

	dev, err := s.client(t, "mon-1", withCert(t, s, devCert, devKey))
	if err != nil {
		t.Fatalf("device connect with its certificate: %v", err)
	}
	dev.Publish("dev/mon-1/hr", 1, false, "72").WaitTimeout(5 * time.Second)
	expect("dev/mon-1/hr=72")
	dev.Publish("dev/mon-2/hr", 1, false, "forged").WaitTimeout(5 * time.Second) // another device's topic
	expectNothing()

	// mosquitto_pub with --cert/--key, as a device maker would test it.
	if _, err := exec.LookPath("mosquitto_pub"); err == nil {
		dev2Cert, dev2Key := s.enroll(t, "mon-2")
		host, port, _ := strings.Cut(s.addr, ":")
		cmd := exec.Command("mosquitto_pub", "-h", host, "-p", port, "--cafile", filepath.Join(s.dir, "pki", "ca.crt"),
			"--cert", dev2Cert, "--key", dev2Key, "-i", "mon-2", "-t", "dev/mon-2/spo2", "-m", "97", "-q", "1")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_pub with a device certificate: %v %s", err, out)
		}
		expect("dev/mon-2/spo2=97")
	} else if os.Getenv("CI") != "" {
		t.Fatal("mosquitto_pub missing in CI")
	}

	// Refusals: wrong client id for the certificate, wrong password, no credentials,
	// a user taking a device's client id, and a certificate from another CA.
	if _, err := s.client(t, "mon-9", withCert(t, s, devCert, devKey)); err == nil {
		t.Error("device connected with another device's client id")
	}
	if _, err := s.client(t, "nurse:x", withPassword("nurse", "wrong password!!")); err == nil {
		t.Error("wrong password accepted")
	}
	if _, err := s.client(t, "anon", nil); err == nil {
		t.Error("anonymous client accepted on a TLS listener")
	}
	if _, err := s.client(t, "mon-1", withPassword("nurse", "correct horse battery")); err == nil {
		t.Error("a user took a device's client id")
	}
	otherCert, otherKey, _ := writeCert(t)
	if _, err := s.client(t, "mon-1", withCert(t, s, otherCert, otherKey)); err == nil {
		t.Error("a certificate from another CA was accepted")
	}
	// The clinician may not publish commands or read $SYS.
	if tok := clin.Subscribe("$SYS/#", 0, nil); tok.WaitTimeout(5*time.Second) && tok.Error() == nil {
		if st := tok.(*mqtt.SubscribeToken).Result()["$SYS/#"]; st != 0x80 {
			t.Errorf("clinician $SYS/# subscription granted %#x, want 0x80", st)
		}
	}

	// Revocation: the live device session is cut within a second; it cannot come back.
	lost := make(chan struct{})
	revoked, err := s.client(t, "mon-1", func(o *mqtt.ClientOptions) {
		withCert(t, s, devCert, devKey)(o)
		o.SetConnectionLostHandler(func(mqtt.Client, error) { close(lost) })
	})
	if err != nil {
		t.Fatalf("device reconnect before revocation: %v", err)
	}
	_ = revoked
	start := time.Now()
	if out, err := s.cli(t, "", "device", "revoke", "mon-1", "--reason", "keyCompromise: lost"); err != nil {
		t.Fatalf("revoke: %v %s", err, out)
	}
	select {
	case <-lost:
		t.Logf("revoked device disconnected after %v", time.Since(start))
	case <-time.After(3 * time.Second): // the watcher polls every 500 ms; generous for a loaded CI machine
		t.Fatal("revoked device still connected")
	}
	if _, err := s.client(t, "mon-1", withCert(t, s, devCert, devKey)); err == nil {
		t.Fatal("revoked device reconnected")
	}

	// The audit trail verifies and recorded the story; tampering is detected.
	out, err := s.cli(t, "", "audit", "verify")
	if err != nil {
		t.Fatalf("audit verify: %v\n%s", err, out)
	}
	log, _ := os.ReadFile(filepath.Join(s.dir, "audit", "audit.log"))
	for _, want := range []string{`"type":"device.enrol"`, `"type":"user.change"`, `"type":"auth.failure"`, `"type":"device.revoke"`, `"type":"client.kick"`, `"type":"client.connect"`} {
		if !bytes.Contains(log, []byte(want)) {
			t.Errorf("audit log lacks %s", want)
		}
	}
	if bytes.Contains(log, []byte("correct horse")) || bytes.Contains(log, []byte(s.adminPW)) {
		t.Fatal("a password is in the audit log")
	}
}

// Tampering with the audit trail is detected by "vitalmq audit verify".
func TestAuditVerifyDetectsTampering(t *testing.T) {
	s := startSecure(t)
	s.enroll(t, "mon-1")
	s.enroll(t, "mon-2")
	logPath := filepath.Join(s.dir, "audit", "audit.log")
	b, _ := os.ReadFile(logPath)
	if !bytes.Contains(b, []byte("mon-2")) {
		t.Fatalf("audit log lacks the enrolment:\n%s", b)
	}
	os.WriteFile(logPath, bytes.Replace(b, []byte("mon-2"), []byte("mon-3"), 1), 0o600)
	out, err := s.cli(t, "", "audit", "verify")
	if err == nil || !strings.Contains(out, "line") {
		t.Fatalf("audit verify after an edit = %v\n%s; want a failure naming the line", err, out)
	}
}

// CASES T31: failed logins are throttled per user name: after 10 failures even the right
// password is refused during the lock-out, and the throttling is audited.
func TestLoginThrottle(t *testing.T) {
	s := startSecure(t)
	if out, err := s.cli(t, "correct horse battery\n", "user", "add", "nurse", "--role", "clinician"); err != nil {
		t.Fatalf("user add: %v %s", err, out)
	}
	for i := range 10 {
		_, err := s.client(t, fmt.Sprintf("nurse:%d", i), withPassword("nurse", "wrong password number"))
		if err == nil || !strings.Contains(err.Error(), "bad user name or password") {
			t.Fatalf("attempt %d: %v, want bad user name or password", i, err)
		}
	}
	_, err := s.client(t, "nurse:ok", withPassword("nurse", "correct horse battery"))
	if err == nil || !strings.Contains(err.Error(), "not Authorized") {
		t.Fatalf("right password during the lock-out: %v, want refused", err)
	}
	log, _ := os.ReadFile(filepath.Join(s.dir, "audit", "audit.log"))
	if !bytes.Contains(log, []byte(`"type":"auth.throttled"`)) || bytes.Count(log, []byte(`"type":"auth.failure"`)) < 10 {
		t.Fatalf("audit log lacks the failures or the throttling:\n%s", log)
	}
}

// The [acl] section reloads live; a configuration that fails to load keeps the policy in
// force (CASES T91).
func TestACLReload(t *testing.T) {
	s := startSecureWith(t, secListener+"[acl]\ndeny_subscribe = [\"dev/blocked\"]\n")
	if out, err := s.cli(t, "correct horse battery\n", "user", "add", "nurse", "--role", "clinician"); err != nil {
		t.Fatalf("user add: %v %s", err, out)
	}
	c, err := s.client(t, "nurse:1", withPassword("nurse", "correct horse battery"))
	if err != nil {
		t.Fatal(err)
	}
	granted := func() byte {
		t.Helper()
		tok := c.Subscribe("dev/blocked", 0, nil)
		if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
			t.Fatalf("subscribe: %v", tok.Error())
		}
		return tok.(*mqtt.SubscribeToken).Result()["dev/blocked"]
	}
	if g := granted(); g != 0x80 {
		t.Fatalf("denied filter granted %#x", g)
	}
	touch := func(content string) {
		os.WriteFile(s.cfg, []byte(content), 0o600)
		later := time.Now().Add(2 * time.Second) // a distinct modification time even on coarse clocks
		os.Chtimes(s.cfg, later, later)
	}
	touch(secListener)
	deadline := time.Now().Add(5 * time.Second)
	for granted() != 0 {
		if time.Now().After(deadline) {
			t.Fatal("policy change not applied")
		}
		time.Sleep(100 * time.Millisecond)
	}
	touch("this is not toml [[[")
	time.Sleep(1500 * time.Millisecond) // three watcher rounds: nothing may change
	if g := granted(); g != 0 {
		t.Fatalf("after a failed reload the filter is %#x, want the last good policy (granted)", g)
	}
	log, _ := os.ReadFile(filepath.Join(s.dir, "audit", "audit.log"))
	if !bytes.Contains(log, []byte(`"reason":"reload_failed"`)) {
		t.Fatal("failed reload not audited")
	}
}

// Removing a user cuts its live connections and ends its sessions.
func TestUserRemoveKicks(t *testing.T) {
	s := startSecure(t)
	if out, err := s.cli(t, "correct horse battery\n", "user", "add", "nurse", "--role", "clinician"); err != nil {
		t.Fatalf("user add: %v %s", err, out)
	}
	lost := make(chan struct{})
	_, err := s.client(t, "nurse:1", func(o *mqtt.ClientOptions) {
		withPassword("nurse", "correct horse battery")(o)
		o.SetConnectionLostHandler(func(mqtt.Client, error) { close(lost) })
	})
	if err != nil {
		t.Fatal(err)
	}
	if out, err := s.cli(t, "", "user", "remove", "nurse"); err != nil {
		t.Fatalf("user remove: %v %s", err, out)
	}
	select {
	case <-lost:
	case <-time.After(3 * time.Second):
		log, _ := os.ReadFile(filepath.Join(s.dir, "audit", "audit.log"))
		t.Fatalf("removed user still connected\n%s", log)
	}
	if _, err := s.client(t, "nurse:2", withPassword("nurse", "correct horse battery")); err == nil {
		t.Fatal("removed user connected again")
	}
}

// The sessions are checked against the users in every round for a CONNECT's deadline after
// the users change (and after start), and not at all while they stay the same.
func TestUserSweepDue(t *testing.T) {
	t0 := time.Unix(1000, 0)
	w := userSweep{window: 11 * time.Second}
	steps := []struct {
		gen  uint64
		at   time.Duration
		want bool
	}{
		{1, 0, true},                       // the first round (sessions restored from disk)
		{1, 11 * time.Second, true},        // still within the window
		{1, 11*time.Second + 1, false},     // the users stayed the same
		{1, time.Hour, false},              //
		{2, time.Hour + time.Second, true}, // a user added or removed
		{2, time.Hour + 12*time.Second, true},
		{2, time.Hour + 13*time.Second, false},
		{3, 2 * time.Hour, true},
	}
	for i, st := range steps {
		if got := w.due(st.gen, t0.Add(st.at)); got != st.want {
			t.Fatalf("step %d (generation %d at %v): due = %v, want %v", i, st.gen, st.at, got, st.want)
		}
	}
}

// A session of a removed user has no rights left, whether or not watch has disconnected it
// yet (it may bind after watch's last scan); device certificates are not users.
func TestRemovedUserHasNoRights(t *testing.T) {
	users, err := auth.Open(filepath.Join(t.TempDir(), "users.json"), auth.WithParams(auth.Params{Memory: 8, Time: 1, Threads: 1, SaltLen: 16, KeyLen: 32}))
	if err != nil {
		t.Fatal(err)
	}
	if err := users.Add("svc", auth.RoleService, "a long enough password"); err != nil {
		t.Fatal(err)
	}
	s := &security{users: users, policy: auth.NewPolicies(auth.DefaultPolicy()), denyLog: limiter.New(1, 20, 100),
		log: slog.New(slog.DiscardHandler)}
	s.deny.Store(&[]string{})
	svc := &broker.Client{ClientID: "svc:1", Username: "svc", Attrs: map[string]string{"role": auth.RoleService}}
	dev := &broker.Client{ClientID: "pump-7", Attrs: map[string]string{"role": auth.RoleDevice, "device": "pump-7"}}
	rights := func(c *broker.Client, pub, sub string) [3]bool {
		return [3]bool{s.CanPublish(c, pub), s.CanSubscribe(c, sub), s.CanReceive(c, sub)}
	}
	if got := rights(svc, "cmd/pump-7", "dev/pump-7/hr"); got != [3]bool{true, true, true} {
		t.Fatalf("existing service user: publish, subscribe, receive = %v, want all granted", got)
	}
	if err := users.Remove("svc"); err != nil {
		t.Fatal(err)
	}
	if got := rights(svc, "cmd/pump-7", "dev/pump-7/hr"); got != [3]bool{} {
		t.Fatalf("removed user: publish, subscribe, receive = %v, want all denied", got)
	}
	if got := rights(dev, "dev/pump-7/hr", "cmd/pump-7"); got != [3]bool{true, true, true} {
		t.Fatalf("device certificate: publish, subscribe, receive = %v, want all granted", got)
	}
}
