package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"runtime/pprof"
	"time"

	"vitalmq/internal/loadgen"
)

const benchUsage = `Usage: vitalmq bench pubsub|conns [flags]

Load generator for an MQTT broker on this machine (loopback targets only).

  pubsub   N publishers × M subscribers: delivered msg/s, publish→deliver latency,
           losses, and the broker's CPU per message and peak memory (--broker-pid)
  conns    K idle connections from 127.0.0.2…: connect rate, TLS resumption, and
           the broker's memory and CPU per connection (--broker-pid)

Run "vitalmq bench pubsub --help" or "vitalmq bench conns --help" for the flags.
`

// bench runs the load generator.
func bench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, benchUsage)
		return errUsage
	}
	switch args[0] {
	case "pubsub":
		return benchPubSub(ctx, args[1:], stdout, stderr)
	case "conns":
		return benchConns(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, benchUsage)
		return nil
	default:
		fmt.Fprintf(stderr, "vitalmq bench: unknown mode %q\n\n%s", args[0], benchUsage)
		return errUsage
	}
}

// commonFlags are the flags of both modes: the target, TLS and output.
type commonFlags struct {
	addr, username, password string
	mqtt, keepAlive          int
	connectTimeout           time.Duration
	useTLS                   bool
	tls                      loadgen.TLSOptions
	brokerPID                int
	json                     bool
	cpuProfile               string
	mintCert, mintKey        string
}

func (c *commonFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.addr, "addr", "127.0.0.1:1883", "broker `host:port`; loopback only (127.0.0.0/8, ::1, localhost)")
	fs.IntVar(&c.mqtt, "mqtt", 4, "MQTT protocol level: 4 (3.1.1) or 5")
	fs.StringVar(&c.username, "username", "", "user name sent in CONNECT")
	fs.StringVar(&c.password, "password", "", "password sent in CONNECT")
	fs.IntVar(&c.keepAlive, "keepalive", 60, "keep alive in `seconds`")
	fs.DurationVar(&c.connectTimeout, "connect-timeout", 10*time.Second, "limit for dial, TLS handshake and CONNACK")
	fs.BoolVar(&c.useTLS, "tls", false, "connect with TLS")
	fs.StringVar(&c.tls.CAFile, "cacert", "", "PEM `file` of the CA that signed the broker's certificate (default: system roots)")
	fs.StringVar(&c.tls.CertFile, "cert", "", "client certificate PEM `file`, for mTLS (with --key)")
	fs.StringVar(&c.tls.KeyFile, "key", "", "client private key PEM `file`, for mTLS")
	fs.StringVar(&c.tls.ServerName, "server-name", "", "name to verify in the broker's certificate (default: the --addr host)")
	fs.BoolVar(&c.tls.Insecure, "insecure", false, "do not verify the broker's certificate")
	fs.BoolVar(&c.tls.Resume, "resume", false, "TLS session resumption: cache session tickets and reuse them")
	fs.BoolVar(&c.tls.Classic, "classic-kex", false, "offer only classic TLS key exchange (X25519, P-256), as most device TLS stacks do;\ndefault: Go's, the post-quantum hybrid X25519MLKEM768 first")
	fs.StringVar(&c.mintCert, "client-ca-cert", "", "mTLS at scale: give every connection its own client certificate (its client id as\nvitalmq device identity), signed by this CA certificate `file` (with --client-ca-key)")
	fs.StringVar(&c.mintKey, "client-ca-key", "", "the private key `file` of --client-ca-cert")
	fs.IntVar(&c.brokerPID, "broker-pid", 0, "`pid` of the broker: report its CPU time and memory, and the host's steal on its\nCPUs, from /proc")
	fs.BoolVar(&c.json, "json", false, "print a one-line JSON summary instead of the table")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write the load tool's own CPU profile to `file` (is the tool the bottleneck?)")
}

