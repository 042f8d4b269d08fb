package broker_test

// Interoperability with Debian's mosquitto clients (mosquitto-clients package).

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"vitalmq/internal/broker"
	"vitalmq/internal/packet"
)

// ftMosquitto returns the path of a mosquitto client binary. Outside CI a missing binary
// skips the test; in CI (CI set) it fails it.
func ftMosquitto(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("%s not installed (apt-get install mosquitto-clients); skipped outside CI", name)
		}
		t.Fatalf("%s not installed, required in CI: %v", name, err)
	}
	return p
}

func ftHostPort(t *testing.T, addr string) (string, string) {
	t.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return h, p
}

// ftSyncBuf is a goroutine-safe output buffer for a child process.
type ftSyncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *ftSyncBuf) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *ftSyncBuf) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// ftStartSub starts mosquitto_sub with args; it returns the process and its output. The
// process is killed at the end of the test if still running.
func ftStartSub(t *testing.T, args ...string) (*exec.Cmd, *ftSyncBuf, <-chan error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	cmd := exec.CommandContext(ctx, ftMosquitto(t, "mosquitto_sub"), args...)
	out := &ftSyncBuf{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1) // for the test
	exited := make(chan struct{})
	go func() {
		done <- cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		cancel()
	})
	return cmd, out, done
}

func ftRunPub(t *testing.T, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, ftMosquitto(t, "mosquitto_pub"), args...).CombinedOutput()
	if err != nil {
		t.Fatalf("mosquitto_pub %v: %v\n%s", args, err, out)
	}
}

// TestFtMosquittoPubSub: mosquitto_sub and mosquitto_pub exchange a message through the
// broker at QoS 0, 1 and 2, in 3.1.1 and in 5.0. [MQTT-4.3.1-1] [MQTT-4.3.2-1] [MQTT-4.3.3-1]
func TestFtMosquittoPubSub(t *testing.T) {
	ftMosquitto(t, "mosquitto_sub")
	ftMosquitto(t, "mosquitto_pub")
	s := startServer(t, broker.Config{})
	host, port := ftHostPort(t, s.Addr)
	for _, ver := range []string{"mqttv311", "mqttv5"} {
		for q := 0; q <= 2; q++ {
			t.Run(fmt.Sprintf("%s/qos%d", ver, q), func(t *testing.T) {
				topic := fmt.Sprintf("mq/%s/%d", ver, q)
				// The previous subtest's mosquitto_sub leaves asynchronously: start from none.
				eventually(t, 5*time.Second, "no subscriptions", func() bool { return s.Stats().Subscriptions == 0 })
				_, out, done := ftStartSub(t, "-h", host, "-p", port, "-V", ver, "-q", fmt.Sprint(q), "-t", topic,
					"-C", "1", "-F", "%t|%q|%r|%p", "-i", "mq-sub-"+ver+fmt.Sprint(q))
				eventually(t, 5*time.Second, "mosquitto_sub subscribed", func() bool { return s.Stats().Subscriptions == 1 })
				ftRunPub(t, "-h", host, "-p", port, "-V", ver, "-q", fmt.Sprint(q), "-t", topic, "-m", "hello "+ver,
					"-i", "mq-pub-"+ver+fmt.Sprint(q))
				select {
				case err := <-done:
					if err != nil {
						t.Fatalf("mosquitto_sub: %v\n%s", err, out)
					}
				case <-time.After(5 * time.Second):
					t.Fatalf("mosquitto_sub got nothing; output %q", out)
				}
				want := fmt.Sprintf("%s|%d|0|hello %s", topic, q, ver)
				if got := strings.TrimSpace(out.String()); got != want {
					t.Fatalf("mosquitto_sub printed %q, want %q", got, want)
				}
			})
		}
	}
	checkAlive(t, s.Addr)
}

