package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"vitalmq/internal/adminsock"
	"vitalmq/internal/audit"
)

// dataDir names the files of a vitalmq data directory:
//
//	pki/            built-in CA, server certificate, device index, CRL (internal/pki)
//	users.json      users and their argon2id password hashes
//	audit/audit.log the tamper-evident audit trail, audit/audit.key its key
//	state/          broker state (Pebble)
//	admin.sock      the running broker's local admin socket (0600)
type dataDir string

func (d dataDir) pki() string      { return filepath.Join(string(d), "pki") }
func (d dataDir) users() string    { return filepath.Join(string(d), "users.json") }
func (d dataDir) auditLog() string { return filepath.Join(string(d), "audit", "audit.log") }
func (d dataDir) auditKey() string { return filepath.Join(string(d), "audit", "audit.key") }
func (d dataDir) state() string    { return filepath.Join(string(d), "state") }
func (d dataDir) admin() string    { return filepath.Join(string(d), "admin.sock") }

func (d dataDir) openAudit() (*audit.Log, error) {
	if err := os.MkdirAll(filepath.Dir(d.auditLog()), 0o700); err != nil {
		return nil, err
	}
	return audit.Open(d.auditLog(), d.auditKey())
}

// recordAudit appends an event for a CLI action: through the running broker, which owns
// the audit log while it runs, or directly when no broker runs on the data directory.
func recordAudit(d dataDir, e audit.Event) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	err = adminsock.Call(d.admin(), "audit", string(b))
	if !errors.Is(err, adminsock.ErrNotRunning) {
		return err
	}
	l, err := d.openAudit()
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	defer l.Close()
	return l.Append(e)
}

// parseArgs parses flags given before, between or after positional arguments (the flag
// package stops at the first positional one) and returns the positional arguments.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// flagErr turns a flag parsing error into the command's result: -h/--help is not an error
// (the usage was printed), anything else is a usage error (the flag package said why).
func flagErr(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return errUsage
}
