// Package redistest starts a real redis-server on loopback for tests.
// ./.ci/run and `make test` install it (Debian's redis-server package).
package redistest

import (
	"bufio"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Server is a redis-server the test started.
type Server struct {
	// Addr is its host:port on 127.0.0.1.
	Addr string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
}

// URL is the server's redis:// URL, database db.
func (s *Server) URL(db int) string { return fmt.Sprintf("redis://%s/%d", s.Addr, db) }

// Start runs a redis-server without persistence on a free loopback port
// and waits, at most 10 seconds, until it answers PING. The test's
// cleanup stops it.
func Start(t testing.TB) *Server {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		t.Fatal("redis-server is not installed: `make test` and ./.ci/run install it (apt-get install redis-server)")
	}
	var last error
	for range 5 { // a free port may be taken before the server binds it
		port, err := freePort()
		if err != nil {
			t.Fatal(err)
		}
		s := &Server{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
		s.cmd = exec.Command(bin, "--bind", "127.0.0.1", "--port", strconv.Itoa(port),
			"--save", "", "--appendonly", "no", "--protected-mode", "yes", "--loglevel", "warning")
		if err := s.cmd.Start(); err != nil {
			t.Fatal(err)
		}
		s.done = make(chan struct{})
		go func() { s.cmd.Wait(); close(s.done) }()
		if last = s.waitReady(10 * time.Second); last == nil {
			t.Cleanup(s.Stop)
			return s
		}
		s.Stop()
	}
	t.Fatalf("redis-server did not start: %v", last)
	return nil
}

// Stop kills the server and waits for it to exit; Ping fails from then on.
func (s *Server) Stop() {
	s.cmd.Process.Kill()
	<-s.done
}

// waitReady polls with PING until the server answers or the deadline
// passes, or the process exits.
func (s *Server) waitReady(within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		if err := s.ping(); err == nil {
			return nil
		} else if time.Now().After(deadline) {
			return err
		}
		select {
		case <-s.done:
			return fmt.Errorf("redis-server exited: %v", s.cmd.ProcessState)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (s *Server) ping() error {
	c, err := net.DialTimeout("tcp", s.Addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "+PONG") {
		return fmt.Errorf("redis-server answered %q", line)
	}
	return nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}
