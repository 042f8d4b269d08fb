// Package adminsock is the local administration channel of a running vitalmq: a Unix
// socket in the data directory (mode 0600, so only the broker's user can reach it) that
// takes one-line commands from the vitalmq CLI — "backup /path" — and answers one line.
// Nothing on the network can reach it.
package adminsock

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"
)

// Handler runs one command with its argument and returns an error to report.
type Handler func(ctx context.Context, arg string) error

// Server serves commands on a Unix socket.
type Server struct {
	ln       net.Listener
	handlers map[string]Handler
	wg       sync.WaitGroup
}

// Listen creates the socket at path (replacing a stale one) with mode 0600.
func Listen(path string, handlers map[string]Handler) (*Server, error) {
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("admin socket %s: another vitalmq is running on this data directory", path)
	}
	os.Remove(path) // stale socket from a killed process
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket: %w", err)
	}
	s := &Server{ln: ln, handlers: handlers}
	s.wg.Go(s.serve)
	return s, nil
}

func (s *Server) serve() {
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Go(func() { s.handle(c) })
	}
}

func (s *Server) handle(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Minute))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return
	}
	cmd, arg, _ := strings.Cut(strings.TrimSpace(line), " ")
	h, ok := s.handlers[cmd]
	if !ok {
		fmt.Fprintf(c, "error: unknown command %q\n", cmd)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if err := h(ctx, arg); err != nil {
		fmt.Fprintf(c, "error: %s\n", strings.ReplaceAll(err.Error(), "\n", " "))
		return
	}
	fmt.Fprintln(c, "ok")
}

// Close stops accepting, waits for commands in progress and removes the socket.
func (s *Server) Close() error {
	err := s.ln.Close()
	s.wg.Wait()
	return err
}

// ErrNotRunning is returned by Call when no vitalmq serves the socket.
var ErrNotRunning = errors.New("no running vitalmq on this data directory")

// Call sends one command to a running vitalmq and returns its error, if any.
func Call(path, cmd, arg string) error {
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return ErrNotRunning
	}
	defer c.Close()
	if _, err := fmt.Fprintf(c, "%s %s\n", cmd, arg); err != nil {
		return err
	}
	reply, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("admin socket: %w", err)
	}
	reply = strings.TrimSpace(reply)
	if reply == "ok" {
		return nil
	}
	return errors.New(strings.TrimPrefix(reply, "error: "))
}
