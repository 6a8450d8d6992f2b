package lab

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// This file holds the test support shared by the end-to-end tests that run
// real programs on loopback: the exposure binary built from this tree, the
// daemon it runs, and the Debian Prometheus and Alertmanager. None of it
// needs the lab's namespaces; callers decide with Require, RequireBinary or
// RequireTool whether a test may run.

// RequireTool finds a program that a test which is not a lab test needs
// (it runs in -short mode and without root): it skips the test without
// it, or fails it when EXPOSURE_LAB=required. It returns the program's path.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	requireBinaries(t, []string{name})
	p, err := lookPath(name)
	if err != nil {
		t.Fatalf("lab: %v", err)
	}
	return p
}

// FreePort returns a loopback TCP port that nobody listened on a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("lab: free port: %v", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatalf("lab: free port: %v", err)
	}
	return port
}

// FreeAddr is FreePort as a "127.0.0.1:port" listen address.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(FreePort(t)))
}

// pollInterval is how often Eventually and WaitHTTP try again.
const pollInterval = 200 * time.Millisecond

// Eventually polls cond every 200 ms for at most d and fails the test,
// naming what it waited for, if cond never held.
func Eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(pollInterval)
	}
}

// maxBody bounds what HTTPGet reads of an answer.
const maxBody = 8 << 20

// HTTPGet fetches u with a 5 s timeout and returns the status code and the
// body (at most 8 MiB), or 0 and the error text if the request failed.
func HTTPGet(u string) (int, string) {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get(u)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	return resp.StatusCode, string(b)
}

// WaitHTTP waits up to timeout for GET u to answer 200 OK, as the /-/ready
// endpoints of exposure, Prometheus and Alertmanager do once they serve.
func WaitHTTP(t testing.TB, u string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		code, body := HTTPGet(u)
		if code == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after %v (last answer %d %s)", u, timeout, code, Tail(body, 200))
		}
		time.Sleep(pollInterval)
	}
}

// Tail returns the last n bytes of s.
func Tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// logTail is how much of a process's log a failed test shows.
const logTail = 8000

// Process is a long-lived program a test started, with its output in a log
// file.
type Process struct {
	// Log is the file holding the program's stdout and stderr.
	Log string

	name string
	cmd  *exec.Cmd
	done chan struct{} // closed once the program exited and err is set
	err  error         // what Wait returned
}

// StartProcess runs a long-lived program with its output in logFile until
// the test ends; then it is stopped with SIGTERM, and SIGKILL if it has not
// exited 20 s later. If the test failed, the tail of the log is shown.
// env is added to the test's environment.
func StartProcess(t testing.TB, logFile string, env []string, name string, args ...string) *Process {
	t.Helper()
	f, err := os.Create(logFile)
	if err != nil {
		t.Fatalf("lab: start %s: %v", name, err)
	}
	p := &Process{Log: logFile, name: filepath.Base(name), done: make(chan struct{})}
	p.cmd = exec.Command(name, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	if err := p.cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("lab: start %s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(20 * time.Second):
				_ = p.cmd.Process.Kill()
				<-p.done
			}
		}
		if t.Failed() {
			b, _ := os.ReadFile(logFile)
			t.Logf("%s log %s (tail):\n%s", p.name, filepath.Base(logFile), Tail(string(b), logTail))
		}
	})
	return p
}

// Pid is the program's process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Signal sends sig to the program.
func (p *Process) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Stop sends sig and returns how the program exited (nil for exit status
// 0). It fails the test if the program has not exited within timeout.
func (p *Process) Stop(t testing.TB, sig os.Signal, timeout time.Duration) error {
	t.Helper()
	if err := p.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("lab: signal %s: %v", p.name, err)
	}
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		t.Fatalf("%s: no exit %s after %v", p.name, timeout, sig)
		return nil
	}
}

// build is the exposure binary built once per test process.
var build struct {
	once sync.Once
	bin  string
	err  error
}

// buildPrefix names the directories BuildExposure builds into:
// buildPrefix<pid>-<random>.
const buildPrefix = "exposure-build-"

// BuildExposure builds cmd/exposure of this module (CGO_ENABLED=0) once per
// test process and returns the binary's path. The binary is in a directory
// of its own, mode 0755, so that an unprivileged user may run it; it stays
// for the life of the test process and is removed by the next test process
// that builds, once this one has exited.
func BuildExposure(t testing.TB) string {
	t.Helper()
	build.once.Do(func() { build.bin, build.err = buildExposure() })
	if build.err != nil {
		t.Fatalf("lab: %v", build.err)
	}
	return build.bin
}

func buildExposure() (string, error) {
	removeStaleBuilds(os.TempDir())
	gomod, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("build exposure: go env GOMOD: %w", err)
	}
	mod := strings.TrimSpace(string(gomod))
	if mod == "" || mod == os.DevNull {
		return "", errors.New("build exposure: not inside the module (go env GOMOD is empty)")
	}
	root := filepath.Dir(mod)
	dir, err := os.MkdirTemp("", buildPrefix+strconv.Itoa(os.Getpid())+"-")
	if err != nil {
		return "", fmt.Errorf("build exposure: %w", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return "", fmt.Errorf("build exposure: %w", err)
	}
	bin := filepath.Join(dir, "exposure")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/exposure")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		_ = os.RemoveAll(dir)
		return "", fmt.Errorf("build exposure: go build: %w: %s", err, out)
	}
	return bin, nil
}

// removeStaleBuilds removes the build directories under tmp of test
// processes that no longer run.
func removeStaleBuilds(tmp string) {
	dirs, _ := filepath.Glob(filepath.Join(tmp, buildPrefix+"*"))
	for _, d := range dirs {
		pid, ok := buildPID(filepath.Base(d))
		if !ok || pid == os.Getpid() || processAlive(pid) {
			continue
		}
		_ = os.RemoveAll(d)
	}
}

// buildPID parses the process id out of a build directory's name.
func buildPID(name string) (int, bool) {
	rest, ok := strings.CutPrefix(name, buildPrefix)
	if !ok {
		return 0, false
	}
	s, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(s)
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, true
}

// processAlive says whether a process with this id exists (EPERM means it
// does, owned by someone else).
func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
