package main

import (
	"flag"
	"fmt"
	"io"
	"time"

	"vitalmq/internal/audit"
)

func auditCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "verify" {
		fmt.Fprint(stderr, "Usage: vitalmq audit verify [--data-dir DIR]\n\nChecks the audit trail: any edited, deleted, inserted, reordered or truncated record is reported with where.\n")
		return errUsage
	}
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("data-dir", "vitalmq-data", "data directory")
	if err := fs.Parse(args[1:]); err != nil {
		return flagErr(err)
	}
	d := dataDir(*dir)
	r, err := audit.Verify(d.auditLog(), d.auditKey())
	for _, p := range r.Problems {
		fmt.Fprintln(stdout, p.String())
	}
	if r.MoreProblems > 0 {
		fmt.Fprintf(stdout, "... and %d more problems\n", r.MoreProblems)
	}
	for _, n := range r.Notes {
		fmt.Fprintln(stdout, "note:", n)
	}
	if err != nil {
		return fmt.Errorf("audit verify: %w", err)
	}
	fmt.Fprintf(stdout, "audit trail OK: %d records, seq %d-%d, %s to %s\n", r.Records, r.FirstSeq, r.LastSeq,
		r.First.UTC().Format(time.RFC3339), r.Last.UTC().Format(time.RFC3339))
	return nil
}
