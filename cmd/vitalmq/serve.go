package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sync/errgroup"

	"vitalmq/internal/adminsock"
	"vitalmq/internal/broker"
	"vitalmq/internal/config"
	"vitalmq/internal/state"
	"vitalmq/internal/tlsconfig"
	"vitalmq/internal/topic"
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
	dataDir := fs.String("data-dir", "", "data directory (overrides storage.data_dir)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: vitalmq serve [--config FILE]\n\nRuns the broker. Without --config it listens on 127.0.0.1:1883 (MQTT) and\n127.0.0.1:8083/mqtt (WebSocket), loopback only. \"vitalmq config\" prints every setting.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return errUsage
	}
	f, err := config.Load(*cfgPath)
	if err != nil {
		return err
	}
	if *dataDir != "" {
		f.Storage.DataDir = *dataDir
	}
	level, _ := f.Level()
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	var persister broker.Persister
	if f.Storage.Mode == "durable" {
		if err := os.MkdirAll(f.Storage.DataDir, 0o700); err != nil {
			return fmt.Errorf("storage.data_dir: %w", err)
		}
		db, err := state.Open(filepath.Join(f.Storage.DataDir, "state"), log)
		if err != nil {
			return fmt.Errorf("storage.data_dir: %w", err)
		}
		defer db.Close() // after the broker: deferred calls run in reverse order
		persister = db
		admin, err := adminsock.Listen(adminSocket(f.Storage.DataDir), map[string]adminsock.Handler{
			"ping":   func(context.Context, string) error { return nil },
			"backup": func(_ context.Context, dest string) error { return db.Checkpoint(dest) },
		})
		if err != nil {
			return err
		}
		defer admin.Close()
		log.Info("broker state is durable", "data_dir", f.Storage.DataDir)
	} else {
		log.Warn("storage.mode is memory: sessions and queued messages are lost on restart")
	}

	b := f.Broker
	bcfg := broker.Config{
		Logger:               log,
		Authorizer:           newACL(f.ACL),
		Persister:            persister,
		ConnectTimeout:       b.ConnectTimeout.Duration,
		PreAuthMaxPacketSize: b.PreAuthMaxPacketSize,
		MaxPacketSize:        b.MaxPacketSize,
		MaxKeepAlive:         uint16(b.MaxKeepAlive),
		ReceiveMaximum:       uint16(b.ReceiveMaximum),
		MaxInflight:          uint16(b.MaxInflight),
		MaxQueuedMessages:    b.MaxQueuedMessages,
		MaxQueuedBytes:       b.MaxQueuedBytes,
		MaxPendingWrite:      b.MaxPendingWrite,
		WriteTimeout:         b.WriteTimeout.Duration,
		TopicAliasMaximum:    uint16(b.TopicAliasMaximum),
		MaxSubscriptions:     b.MaxSubscriptions,
		MaxTopicLength:       b.MaxTopicLength,
		MaxTopicLevels:       b.MaxTopicLevels,
		MaxClientIDLength:    b.MaxClientIDLength,
		MaxSessionExpiry:     uint32(b.MaxSessionExpiry.Seconds()),
		MaxRetained:          b.MaxRetained,
		SysInterval:          b.SysInterval.Duration,
	}
	for name, v := range map[string]int{"max_keep_alive": b.MaxKeepAlive, "receive_maximum": b.ReceiveMaximum,
		"max_inflight": b.MaxInflight, "topic_alias_maximum": b.TopicAliasMaximum} {
		if v < 0 || v > 65535 {
			return fmt.Errorf("config: broker.%s: must be 0..65535, got %d", name, v)
		}
	}
	srv, err := broker.New(bcfg)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	defer srv.Close()

	var g errgroup.Group
	var lns []net.Listener
	closeAll := func() {
		for _, ln := range lns {
			ln.Close()
		}
	}
	for _, l := range f.Listeners {
		ln, err := listen(l, srv.Config().MaxPacketSize, log)
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
		opts := broker.ListenerOptions{Name: l.Name, AllowAnonymous: l.AllowAnonymous}
		g.Go(func() error {
			if err := srv.Serve(ln, opts); !errors.Is(err, broker.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	log.Info("vitalmq started", "listeners", len(lns))

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
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		log.Warn("shutdown timed out; connections closed", "err", err)
	}
	return <-errc
}

// listen opens one configured listener.
func listen(l config.Listener, maxPacket int, log *slog.Logger) (net.Listener, error) {
	var tcfg *tls.Config
	if l.Type == "tls" || l.Type == "wss" {
		var err error
		if tcfg, err = tlsconfig.Server(l.CertFile, l.KeyFile); err != nil {
			return nil, fmt.Errorf("listener %s: %w", l.Name, err)
		}
	}
	ln, err := net.Listen("tcp", l.Address)
	if err != nil {
		return nil, fmt.Errorf("listener %s: %w", l.Name, err)
	}
	if tcfg != nil {
		ln = tls.NewListener(ln, tcfg)
	}
	if l.Type == "ws" || l.Type == "wss" {
		return wslistener.Listen(ln, l.Path, int64(maxPacket), log), nil
	}
	return ln, nil
}

// acl is the interim policy until per-user ACLs land: everything is allowed except the
// configured deny_subscribe filters and the server's $-topics.
type acl struct{ denySubscribe []string }

func newACL(c config.ACL) *acl { return &acl{denySubscribe: c.DenySubscribe} }

func (a *acl) CanPublish(_ *broker.Client, name string) bool { return true }

func (a *acl) CanSubscribe(_ *broker.Client, filter string) bool {
	for _, d := range a.denySubscribe {
		if topic.Covers(d, filter) {
			return false
		}
	}
	return true
}

func (a *acl) CanReceive(_ *broker.Client, name string) bool { return true }
