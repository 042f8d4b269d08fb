// Command vitalmq is the vitalmq MQTT broker and remote-patient-monitoring hub.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `vitalmq: a secure MQTT 3.1.1 / 5.0 broker for remote patient monitoring.

Usage:
  vitalmq serve [--config FILE]   run the broker (embedded defaults without --config)
  vitalmq init [--host NAME]      create the data directory: CA, server certificate, admin user
  vitalmq device enroll|revoke|list   device certificates from the built-in CA
  vitalmq user add|passwd|remove|list users (clinician apps, integrations) with passwords
  vitalmq audit verify            check the tamper-evident audit trail
  vitalmq backup --out DIR        copy the data directory, consistently, while vitalmq runs
  vitalmq restore --from DIR      replace the data directory with a backup (vitalmq stopped)
  vitalmq config                  print the documented default configuration
  vitalmq bench pubsub|conns      load generator against a loopback broker (see "vitalmq bench")
  vitalmq version                 print the version

Run "vitalmq serve --help" for the serve options.
`

var version = "dev"

// stdin is where "vitalmq user" reads passwords; tests replace it.
var stdin io.Reader = os.Stdin

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, errUsage) {
			fmt.Fprintln(os.Stderr, "vitalmq:", err)
		}
		os.Exit(1)
	}
}

var errUsage = errors.New("usage")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], stdout, stderr)
	case "init":
		return initCmd(args[1:], stdout, stderr)
	case "device":
		return device(args[1:], stdout, stderr)
	case "user":
		return user(args[1:], stdin, stdout, stderr)
	case "audit":
		return auditCmd(args[1:], stdout, stderr)
	case "backup":
		return backup(args[1:], stdout, stderr)
	case "restore":
		return restore(args[1:], stdout, stderr)
	case "config":
		return printConfig(stdout)
	case "bench":
		return bench(ctx, args[1:], stdout, stderr)
	case "version":
		fmt.Fprintln(stdout, "vitalmq", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprintf(stderr, "vitalmq: unknown command %q\n\n%s", args[0], usage)
		return errUsage
	}
}