// profile starts the tool's CPU profile when asked; the returned func stops it.
func (c *commonFlags) profile() (func(), error) {
	if c.cpuProfile == "" {
		return func() {}, nil
	}
	f, err := os.Create(c.cpuProfile)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

func (c *commonFlags) target() (loadgen.Target, error) {
	addr, err := loadgen.CheckLoopback(c.addr)
	if err != nil {
		return loadgen.Target{}, fmt.Errorf("--addr: %w", err)
	}
	if c.mqtt != 4 && c.mqtt != 5 {
		return loadgen.Target{}, fmt.Errorf("--mqtt %d: want 4 (3.1.1) or 5", c.mqtt)
	}
	if c.keepAlive < 1 || c.keepAlive > 65535 {
		return loadgen.Target{}, fmt.Errorf("--keepalive %d: want 1..65535", c.keepAlive)
	}
	t := loadgen.Target{Addr: addr, Version: byte(c.mqtt), Username: c.username, Password: c.password,
		KeepAlive: uint16(c.keepAlive), DialTimeout: c.connectTimeout}
	tlsWanted := c.tls != (loadgen.TLSOptions{})
	if tlsWanted && !c.useTLS {
		return t, errors.New("--cacert, --cert, --key, --server-name, --insecure and --resume need --tls")
	}
	if c.useTLS {
		host, _, _ := net.SplitHostPort(addr)
		if t.TLS, err = c.tls.Config(host); err != nil {
			return t, err
		}
	}
	switch {
	case (c.mintCert == "") != (c.mintKey == ""):
		return t, errors.New("--client-ca-cert and --client-ca-key go together")
	case c.mintCert != "" && (!c.useTLS || c.tls.CertFile != ""):
		return t, errors.New("--client-ca-cert needs --tls and no --cert")
	case c.mintCert != "":
		if t.Mint, err = loadgen.NewCertMinter(c.mintCert, c.mintKey); err != nil {
			return t, err
		}
	}
	return t, nil
}

// parseBench parses args; done is true when --help was asked for (nothing more to do).
func parseBench(fs *flag.FlagSet, args []string) (done bool, err error) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return true, nil
		}
		return false, errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected argument %q\n", fs.Arg(0))
		return false, errUsage
	}
	return false, nil
}

type table interface{ WriteTable(io.Writer) error }

func report(stdout io.Writer, asJSON bool, r table) error {
	if !asJSON {
		return r.WriteTable(stdout)
	}
	b, err := json.Marshal(r)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "%s\n", b)
	return err
}

func benchPubSub(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench pubsub", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c commonFlags
	c.register(fs)
	var cfg loadgen.PubSubConfig
	qos := fs.Int("qos", 0, "QoS of publications and subscriptions: 0, 1 or 2")
	fs.IntVar(&cfg.Publishers, "pubs", 1, "publishers (connections)")
	fs.IntVar(&cfg.Subscribers, "subs", 1, "subscribers (connections); each receives every message")
	fs.IntVar(&cfg.PayloadSize, "size", 64, "payload `bytes` (≥ 16: send time and sequence)")
	fs.StringVar(&cfg.TopicMode, "topic-mode", loadgen.TopicPerPublisher,
		"per-publisher: publisher i on <prefix>/i, subscribers on <prefix>/# (fan-in);\nshared-topic: all on <prefix>/all (fan-out)")
	fs.StringVar(&cfg.TopicPrefix, "topic-prefix", "bench", "first topic level")
	fs.Float64Var(&cfg.Rate, "rate", 0, "messages/s per publisher; 0: as fast as possible")
	fs.Float64Var(&cfg.TotalRate, "total-rate", 0, "messages/s over all publishers (overrides --rate)")
	fs.IntVar(&cfg.Inflight, "inflight", 16, "QoS 1/2: unacknowledged messages per publisher (QoS 2 over MQTT 3.1.1: keep it within the broker's receive_maximum, 32 by default)")
	fs.IntVar(&cfg.Batch, "batch", 32, "most messages per write")
	fs.DurationVar(&cfg.PaceTick, "pace-tick", 200*time.Microsecond, "paced runs, on Linux: wake the tool this often (at least 10µs), so that publishers send\non time (an idle Go process sleeps in whole milliseconds, and its publishers then send\nin bursts); 0: off")
	fs.DurationVar(&cfg.Duration, "duration", 10*time.Second, "measured time")
	fs.DurationVar(&cfg.Warmup, "warmup", time.Second, "publishing before the measured time (counted for losses only)")
	fs.DurationVar(&cfg.Drain, "drain", 5*time.Second, "longest wait for acknowledgements and deliveries after publishing stops")
	fs.BoolVar(&cfg.PersistentSubs, "persistent-subs", false, "subscribers keep persistent sessions (3.1.1 clean session 0, 5.0 session expiry 300 s):\nwhat durable storage has to store")
	fs.StringVar(&cfg.SubAddr, "sub-addr", "", "subscribers connect to this `host:port` instead of --addr (same TLS settings, no\n--client-ca certificate): e.g. devices on an mTLS listener, dashboards on another")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: vitalmq bench pubsub [flags]\n\n"+
			"Publishes from --pubs connections to --subs subscribers for --warmup + --duration and\n"+
			"reports delivered msg/s, publish→deliver latency (p50/p99/p999), messages sent, acked,\n"+
			"received and lost (sequence gaps), and with --broker-pid the broker's CPU µs per\n"+
			"delivered message and peak RSS (also less mapped files: without the executable's pages),\n"+
			"and the share of its CPUs' time a hypervisor gave to other guests (steal; the tool's own\n"+
			"CPUs' steal is reported too): on a shared VM, compare latency tails only between runs\n"+
			"with little of either.\n"+
			"At QoS 1/2 every publisher first makes one PINGREQ round trip, before the clock starts.\n"+
			"Example, fan-in of 100 devices at QoS 1:\n\n"+
			"  vitalmq bench pubsub --pubs 100 --subs 1 --qos 1 --duration 10s --broker-pid $(pgrep -n vitalmq)\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if done, err := parseBench(fs, args); done || err != nil {
		return err
	}
	if *qos < 0 || *qos > 2 {
		return fmt.Errorf("--qos %d: want 0, 1 or 2", *qos)
	}
	cfg.QoS = byte(*qos)
	return execute(&c, stdout, func(t loadgen.Target, pid int) { cfg.Target, cfg.BrokerPID = t, pid },
		func() (*loadgen.PubSubResult, error) { return loadgen.RunPubSub(ctx, cfg) })
}

