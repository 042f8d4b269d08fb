package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

const tcpListener = `
[[listener]]
name = "tcp"
type = "tcp"
address = "127.0.0.1:0"
allow_anonymous = true
`

// serveIn runs serve on dataDir until the returned stop is called.
func serveIn(t *testing.T, dataDir string) (addr string, stop func()) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "c.toml")
	os.WriteFile(path, []byte(tcpListener), 0o600)
	ctx, cancel := context.WithCancel(context.Background())
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"serve", "--config", path, "--data-dir", dataDir}, &stdout, &stderr) }()
	deadline := time.Now().Add(10 * time.Second)
	for addr == "" {
		if time.Now().After(deadline) {
			t.Fatalf("serve not ready:\n%s", stderr.String())
		}
		for _, line := range strings.Split(stdout.String(), "\n") {
			if f := strings.Fields(line); len(f) == 4 && f[0] == "listening" {
				addr = f[3]
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	return addr, func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v\n%s", err, stderr.String())
		}
	}
}

func retainedTopics(t *testing.T, addr string) []string {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("reader").SetAutoReconnect(false))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	got := make(chan string, 16)
	c.Subscribe("ward/#", 1, func(_ mqtt.Client, m mqtt.Message) { got <- m.Topic() }).WaitTimeout(5 * time.Second)
	var topics []string
	// The retained messages are sent right after SUBACK; a marker published after them ends the list.
	c.Publish("ward/zz-marker", 1, false, "end").WaitTimeout(5 * time.Second)
	for {
		select {
		case tp := <-got:
			if tp == "ward/zz-marker" {
				sort.Strings(topics)
				return topics
			}
			topics = append(topics, tp)
		case <-time.After(5 * time.Second):
			t.Fatalf("no marker; got %v", topics)
		}
	}
}

func publishRetained(t *testing.T, addr, topic string) {
	t.Helper()
	c := mqtt.NewClient(mqtt.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("writer").SetAutoReconnect(false))
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(100)
	if tok := c.Publish(topic, 1, true, "v"); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("publish: %v", tok.Error())
	}
}

// A backup taken while the broker runs restores exactly the state at the time of the backup;
// restore refuses to run under a live broker and keeps the previous data directory.
func TestBackupRestoreWhileRunning(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	backupDir := filepath.Join(t.TempDir(), "backup")
	addr, stop := serveIn(t, dataDir)
	publishRetained(t, addr, "ward/a")
	os.WriteFile(filepath.Join(dataDir, "note.txt"), []byte("kept"), 0o600) // files beside state/ are backed up too

	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"backup", "--data-dir", dataDir, "--out", backupDir}, &out, &errb); err != nil {
		t.Fatalf("backup: %v %s", err, errb.String())
	}
	publishRetained(t, addr, "ward/b") // after the backup
	if err := run(context.Background(), []string{"restore", "--data-dir", dataDir, "--from", backupDir}, &out, &errb); err == nil || !strings.Contains(err.Error(), "stop it first") {
		t.Fatalf("restore under a running broker = %v, want refused", err)
	}
	stop()

	if err := run(context.Background(), []string{"restore", "--data-dir", dataDir, "--from", backupDir}, &out, &errb); err != nil {
		t.Fatalf("restore: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(dataDir, "note.txt")); err != nil || string(b) != "kept" {
		t.Fatalf("note.txt after restore = %q, %v", b, err)
	}
	addr, stop = serveIn(t, dataDir)
	defer stop()
	if got := retainedTopics(t, addr); strings.Join(got, ",") != "ward/a" {
		t.Fatalf("retained after restore = %v, want [ward/a]", got)
	}
	olds, _ := filepath.Glob(dataDir + ".before-restore-*")
	if len(olds) != 1 {
		t.Fatalf("previous data directory not kept: %v", olds)
	}
}

// A backup of a stopped broker works too; a bad --from is refused without touching the data.
func TestBackupOfflineAndBadRestore(t *testing.T) {
	dataDir := filepath.Join(t.TempDir(), "data")
	addr, stop := serveIn(t, dataDir)
	publishRetained(t, addr, "ward/x")
	stop()
	backupDir := filepath.Join(t.TempDir(), "b")
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"backup", "--data-dir", dataDir, "--out", backupDir}, &out, &errb); err != nil {
		t.Fatalf("offline backup: %v", err)
	}
	if err := run(context.Background(), []string{"backup", "--data-dir", dataDir, "--out", backupDir}, &out, &errb); err == nil {
		t.Fatal("backup over an existing directory succeeded")
	}
	bogus := t.TempDir()
	os.MkdirAll(filepath.Join(bogus, "state"), 0o700)
	os.WriteFile(filepath.Join(bogus, "state", "CURRENT"), []byte("garbage"), 0o600)
	if err := run(context.Background(), []string{"restore", "--data-dir", dataDir, "--from", bogus}, &out, &errb); err == nil {
		t.Fatal("restore from a bogus backup succeeded")
	}
	addr, stop = serveIn(t, dataDir)
	defer stop()
	if got := retainedTopics(t, addr); strings.Join(got, ",") != "ward/x" {
		t.Fatalf("retained after refused restore = %v, want [ward/x]", got)
	}
}
