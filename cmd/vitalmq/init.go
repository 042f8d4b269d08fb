package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"vitalmq/internal/auth"
	"vitalmq/internal/pki"
)

// hostsFlag collects repeated --host values.
type hostsFlag []string

func (h *hostsFlag) String() string     { return fmt.Sprint(*h) }
func (h *hostsFlag) Set(v string) error { *h = append(*h, v); return nil }

func initCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("init", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("data-dir", "vitalmq-data", "data directory to create")
	var hosts hostsFlag
	fs.Var(&hosts, "host", "a DNS name or IP address the server certificate is valid for (repeatable; this host's name, localhost, 127.0.0.1 and ::1 are always included)")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: vitalmq init [--data-dir DIR] [--host NAME]...\n\nCreates the built-in CA (ECDSA P-256), a server certificate and an admin user whose password\nis shown once. \"vitalmq serve\" does this itself on a fresh data directory.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return flagErr(err)
	}
	d := dataDir(*dir)
	if err := os.MkdirAll(string(d), 0o700); err != nil {
		return err
	}
	if _, err := pki.Init(d.pki(), serverHosts(hosts), 0); err != nil {
		if errors.Is(err, pki.ErrExists) {
			return fmt.Errorf("init: %s is already initialised", d)
		}
		return fmt.Errorf("init: %w", err)
	}
	users, err := auth.Open(d.users())
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	pw, err := users.BootstrapAdmin()
	if err != nil {
		return fmt.Errorf("init: %w", err)
	}
	printWelcome(stdout, d, pw)
	return nil
}