// execute applies the common flags (target, broker PID) through set, runs the load under
// the optional profile, and reports what it measured, also when it ended with an error.
func execute[R interface {
	*loadgen.PubSubResult | *loadgen.ConnsResult
	table
}](c *commonFlags, stdout io.Writer, set func(loadgen.Target, int), run func() (R, error)) error {
	target, err := c.target()
	if err != nil {
		return err
	}
	set(target, c.brokerPID)
	stopProfile, err := c.profile()
	if err != nil {
		return err
	}
	res, err := run()
	stopProfile()
	if res != nil {
		if rerr := report(stdout, c.json, res); err == nil {
			err = rerr
		}
	}
	return err
}

func benchConns(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench conns", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c commonFlags
	c.register(fs)
	var cfg loadgen.ConnsConfig
	fs.IntVar(&cfg.Conns, "conns", 1000, "idle connections to open")
	fs.IntVar(&cfg.Sources, "sources", 0, "source addresses 127.0.0.2 … 127.0.0.(N+1) to spread them over; 0: one per 20,000")
	fs.IntVar(&cfg.Concurrency, "concurrency", 8, "handshakes in flight at once")
	fs.DurationVar(&cfg.Hold, "hold", 10*time.Second, "how long to hold them open (PINGREQ at half the keep alive)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: vitalmq bench conns [flags]\n\n"+
			"Opens --conns idle connections (TCP or TLS, then CONNECT), holds them for --hold and\n"+
			"closes them; reports the connect rate, handshake latency, TLS resumptions, and with\n"+
			"--broker-pid the broker's RSS before and after, bytes and CPU µs per connection, and the\n"+
			"share of its CPUs' time a hypervisor gave to other guests (steal) while they connected.\n"+
			"Example: vitalmq bench conns --conns 10000 --tls --cacert ca.pem --resume --broker-pid $(pgrep -n vitalmq)\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if done, err := parseBench(fs, args); done || err != nil {
		return err
	}
	return execute(&c, stdout, func(t loadgen.Target, pid int) { cfg.Target, cfg.BrokerPID = t, pid },
		func() (*loadgen.ConnsResult, error) { return loadgen.RunConns(ctx, cfg) })
}
