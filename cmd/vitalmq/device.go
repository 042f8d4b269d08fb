package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"vitalmq/internal/audit"
	"vitalmq/internal/pki"
)

const deviceUsage = `Usage:
  vitalmq device enroll ID [--out DIR] [--csr FILE] [--days N]   issue a device certificate
  vitalmq device revoke ID [--reason TEXT]                       revoke it; live sessions are cut within a second
  vitalmq device list                                            issued certificates
Every subcommand takes --data-dir (default vitalmq-data).

A device id is 1-64 characters of a-z, 0-9 and '-', and opaque: never a patient identifier.
The device connects with its certificate and client id = its device id, publishes under
dev/ID/... and receives commands on cmd/ID.
`

func device(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, deviceUsage)
		return errUsage
	}
	fs := flag.NewFlagSet("device "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("data-dir", "vitalmq-data", "data directory")
	out := fs.String("out", ".", "enroll: directory for ID.crt and ID.key")
	csr := fs.String("csr", "", "enroll: sign this PEM CSR instead of generating a key (the key never leaves the device)")
	days := fs.Int("days", 365, "enroll: validity in days")
	reason := fs.String("reason", "unspecified", "revoke: reason (e.g. keyCompromise: device lost)")
	fs.Usage = func() { fmt.Fprint(stderr, deviceUsage) }
	sub := args[0]
	pos, err := parseArgs(fs, args[1:])
	if err != nil {
		return flagErr(err)
	}
	d := dataDir(*dir)
	ca, err := pki.Open(d.pki())
	if err != nil {
		return fmt.Errorf("device: %w (run \"vitalmq init\" first)", err)
	}
	switch sub {
	case "enroll":
		if len(pos) != 1 {
			fmt.Fprint(stderr, deviceUsage)
			return errUsage
		}
		return enroll(ca, d, pos[0], *out, *csr, time.Duration(*days)*24*time.Hour, stdout)
	case "revoke":
		if len(pos) != 1 {
			fmt.Fprint(stderr, deviceUsage)
			return errUsage
		}
		id := pos[0]
		n, err := ca.Revoke(id, *reason)
		if err != nil {
			return fmt.Errorf("device revoke: %w", err)
		}
		recordAudit(d, audit.Event{Type: audit.TypeRevoke, Fields: map[string]string{"device": id, "count": fmt.Sprint(n), "reason": *reason, "actor": "cli"}})
		fmt.Fprintf(stdout, "revoked %d certificate(s) of device %s; a running broker disconnects it within a second and refuses it from now on\n", n, id)
		return nil
	case "list":
		list, err := ca.Devices()
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "DEVICE\tSERIAL\tEXPIRES\tSTATUS")
		for _, c := range list {
			status := "valid"
			if c.Revoked {
				status = "revoked " + c.RevokedAt.UTC().Format(time.DateOnly) + " (" + c.Reason + ")"
			} else if time.Now().After(c.NotAfter) {
				status = "expired"
			}
			fmt.Fprintf(tw, "%s\t%x\t%s\t%s\n", c.ID, c.Serial, c.NotAfter.UTC().Format(time.DateOnly), status)
		}
		return tw.Flush()
	default:
		fmt.Fprintf(stderr, "vitalmq device: unknown subcommand %q\n\n%s", sub, deviceUsage)
		return errUsage
	}
}

func enroll(ca *pki.CA, d dataDir, id, out, csrFile string, validity time.Duration, stdout io.Writer) error {
	if !pki.ValidDeviceID(id) {
		return fmt.Errorf("device enroll: %q is not a device id (1-64 of a-z, 0-9, '-')", id)
	}
	if err := os.MkdirAll(out, 0o700); err != nil {
		return err
	}
	certPath := filepath.Join(out, id+".crt")
	var certPEM, keyPEM []byte
	var err error
	if csrFile != "" {
		csr, rerr := os.ReadFile(csrFile)
		if rerr != nil {
			return fmt.Errorf("device enroll: %w", rerr)
		}
		certPEM, err = ca.SignCSR(csr, id, validity)
	} else {
		certPEM, keyPEM, err = ca.IssueDevice(id, validity)
	}
	if err != nil {
		return fmt.Errorf("device enroll: %w", err)
	}
	if err := os.WriteFile(certPath, certPEM, 0o644); err != nil {
		return err
	}
	keyPath := "(kept on the device)"
	if keyPEM != nil {
		keyPath = filepath.Join(out, id+".key")
		if err := os.WriteFile(keyPath, keyPEM, 0o600); err != nil {
			return err
		}
	}
	recordAudit(d, audit.Event{Type: audit.TypeEnrol, Fields: map[string]string{"device": id, "actor": "cli"}})
	caFile := filepath.Join(d.pki(), "ca.crt")
	fmt.Fprintf(stdout, `enrolled device %s
  certificate: %s
  key:         %s
  CA:          %s
Try it:
  mosquitto_pub -h <broker-host> -p 8883 --cafile %s --cert %s --key %s -i %s -t dev/%s/hr -m 72 -q 1
`, id, certPath, keyPath, caFile, caFile, certPath, keyPath, id, id)
	return nil
}
