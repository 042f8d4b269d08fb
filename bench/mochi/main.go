// Command mochi-bench is a minimal MQTT broker built on github.com/mochi-mqtt/server/v2, for
// bench/compare.sh: a plain TCP and/or a TLS listener on loopback, every client allowed
// (auth.AllowHook), and the library's default options otherwise (mqtt.New(nil): default
// capabilities, 2 KiB client read/write buffers, no persistence hook, so in memory).
// Only the logger is changed: warnings and errors, not one line per connection.
//
// It is its own module (vitalmq-bench-mochi) so that vitalmq does not depend on mochi.
package main

import (
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
)

func main() {
	tcpAddr := flag.String("tcp", "", "plain MQTT listener `host:port` (loopback only); empty: none")
	tlsAddr := flag.String("tls", "", "MQTT over TLS listener `host:port` (loopback only); empty: none")
	certFile := flag.String("cert", "", "server certificate PEM `file` (with --tls)")
	keyFile := flag.String("key", "", "server private key PEM `file` (with --tls)")
	mtlsAddr := flag.String("mtls", "", "MQTT over TLS listener that requires a client certificate `host:port`; empty: none")
	clientCA := flag.String("client-ca", "", "PEM `file` of the CA client certificates must chain to (with --mtls)")
	logLevel := flag.String("log-level", "warn", "debug, info, warn or error")
	flag.Parse()
	if err := run(*tcpAddr, *tlsAddr, *mtlsAddr, *certFile, *keyFile, *clientCA, *logLevel); err != nil {
		fmt.Fprintln(os.Stderr, "mochi-bench:", err)
		os.Exit(1)
	}
}

// loopback refuses anything but a loopback listener address: the server allows everyone.
func loopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	ip, err := netip.ParseAddr(host)
	if err != nil || !ip.IsLoopback() {
		return fmt.Errorf("%q: only loopback addresses (the server allows every client)", addr)
	}
	return nil
}

func run(tcpAddr, tlsAddr, mtlsAddr, certFile, keyFile, clientCA, logLevel string) error {
	if tcpAddr == "" && tlsAddr == "" && mtlsAddr == "" {
		return fmt.Errorf("nothing to listen on: give --tcp, --tls and/or --mtls")
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	server := mqtt.New(&mqtt.Options{Logger: logger}) // defaults otherwise
	if err := server.AddHook(new(auth.AllowHook), nil); err != nil {
		return err
	}
	if tcpAddr != "" {
		if err := loopback(tcpAddr); err != nil {
			return err
		}
		if err := server.AddListener(listeners.NewTCP(listeners.Config{ID: "tcp", Address: tcpAddr})); err != nil {
			return err
		}
	}
	if tlsAddr != "" {
		if err := loopback(tlsAddr); err != nil {
			return err
		}
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return fmt.Errorf("--cert/--key: %w", err)
		}
		tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		if err := server.AddListener(listeners.NewTCP(listeners.Config{ID: "tls", Address: tlsAddr, TLSConfig: tc})); err != nil {
			return err
		}
	}
	if mtlsAddr != "" {
		if err := loopback(mtlsAddr); err != nil {
			return err
		}
		cert, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return fmt.Errorf("--cert/--key: %w", err)
		}
		pem, err := os.ReadFile(clientCA)
		if err != nil {
			return fmt.Errorf("--client-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("--client-ca %s: no PEM certificate", clientCA)
		}
		tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
			ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool}
		if err := server.AddListener(listeners.NewTCP(listeners.Config{ID: "mtls", Address: mtlsAddr, TLSConfig: tc})); err != nil {
			return err
		}
	}
	if err := server.Serve(); err != nil {
		return err
	}
	fmt.Printf("mochi %s listening tcp=%q tls=%q mtls=%q\n", mqtt.Version, tcpAddr, tlsAddr, mtlsAddr)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	return server.Close()
}