// TestFtMosquittoRetained: mosquitto_pub -r stores a retained message that a later
// mosquitto_sub receives with the retained flag; an empty -r -n clears it.
// [MQTT-3.3.1-5] [MQTT-3.3.1-6] [MQTT-3.3.1-8 3.1.1]
func TestFtMosquittoRetained(t *testing.T) {
	ftMosquitto(t, "mosquitto_sub")
	ftMosquitto(t, "mosquitto_pub")
	s := startServer(t, broker.Config{})
	host, port := ftHostPort(t, s.Addr)
	for _, ver := range []string{"mqttv311", "mqttv5"} {
		t.Run(ver, func(t *testing.T) {
			topic := "mqr/" + ver
			ftRunPub(t, "-h", host, "-p", port, "-V", ver, "-q", "1", "-r", "-t", topic, "-m", "stored")
			_, out, done := ftStartSub(t, "-h", host, "-p", port, "-V", ver, "-q", "1", "-t", topic, "-C", "1", "-F", "%t|%r|%p")
			select {
			case err := <-done:
				if err != nil {
					t.Fatalf("mosquitto_sub: %v\n%s", err, out)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("mosquitto_sub got nothing; output %q", out)
			}
			if got, want := strings.TrimSpace(out.String()), topic+"|1|stored"; got != want {
				t.Fatalf("mosquitto_sub printed %q, want %q", got, want)
			}
			ftRunPub(t, "-h", host, "-p", port, "-V", ver, "-q", "1", "-r", "-n", "-t", topic) // clear
			// -W 1: wait at most 1 s for a (retained) message; there must be none.
			_, out, done = ftStartSub(t, "-h", host, "-p", port, "-V", ver, "-t", topic, "-C", "1", "-W", "1", "-F", "%t|%r|%p")
			select {
			case <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("mosquitto_sub -W 1 did not exit")
			}
			if got := out.String(); strings.Contains(got, "stored") {
				t.Fatalf("after clearing, mosquitto_sub printed %q", got)
			}
		})
	}
	checkAlive(t, s.Addr)
}

// TestFtMosquittoWill: mosquitto_sub connects with --will-topic and is killed (no
// DISCONNECT): the will reaches a raw subscriber, with its retain flag honoured.
// [MQTT-3.1.2-8] [MQTT-3.1.2-17]
func TestFtMosquittoWill(t *testing.T) {
	ftMosquitto(t, "mosquitto_sub")
	for _, ver := range []string{"mqttv311", "mqttv5"} {
		t.Run(ver, func(t *testing.T) {
			s := startServer(t, broker.Config{})
			host, port := ftHostPort(t, s.Addr)
			v := packet.Version311
			if ver == "mqttv5" {
				v = packet.Version5
			}
			watcher, _ := ftDial(t, s.Addr, v, "mqw-watch-"+ver, nil)
			watcher.ftSub(v, "mqw/"+ver, 1)
			cmd, out, _ := ftStartSub(t, "-h", host, "-p", port, "-V", ver, "-t", "mqw-other/x", "-i", "mqw-"+ver,
				"--will-topic", "mqw/"+ver, "--will-payload", "device lost", "--will-qos", "1", "--will-retain")
			eventually(t, 5*time.Second, "mosquitto_sub connected", func() bool { return s.Stats().Connected == 2 })
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			m := watcher.ftReadPublish(v)
			if m.Topic != "mqw/"+ver || string(m.Payload) != "device lost" || m.QoS != 1 {
				t.Fatalf("will %+v (mosquitto_sub output %q)", m, out)
			}
			watcher.ftAck(v, packet.PUBACK, m.PacketID)
			late, _ := ftDial(t, s.Addr, v, "mqw-late-"+ver, nil)
			late.ftSub(v, "mqw/"+ver, 1)
			if m := late.ftReadPublish(v); !m.Retain || string(m.Payload) != "device lost" {
				t.Fatalf("retained will %+v, want RETAIN=1", m)
			}
			checkAlive(t, s.Addr)
		})
	}
}

// TestFtMosquittoWithPaho: mosquitto_pub (5.0, with a user property) to a paho.golang
// subscriber. [MQTT-3.3.2-17]
func TestFtMosquittoWithPaho(t *testing.T) {
	ftMosquitto(t, "mosquitto_pub")
	s := startServer(t, broker.Config{})
	host, port := ftHostPort(t, s.Addr)
	sub, in, _ := ftPaho5(t, s.Addr, "mqp-sub", nil, nil)
	ftPahoSub(t, sub, nil, ftSubOpt("mqp/#", 2))
	ftRunPub(t, "-h", host, "-p", port, "-V", "mqttv5", "-q", "2", "-t", "mqp/t", "-m", "from mosquitto",
		"-D", "publish", "user-property", "ward", "7", "-D", "publish", "content-type", "text/plain")
	m := in.waitN(t, 1)[0]
	if string(m.Payload) != "from mosquitto" || m.QoS != 2 || m.Properties == nil ||
		m.Properties.User.Get("ward") != "7" || m.Properties.ContentType != "text/plain" {
		t.Fatalf("paho got %v", m)
	}
	checkAlive(t, s.Addr)
}
