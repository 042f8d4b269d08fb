package main

import (
	"bufio"
	"crypto/rand"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"

	"vitalmq/internal/audit"
	"vitalmq/internal/auth"
)

const userUsage = `Usage:
  vitalmq user add NAME --role admin|clinician|service   add a user; the password is read from stdin
                                                         (one line) or, with --generate, made and shown once
  vitalmq user passwd NAME [--generate]                  set a new password
  vitalmq user remove NAME                               remove a user (live connections are cut)
  vitalmq user list
Every subcommand takes --data-dir (default vitalmq-data). Passwords are at least 12 characters
and stored as argon2id hashes. A user connects over TLS with client id "NAME:<anything>".
`

func user(args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, userUsage)
		return errUsage
	}
	sub := args[0]
	fs := flag.NewFlagSet("user "+sub, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("data-dir", "vitalmq-data", "data directory")
	role := fs.String("role", "", "add: admin, clinician or service")
	generate := fs.Bool("generate", false, "add, passwd: generate a password and print it once")
	fs.Usage = func() { fmt.Fprint(stderr, userUsage) }
	pos, err := parseArgs(fs, args[1:])
	if err != nil {
		return flagErr(err)
	}
	d := dataDir(*dir)
	if err := os.MkdirAll(string(d), 0o700); err != nil {
		return err
	}
	users, err := auth.Open(d.users())
	if err != nil {
		return fmt.Errorf("user: %w", err)
	}
	name := ""
	if len(pos) > 0 {
		name = pos[0]
	}
	needName := func() error {
		if len(pos) != 1 {
			fmt.Fprint(stderr, userUsage)
			return errUsage
		}
		return nil
	}
	password := func() (string, error) {
		if *generate {
			return rand.Text(), nil // 26 base32 characters, 130 bits
		}
		line, err := bufio.NewReader(stdin).ReadString('\n')
		if err != nil && line == "" {
			return "", errors.New("user: no password on stdin (or use --generate)")
		}
		return strings.TrimRight(line, "\r\n"), nil
	}
	done := func(action string) error {
		recordAudit(d, audit.Event{Type: audit.TypeUserChange, Fields: map[string]string{"username": name, "action": action, "actor": "cli"}})
		return nil
	}
	switch sub {
	case "add":
		if err := needName(); err != nil {
			return err
		}
		pw, err := password()
		if err != nil {
			return err
		}
		if err := users.Add(name, *role, pw); err != nil {
			return fmt.Errorf("user add: %w", err)
		}
		if *generate {
			fmt.Fprintf(stdout, "password for %s (shown once): %s\n", name, pw)
		}
		fmt.Fprintf(stdout, "added user %s (%s)\n", name, *role)
		return done("add")
	case "passwd":
		if err := needName(); err != nil {
			return err
		}
		pw, err := password()
		if err != nil {
			return err
		}
		if err := users.SetPassword(name, pw); err != nil {
			return fmt.Errorf("user passwd: %w", err)
		}
		if *generate {
			fmt.Fprintf(stdout, "new password for %s (shown once): %s\n", name, pw)
		}
		fmt.Fprintf(stdout, "password of %s changed\n", name)
		return done("passwd")
	case "remove":
		if err := needName(); err != nil {
			return err
		}
		if err := users.Remove(name); err != nil {
			return fmt.Errorf("user remove: %w", err)
		}
		fmt.Fprintf(stdout, "removed user %s\n", name)
		return done("remove")
	case "list":
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "USER\tROLE\tCREATED")
		for _, u := range users.List() {
			fmt.Fprintf(tw, "%s\t%s\t%s\n", u.Name, u.Role, u.Created.UTC().Format("2006-01-02"))
		}
		return tw.Flush()
	default:
		fmt.Fprintf(stderr, "vitalmq user: unknown subcommand %q\n\n%s", sub, userUsage)
		return errUsage
	}
}
