package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"time"

	"golang.org/x/sync/errgroup"

	"vitalmq/internal/adminsock"
	"vitalmq/internal/audit"
	"vitalmq/internal/auth"
	"vitalmq/internal/broker"
	"vitalmq/internal/config"
	"vitalmq/internal/limiter"
	"vitalmq/internal/pki"
	"vitalmq/internal/state"
	"vitalmq/internal/wslistener"
)

func printConfig(stdout io.Writer) error {
	_, err := io.WriteString(stdout, config.Example)
	return err
}

// serve is the composition root: it reads the configuration, builds the broker and its
// listeners, and runs until ctx is cancelled, then shuts down gracefully.
func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("config", "", "configuration file (TOML); without it the embedded defaults are used (see \"vitalmq config\")")
	dataDirFlag := fs.String("data-dir", "", "data directory (overrides storage.data_dir)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: vitalmq serve [--config FILE]\n\nRuns the broker. Without --config it listens on :8883 (MQTT over TLS) and :8884/mqtt\n(secure WebSocket), with the built-in CA it creates in the data directory on first start;\nno plaintext, no anonymous access. \"vitalmq config\" prints every setting.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return flagErr(err)
	}
	f, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	if *dataDirFlag != "" {
		f.Storage.DataDir = *dataDirFlag
	}
	level, _ := f.Level()
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	d := dataDir(f.Storage.DataDir)
	if err := os.MkdirAll(string(d), 0o700); err != nil {
		return fmt.Errorf("storage.data_dir: %w", err)
	}
	sec, closeSec, err := openSecurity(d, f, *cfgPath, log, stdout)
	if err != nil {
		return err
	}
	defer closeSec()

	var persister broker.Persister
	var db *state.DB
	if f.Storage.Mode == "durable" {
		db, err = state.Open(d.state(), state.Config{Log: log, SyncInterval: f.Storage.SyncInterval.Duration})
		if err != nil {
			return fmt.Errorf("storage.data_dir: %w", err)
		}
		defer db.Close() // after the broker: deferred calls run in reverse order
		persister = db
		log.Info("broker state is durable", "data_dir", d)
	} else {
		log.Warn("storage.mode is memory: sessions and queued messages are lost on restart")
	}
	admin, err := adminsock.Listen(d.admin(), map[string]adminsock.Handler{
		"ping": func(context.Context, string) error { return nil },
		"backup": func(_ context.Context, dest string) error {
			if db == nil {
				return errors.New("storage.mode is memory: no broker state to back up")
			}
			return db.Checkpoint(dest)
		},
		"audit": func(_ context.Context, event string) error {
			var e audit.Event
			if err := json.Unmarshal([]byte(event), &e); err != nil {
				return err
			}
			return sec.audit.Append(e)
		},
	})
	if err != nil {
		return err
	}
	defer admin.Close()

	b := f.Broker
	bcfg := broker.Config{
		Logger:                   log,
		Authenticator:            sec,
		Authorizer:               sec,
		Persister:                persister,
		ConnectTimeout:           b.ConnectTimeout.Duration,
		PreAuthMaxPacketSize:     b.PreAuthMaxPacketSize,
		MaxPacketSize:            b.MaxPacketSize,
		MaxKeepAlive:             uint16(b.MaxKeepAlive),
		ReceiveMaximum:           uint16(b.ReceiveMaximum),
		MaxInflight:              uint16(b.MaxInflight),
		MaxQueuedMessages:        b.MaxQueuedMessages,
		MaxQueuedBytes:           b.MaxQueuedBytes,
		MaxPendingWrite:          b.MaxPendingWrite,
		WriteTimeout:             b.WriteTimeout.Duration,
		KeepReaders:              b.KeepReaders,
		FlowControlWait:          b.FlowControlWait.Duration,
		FlowControlReaders:       b.FlowControlReaders,
		TopicAliasMaximum:        uint16(b.TopicAliasMaximum),
		MaxSubscriptions:         b.MaxSubscriptions,
		MaxTopicLength:           b.MaxTopicLength,
		MaxTopicLevels:           b.MaxTopicLevels,
		MaxClientIDLength:        b.MaxClientIDLength,
		MaxSessionExpiry:         uint32(b.MaxSessionExpiry.Seconds()),
		MaxRetained:              b.MaxRetained,
		MaxRetainedPerClient:     b.MaxRetainedPerClient,
		MaxRetainedBytes:         b.MaxRetainedBytes,
		PublishRate:              b.PublishRate,
		MaxConnectionsPerAddress: b.MaxConnsPerAddress,
		ConnectionRate:           b.ConnectionRate,
		ConnectionBurst:          b.ConnectionBurst,
		PublishByteRate:          b.PublishByteRate,
		SysInterval:              b.SysInterval.Duration,
		MemoryBudget:             b.MemoryBudget,
	}
	for _, f := range []struct {
		name string
		v    int
	}{{"max_keep_alive", b.MaxKeepAlive}, {"receive_maximum", b.ReceiveMaximum}, {"max_inflight", b.MaxInflight}, {"topic_alias_maximum", b.TopicAliasMaximum}} {
		name, v := f.name, f.v
		if v < 0 || v > 65535 {
			return fmt.Errorf("config: broker.%s: must be 0..65535, got %d", name, v)
		}
	}
	srv, err := broker.New(bcfg)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	tuneGC(b.GCPercent, srv.Config().MemoryBudget)
	defer srv.Close()

	var g errgroup.Group
	var lns []net.Listener
	closeAll := func() {
		for _, ln := range lns {
			ln.Close()
		}
	}
	for _, l := range f.Listeners {
		ln, tcfg, err := listen(l, sec, srv.Config().MaxPacketSize, log)
		if err != nil {
			closeAll()
			return err
		}
		lns = append(lns, ln)
		if l.AllowAnonymous {
			log.Warn("anonymous access enabled on a loopback listener; for local testing only", "listener", l.Name, "address", ln.Addr().String())
		}
		if l.Type == "tcp" || l.Type == "ws" {
			log.Warn("plaintext listener on loopback: not encrypted", "listener", l.Name)
		}
		fmt.Fprintf(stdout, "listening %s %s %s\n", l.Name, l.Type, ln.Addr())
		opts := broker.ListenerOptions{Name: l.Name, AllowAnonymous: l.AllowAnonymous, TLS: tcfg}
		g.Go(func() error {
			if err := srv.Serve(ln, opts); !errors.Is(err, broker.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	log.Info("vitalmq started", "listeners", len(lns))
	watchCtx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	g.Go(func() error { sec.watch(watchCtx, srv); return nil })

	errc := make(chan error, 1)
	go func() { errc <- g.Wait() }()
	select {
	case <-ctx.Done():
	case err := <-errc:
		if err != nil {
			return err
		}
	}
	log.Info("shutting down")
	stopWatch()
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("shutdown timed out; connections closed", "err", err)
	}
	return <-errc
}

// listen opens one configured listener. For a "tls" listener it also returns the TLS
// configuration the broker runs the handshake with (so that it keeps the TCP socket
// beneath, for dormant connections); a "wss" listener runs TLS itself.
func listen(l config.Listener, sec *security, maxPacket int, log *slog.Logger) (net.Listener, *tls.Config, error) {
	var tcfg *tls.Config
	if l.Type == "tls" || l.Type == "wss" {
		var err error
		if tcfg, err = sec.serverTLS(l); err != nil {
			return nil, nil, err
		}
	}
	ln, err := net.Listen("tcp", l.Address)
	if err != nil {
		return nil, nil, fmt.Errorf("listener %s: %w", l.Name, err)
	}
	if l.Type == "ws" || l.Type == "wss" {
		if tcfg != nil {
			ln = tls.NewListener(ln, tcfg)
		}
		return wslistener.Listen(ln, l.Path, int64(maxPacket), log), nil, nil
	}
	return ln, tcfg, nil
}

// openSecurity opens (creating on first start) the built-in CA, the users (with an admin
// whose password is shown once), the access policy and the audit trail.
func openSecurity(d dataDir, f *config.File, cfgPath string, log *slog.Logger, stdout io.Writer) (*security, func(), error) {
	ca, err := pki.Open(d.pki())
	if errors.Is(err, fs.ErrNotExist) {
		ca, err = pki.Init(d.pki(), serverHosts(f.TLS.Hosts), 0)
		if err == nil {
			log.Info("created the built-in CA", "ca", filepath.Join(d.pki(), "ca.crt"))
		}
	}
	if err != nil {
		return nil, nil, fmt.Errorf("data_dir pki: %w", err)
	}
	users, err := auth.Open(d.users())
	if err != nil {
		return nil, nil, fmt.Errorf("data_dir users: %w", err)
	}
	if pw, err := users.BootstrapAdmin(); err == nil {
		printWelcome(stdout, d, pw)
	} else if !errors.Is(err, auth.ErrNotEmpty) {
		return nil, nil, fmt.Errorf("data_dir users: %w", err)
	}
	pol := auth.DefaultPolicy()
	if len(f.ACL.Rules) > 0 {
		if pol, err = auth.ParsePolicy(auth.PolicyConfig{Rules: f.ACL.Rules}); err != nil {
			return nil, nil, fmt.Errorf("config: acl: %w", err)
		}
	}
	al, err := d.openAudit()
	if err != nil {
		return nil, nil, fmt.Errorf("data_dir audit: %w", err)
	}
	sec := &security{ca: ca, users: users, policy: auth.NewPolicies(pol), throttle: auth.NewThrottle(auth.ThrottleConfig{}),
		audit: al, log: log, denyLog: limiter.New(1, 20, 10_000), cfgPath: cfgPath}
	deny := f.ACL.DenySubscribe
	sec.deny.Store(&deny)
	if cfgPath != "" {
		if st, err := os.Stat(cfgPath); err == nil {
			sec.cfgMod = st.ModTime()
		}
	}
	return sec, func() { al.Close() }, nil
}

// serverHosts are the names of the built-in server certificate: the configured ones and this host's name.
func serverHosts(configured []string) []string {
	hosts := append([]string(nil), configured...)
	if h, err := os.Hostname(); err == nil && h != "" {
		hosts = append(hosts, h)
	}
	return hosts
}

func printWelcome(w io.Writer, d dataDir, password string) {
	ca := filepath.Join(d.pki(), "ca.crt")
	fmt.Fprintf(w, `
vitalmq: new installation in %[1]s
  CA certificate (give it to devices and clients): %[2]s
  admin password (shown once; change it: vitalmq user passwd admin): %[3]s

Enrol a device (certificate and key for client id monitor-0001):
  vitalmq device enroll monitor-0001 --out ./monitor-0001
  mosquitto_pub -h <this-host> -p 8883 --cafile %[2]s --cert monitor-0001/monitor-0001.crt \
    --key monitor-0001/monitor-0001.key -i monitor-0001 -t dev/monitor-0001/hr -m 72 -q 1
Add a user (clinician app, integration):
  vitalmq user add nurse-station --role clinician
  mosquitto_sub -h <this-host> -p 8883 --cafile %[2]s -u nurse-station -P <password> -i nurse-station:1 -t 'dev/#' -v

`, d, ca, password)
}

// tuneGC sets the collector's heap growth (gc_percent) and its soft memory limit (the
// memory budget: the collector works harder before the budget is reached), unless the
// operator set Go's own GOGC or GOMEMLIMIT.
func tuneGC(percent int, limit int64) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(percent)
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(limit)
	}
}
