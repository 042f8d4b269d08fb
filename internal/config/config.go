// Package config reads the vitalmq configuration file (TOML) into each package's Config,
// fills defaults, and refuses bad values with a message naming the setting.
package config

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"vitalmq/internal/auth"
)

// Example is the documented example configuration, also the embedded default.
//
//go:embed example.toml
var Example string

// File is the configuration file's schema.
type File struct {
	LogLevel  string     `toml:"log_level"`
	TLS       TLS        `toml:"tls"`
	Storage   Storage    `toml:"storage"`
	Broker    Broker     `toml:"broker"`
	Listeners []Listener `toml:"listener"`
	ACL       ACL        `toml:"acl"`
}

// Broker holds the broker limits; zero means the broker's default (see broker.Config).
type Broker struct {
	ConnectTimeout       Duration `toml:"connect_timeout"`
	PreAuthMaxPacketSize int      `toml:"pre_auth_max_packet_size"`
	MaxPacketSize        int      `toml:"max_packet_size"`
	MaxKeepAlive         int      `toml:"max_keep_alive"`
	ReceiveMaximum       int      `toml:"receive_maximum"`
	MaxInflight          int      `toml:"max_inflight"`
	MaxQueuedMessages    int      `toml:"max_queued_messages"`
	MaxQueuedBytes       int      `toml:"max_queued_bytes"`
	MaxPendingWrite      int      `toml:"max_pending_write"`
	WriteTimeout         Duration `toml:"write_timeout"`
	KeepReaders          bool     `toml:"keep_readers"`
	FlowControlWait      Duration `toml:"flow_control_wait"`
	FlowControlReaders   int      `toml:"flow_control_readers"`
	TopicAliasMaximum    int      `toml:"topic_alias_maximum"`
	MaxSubscriptions     int      `toml:"max_subscriptions"`
	MaxTopicLength       int      `toml:"max_topic_length"`
	MaxTopicLevels       int      `toml:"max_topic_levels"`
	MaxClientIDLength    int      `toml:"max_client_id_length"`
	MaxSessionExpiry     Duration `toml:"max_session_expiry"`
	MaxRetained          int      `toml:"max_retained"`
	MaxRetainedPerClient int      `toml:"max_retained_per_client"`
	MaxRetainedBytes     int64    `toml:"max_retained_bytes"`
	PublishRate          float64  `toml:"publish_rate"`
	MaxConnsPerAddress   int      `toml:"max_connections_per_address"`
	ConnectionRate       float64  `toml:"connection_rate"`
	ConnectionBurst      int      `toml:"connection_burst"`
	PublishByteRate      float64  `toml:"publish_byte_rate"`
	SysInterval          Duration `toml:"sys_interval"`
	MemoryBudget         int64    `toml:"memory_budget"`
	GCPercent            int      `toml:"gc_percent"`
}

// DefaultGCPercent is the collector's heap growth between collections, in percent of the
// live heap, unless gc_percent or Go's GOGC says otherwise: Go's own default. With 10,000
// TLS devices (~60 MB live since session 12; ~90 MB when 70 was tried) it lets the heap
// reach about twice that; 70 kept it to ~150 MB instead of ~180, but at one core's worth of
// load it cost scenario 6 tail latency and, in one run of three, messages dropped after
// flow control (docs/PERFORMANCE.md, session 11).
const DefaultGCPercent = 100

// TLS configures the built-in CA's server certificate.
type TLS struct {
	// Hosts are the DNS names and IP addresses the server certificate created on first
	// start is valid for, besides localhost, 127.0.0.1 and ::1. Default: this host's name.
	Hosts []string `toml:"hosts"`
}

// Storage is where broker state lives.
type Storage struct {
	// DataDir holds the broker state; it is locked while vitalmq runs. Default "vitalmq-data".
	DataDir string `toml:"data_dir"`
	// Mode is "durable" (default: a QoS 1/2 message is acknowledged only once it is on disk,
	// fsync'd with group commit) or "memory" (nothing survives a restart).
	Mode string `toml:"mode"`
	// SyncInterval (durable) is the least time between two fsyncs of the state: QoS 1/2
	// publications stored meanwhile share the next one (see state.Config). Default 1ms;
	// negative: none; at most 1s.
	SyncInterval Duration `toml:"sync_interval"`
}

// Listener is one [[listener]] table.
type Listener struct {
	Name           string `toml:"name"`
	Type           string `toml:"type"` // tcp, tls, ws, wss
	Address        string `toml:"address"`
	AllowAnonymous bool   `toml:"allow_anonymous"`
	CertFile       string `toml:"cert_file"` // tls, wss: default the built-in server certificate
	KeyFile        string `toml:"key_file"`
	ClientAuth     string `toml:"client_auth"` // tls, wss: none, optional (default), required
	ClientCA       string `toml:"client_ca"`   // tls, wss: PEM bundle of an external CA; default the built-in CA
	ClientCRL      string `toml:"client_crl"`  // tls, wss, with client_ca: that CA's CRLs (PEM or DER), reloaded live
	Path           string `toml:"path"`        // ws, wss: the HTTP path, default /mqtt
}

