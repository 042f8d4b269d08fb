package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"vitalmq/internal/adminsock"
	"vitalmq/internal/state"
)

// The data directory holds state/ (Pebble) and, beside it, small files (keys, CA, users,
// audit trail). A backup is a directory with the same layout: state/ is a Pebble
// checkpoint taken by the running broker (consistent while it runs), the rest copied.

func backup(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("backup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("data-dir", "vitalmq-data", "the data directory to back up")
	out := fs.String("out", "", "directory to create with the backup (must not exist)")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: vitalmq backup --out DIR [--data-dir DIR]\n\nCopies the data directory, consistently, while vitalmq runs (or while it is stopped).\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return flagErr(err)
	}
	if *out == "" {
		fs.Usage()
		return errors.New("backup: --out is required")
	}
	dest, err := filepath.Abs(*out)
	if err != nil {
		return err
	}
	if _, err := os.Stat(dest); err == nil {
		return fmt.Errorf("backup: %s already exists", dest)
	}
	if err := copyTree(*dir, dest, func(rel string) bool { return rel != "state" && rel != "admin.sock" }); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	stateDest := filepath.Join(dest, "state")
	err = adminsock.Call(dataDir(*dir).admin(), "backup", stateDest)
	if errors.Is(err, adminsock.ErrNotRunning) {
		err = checkpointOffline(dataDir(*dir).state(), stateDest)
	}
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	fmt.Fprintf(stdout, "backup of %s written to %s\n", *dir, dest)
	return nil
}

func checkpointOffline(stateDir, dest string) error {
	if _, err := os.Stat(stateDir); err != nil {
		return fmt.Errorf("no broker state in %s: %w", stateDir, err)
	}
	db, err := state.Open(stateDir, state.Config{})
	if err != nil {
		return err
	}
	defer db.Close()
	return db.Checkpoint(dest)
}

func restore(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("restore", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("data-dir", "vitalmq-data", "the data directory to restore into")
	from := fs.String("from", "", "a directory written by vitalmq backup")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: vitalmq restore --from DIR [--data-dir DIR]\n\nReplaces the data directory with a backup. vitalmq must be stopped; the current\ndata directory is kept beside it as <data-dir>.before-restore-<time>.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return flagErr(err)
	}
	if *from == "" {
		fs.Usage()
		return errors.New("restore: --from is required")
	}
	if err := adminsock.Call(dataDir(*dir).admin(), "ping", ""); !errors.Is(err, adminsock.ErrNotRunning) {
		return fmt.Errorf("restore: vitalmq is running on %s: stop it first", *dir)
	}
	// Check the backup opens and loads before touching anything, on a copy: opening a
	// Pebble store may write to it.
	tmp := filepath.Clean(*dir) + ".restoring"
	os.RemoveAll(tmp)
	if err := copyTree(*from, tmp, func(string) bool { return true }); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	db, err := state.Open(filepath.Join(tmp, "state"), state.Config{})
	if err == nil {
		_, err = db.Load()
		db.Close()
	}
	if err != nil {
		os.RemoveAll(tmp)
		return fmt.Errorf("restore: %s is not a usable backup: %w", *from, err)
	}
	if _, err := os.Stat(*dir); err == nil {
		old := filepath.Clean(*dir) + ".before-restore-" + time.Now().UTC().Format("20060102T150405Z")
		if err := os.Rename(*dir, old); err != nil {
			return fmt.Errorf("restore: %w", err)
		}
		fmt.Fprintf(stdout, "previous data directory kept as %s\n", old)
	}
	if err := os.Rename(tmp, *dir); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	fmt.Fprintf(stdout, "restored %s from %s\n", *dir, *from)
	return nil
}

// copyTree copies regular files and directories from src to dst (created 0700), keeping
// file modes; top-level entries for which keep returns false are skipped.
func copyTree(src, dst string, keep func(rel string) bool) error {
	if err := os.MkdirAll(dst, 0o700); err != nil {
		return err
	}
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) && path == src {
				return nil // nothing to copy yet
			}
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if rel == "." {
			return nil
		}
		if top, _, _ := cutPath(rel); !keep(top) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o700)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return copyFile(path, target, info.Mode().Perm())
	})
}

func cutPath(rel string) (string, string, bool) {
	for i := 0; i < len(rel); i++ {
		if os.IsPathSeparator(rel[i]) {
			return rel[:i], rel[i+1:], true
		}
	}
	return rel, "", false
}

func copyFile(src, dst string, perm fs.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, perm)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
