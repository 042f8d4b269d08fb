package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"vitalmq/internal/loadgen"
)

// TestBenchAgainstServe drives "vitalmq bench" against "vitalmq serve": pubsub over TCP
// and conns over TLS with session resumption, both with --json.
func TestBenchAgainstServe(t *testing.T) {
	certFile, keyFile, _ := writeCert(t)
	caFile := certFile // self-signed: the certificate is its own CA
	addrs := startServe(t, fmt.Sprintf(`
[[listener]]
name = "tcp"
type = "tcp"
address = "127.0.0.1:0"
allow_anonymous = true
[[listener]]
name = "tls"
type = "tls"
address = "127.0.0.1:0"
allow_anonymous = true
cert_file = %q
key_file = %q
`, certFile, keyFile))
	pid := strconv.Itoa(os.Getpid())

	var out, errb bytes.Buffer
	err := run(t.Context(), []string{"bench", "pubsub", "--addr", addrs["tcp"], "--pubs", "2", "--subs", "2", "--qos", "1",
		"--total-rate", "1000", "--warmup", "100ms", "--duration", "400ms", "--broker-pid", pid, "--json"}, &out, &errb)
	if err != nil {
		t.Fatalf("bench pubsub: %v\n%s", err, errb.String())
	}
	if strings.Count(out.String(), "\n") != 1 {
		t.Fatalf("--json printed more than one line:\n%s", out.String())
	}
	var ps loadgen.PubSubResult
	if err := json.Unmarshal(out.Bytes(), &ps); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if ps.Sent == 0 || ps.Acked != ps.Sent || ps.Received != 2*ps.Sent || ps.Lost != 0 || ps.Broker == nil {
		t.Fatalf("pubsub summary: %s", out.String())
	}

	out.Reset()
	err = run(t.Context(), []string{"bench", "conns", "--addr", addrs["tls"], "--tls", "--cacert", caFile, "--resume",
		"--conns", "20", "--concurrency", "1", "--hold", "0s", "--json"}, &out, &errb)
	if err != nil {
		t.Fatalf("bench conns: %v\n%s", err, errb.String())
	}
	var cr loadgen.ConnsResult
	if err := json.Unmarshal(out.Bytes(), &cr); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	if cr.Connected != 20 || cr.Alive != 20 || cr.Resumed+cr.Full != 20 || cr.Full < 1 || !cr.TLS {
		t.Fatalf("conns summary: %s", out.String())
	}
	t.Logf("TLS: %d full handshakes, %d resumed", cr.Full, cr.Resumed)

	out.Reset()
	if err := run(t.Context(), []string{"bench", "conns", "--addr", addrs["tcp"], "--conns", "5", "--hold", "0s"}, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "connect rate") {
		t.Fatalf("table output:\n%s", out.String())
	}
}

func TestBenchRefusesAndHelps(t *testing.T) {
	ctx := context.Background()
	var out, errb bytes.Buffer
	for _, addr := range []string{"192.168.1.5:1883", "0.0.0.0:1883", "mqtt.example.com:8883"} {
		for _, mode := range []string{"pubsub", "conns"} {
			err := run(ctx, []string{"bench", mode, "--addr", addr}, &out, &errb)
			if err == nil || !strings.Contains(err.Error(), "non-loopback") {
				t.Errorf("bench %s --addr %s = %v; want a non-loopback refusal", mode, addr, err)
			}
		}
	}
	if err := run(ctx, []string{"bench", "pubsub", "--qos", "3"}, &out, &errb); err == nil {
		t.Error("--qos 3 accepted")
	}
	for _, tick := range []string{"-1ms", "1ns"} {
		if err := run(ctx, []string{"bench", "pubsub", "--pace-tick", tick}, &out, &errb); err == nil || !strings.Contains(err.Error(), "pace tick") {
			t.Errorf("--pace-tick %s = %v; want a refusal naming it", tick, err)
		}
	}
	if err := run(ctx, []string{"bench", "conns", "--resume"}, &out, &errb); err == nil || !strings.Contains(err.Error(), "--tls") {
		t.Errorf("--resume without --tls = %v", err)
	}
	if err := run(ctx, []string{"bench"}, &out, &errb); err != errUsage {
		t.Errorf("bench without a mode = %v, want usage", err)
	}
	if err := run(ctx, []string{"bench", "flood"}, &out, &errb); err != errUsage || !strings.Contains(errb.String(), `unknown mode "flood"`) {
		t.Errorf("bench flood = %v", err)
	}
	errb.Reset()
	if err := run(ctx, []string{"bench", "pubsub", "--help"}, &out, &errb); err != nil || !strings.Contains(errb.String(), "-topic-mode") {
		t.Errorf("bench pubsub --help = %v\n%s", err, errb.String())
	}
	out.Reset()
	if err := run(ctx, []string{"help"}, &out, &errb); err != nil || !strings.Contains(out.String(), "vitalmq bench") {
		t.Errorf("usage does not mention bench:\n%s", out.String())
	}
}