// ACL is the access policy: rules per role (see internal/auth; none: the built-in
// defaults) and filters nobody may subscribe to.
type ACL struct {
	Rules         []auth.Rule `toml:"rule"`
	DenySubscribe []string    `toml:"deny_subscribe"`
}

// Duration is a time.Duration written as "10s", "5m", "168h".
type Duration struct{ time.Duration }

// UnmarshalText parses a duration.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q (use e.g. \"10s\", \"5m\")", b)
	}
	d.Duration = v
	return nil
}

// Load reads path, or the embedded default when path is "".
func Load(path string) (*File, error) {
	data := []byte(Example)
	name := "embedded default"
	if path != "" {
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		data, name = b, path
	}
	return Parse(name, data)
}

// Parse decodes and validates a configuration. Unknown settings are refused.
func Parse(name string, data []byte) (*File, error) {
	var f File
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&f)
	if err != nil {
		return nil, fmt.Errorf("config %s: %w", name, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return nil, fmt.Errorf("config %s: unknown setting %s", name, strings.Join(keys, ", "))
	}
	if err := f.Validate(); err != nil {
		return nil, fmt.Errorf("config %s: %w", name, err)
	}
	return &f, nil
}

// Validate checks the listeners: a plaintext listener and anonymous access are allowed
// only on a loopback address, so no configuration can expose an open broker.
func (f *File) Validate() error {
	var errs []error
	if _, err := f.Level(); err != nil {
		errs = append(errs, err)
	}
	if f.Storage.DataDir == "" {
		f.Storage.DataDir = "vitalmq-data"
	}
	switch f.Storage.Mode {
	case "":
		f.Storage.Mode = "durable"
	case "durable", "memory":
	default:
		errs = append(errs, fmt.Errorf("storage.mode: %q is not one of durable, memory", f.Storage.Mode))
	}
	if f.Storage.SyncInterval.Duration > time.Second {
		errs = append(errs, fmt.Errorf("storage.sync_interval: %v is more than 1s: every durable acknowledgement would wait that long under load", f.Storage.SyncInterval.Duration))
	}
	switch g := f.Broker.GCPercent; {
	case g == 0:
		f.Broker.GCPercent = DefaultGCPercent
	case g < 10 || g > 1000:
		errs = append(errs, fmt.Errorf("broker.gc_percent: must be 10..1000 (percent of the live heap, as Go's GOGC), got %d", g))
	}
	if len(f.Listeners) == 0 {
		errs = append(errs, errors.New("listener: at least one [[listener]] is required"))
	}
	names := map[string]bool{}
	for i := range f.Listeners {
		l := &f.Listeners[i]
		at := fmt.Sprintf("listener[%d]", i)
		if l.Name == "" {
			l.Name = fmt.Sprintf("%s-%d", l.Type, i)
		}
		if names[l.Name] {
			errs = append(errs, fmt.Errorf("%s.name: duplicate name %q", at, l.Name))
		}
		names[l.Name] = true
		switch l.Type {
		case "tcp", "ws", "tls", "wss":
		default:
			errs = append(errs, fmt.Errorf("%s.type: %q is not one of tcp, tls, ws, wss", at, l.Type))
			continue
		}
		host, _, err := net.SplitHostPort(l.Address)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s.address: %q: %w", at, l.Address, err))
			continue
		}
		loopback := isLoopback(host)
		plain := l.Type == "tcp" || l.Type == "ws"
		if plain && !loopback {
			errs = append(errs, fmt.Errorf("%s.address: plaintext %s listener on %q: only loopback addresses may be plaintext; use type \"tls\" or \"wss\"", at, l.Type, l.Address))
		}
		if l.AllowAnonymous && !loopback {
			errs = append(errs, fmt.Errorf("%s.allow_anonymous: anonymous access is allowed only on loopback addresses, not %q", at, l.Address))
		}
		if !plain && (l.CertFile == "") != (l.KeyFile == "") {
			errs = append(errs, fmt.Errorf("%s.cert_file: set both cert_file and key_file, or neither (the built-in certificate)", at))
		}
		switch l.ClientAuth {
		case "":
			l.ClientAuth = "optional"
		case "none", "optional", "required":
		default:
			errs = append(errs, fmt.Errorf("%s.client_auth: %q is not one of none, optional, required", at, l.ClientAuth))
		}
		if l.ClientCRL != "" && l.ClientCA == "" {
			errs = append(errs, fmt.Errorf("%s.client_crl: set only with client_ca (the built-in CA keeps its own revocation list)", at))
		}
		if l.Path == "" {
			l.Path = "/mqtt"
		}
	}
	return errors.Join(errs...)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// Level is the log level.
func (f *File) Level() (slog.Level, error) {
	var l slog.Level
	if f.LogLevel == "" {
		return slog.LevelInfo, nil
	}
	if err := l.UnmarshalText([]byte(f.LogLevel)); err != nil {
		return 0, fmt.Errorf("log_level: %q is not one of debug, info, warn, error", f.LogLevel)
	}
	return l, nil
}
