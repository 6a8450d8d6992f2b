package store

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/snapshot"
)

const crashEnv = "EXPOSURE_STORE_CRASH_WRITER"

var crashT0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// crashScan is scan number i of the crash test's writer: 20 hosts whose
// ports drift every few scans, every fifth scan incomplete.
func crashScan(i int) *snapshot.Snapshot {
	at := crashT0.Add(time.Duration(i) * time.Minute)
	sn := &snapshot.Snapshot{Target: "crash", ID: snapshot.NewID("crash", at), StartedAt: at, FinishedAt: at.Add(time.Second),
		Complete: i%5 != 4, Quality: snapshot.Quality{ProbesSent: uint64(1000 + i), Replies: 1000}, Hosts: []snapshot.Host{}}
	for h := range 20 {
		if (i/7+h)%11 == 0 {
			continue // host down for a while
		}
		host := snapshot.Host{Address: fmt.Sprintf("198.18.0.%d", h+1), State: snapshot.HostUp, Ports: []snapshot.Port{}}
		for _, p := range []int{22, 80, 1000 + (i/3+h)%40, 2000 + (i/13+h)%7} {
			pt := snapshot.Port{Port: uint16(p), Protocol: "tcp", State: snapshot.StateOpen}
			if p == 22 {
				pt.Service = &snapshot.Service{Name: "ssh", Product: "OpenSSH", Version: fmt.Sprintf("9.%dp1", (i/17)%9), CPE: []string{}}
			}
			host.Ports = append(host.Ports, pt)
		}
		sn.Hosts = append(sn.Hosts, host)
	}
	return sn
}

func crashIndex(id string) (int, bool) {
	_, n, ok := parseID(id)
	if !ok {
		return 0, false
	}
	return int(time.Unix(0, n).Sub(crashT0) / time.Minute), true
}

// TestMain turns the test binary into the crash test's writer process when
// TestCrashRecovery starts it with crashEnv set.
func TestMain(m *testing.M) {
	if path := os.Getenv(crashEnv); path != "" {
		crashWriter(path)
	}
	os.Exit(m.Run())
}

// crashWriter commits scans (with a change, an outbox entry and diff state
// each) until killed, printing each id once Commit returned.
func crashWriter(path string) {
	s, err := Open(path, Options{Timeout: 10 * time.Second})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(3)
	}
	next := 0
	if sn, err := s.Latest("crash"); err == nil {
		i, _ := crashIndex(sn.ID)
		next = i + 1
	}
	for i := next; ; i++ {
		sn := crashScan(i)
		err := s.Commit(context.Background(), Commit{
			Snapshot:  sn,
			Changes:   []snapshot.Change{{Kind: snapshot.PortOpened, Address: "198.18.0.1", Port: uint16(i%60000 + 1), Protocol: "tcp"}},
			Outbox:    []OutboxEntry{{Receiver: "hook", Key: sn.ID, Created: sn.StartedAt, Body: []byte(sn.ID)}},
			DiffState: []byte(sn.ID),
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(4)
		}
		fmt.Fprintln(os.Stdout, sn.ID) // unbuffered: a write(2) per line
	}
}

// TestCrashRecovery SIGKILLs a writer process at random points and checks
// after every kill that the file opens and every scan the writer reported
// committed is intact, with its change, outbox entry and diff state.
func TestCrashRecovery(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: 200 writer processes killed with SIGKILL")
	}
	kills := 200
	path := filepath.Join(t.TempDir(), "crash.db")
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	var committed []string
	midRun := 0
	start := time.Now()
	for k := range kills {
		cmd := exec.Command(os.Args[0], "-test.run=^$") // TestMain runs the writer
		cmd.Env = append(os.Environ(), crashEnv+"="+path)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		lines := make(chan string, 1024)
		go func() {
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		// One kill in ten lands anywhere from startup on (opening, first
		// commit); the others land a random moment after the writer's
		// first commit, amid the following ones.
		var ids []string
		if rng.IntN(10) == 0 {
			time.Sleep(time.Duration(rng.IntN(80)) * time.Millisecond)
		} else {
			select {
			case l, ok := <-lines:
				if ok && strings.HasPrefix(l, "crash/") {
					ids = append(ids, l)
				}
			case <-time.After(20 * time.Second):
				t.Fatalf("kill %d: writer committed nothing in 20s: %s", k, stderr.String())
			}
			time.Sleep(time.Duration(rng.IntN(40_000)) * time.Microsecond)
		}
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		for l := range lines {
			if strings.HasPrefix(l, "crash/") {
				ids = append(ids, l)
			}
		}
		err = cmd.Wait()
		ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
		require.True(t, ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL,
			"kill %d: writer ended by itself: %v\n%s", k, err, stderr.String())
		if len(ids) > 0 {
			midRun++
		}
		committed = append(committed, ids...)

		// Check the new ids and a sample of old ones after every kill.
		check := ids
		for range 5 {
			if len(committed) > 0 {
				check = append(check, committed[rng.IntN(len(committed))])
			}
		}
		verifyCrash(t, path, check, k%20 == 19)
	}
	verifyCrash(t, path, committed, true)
	t.Logf("%d SIGKILLs (%d after at least one commit), %d scans committed and verified, %s",
		kills, midRun, len(committed), time.Since(start).Round(time.Millisecond))
	require.Greater(t, midRun, kills*3/4, "most kills must land while the writer commits")
}

func verifyCrash(t *testing.T, path string, ids []string, deep bool) {
	t.Helper()
	s, err := Open(path, Options{Timeout: 5 * time.Second})
	if err != nil && strings.Contains(err.Error(), "no such file") {
		require.Empty(t, ids)
		return
	}
	require.NoError(t, err)
	defer s.Close()
	if deep {
		require.NoError(t, s.Check())
	}
	changes, err := s.Changes("crash", time.Time{}, time.Time{})
	require.NoError(t, err)
	changed := map[string]bool{}
	for _, c := range changes {
		changed[c.Snapshot] = true
	}
	outbox, err := s.OutboxPending("hook", 0)
	require.NoError(t, err)
	queued := map[string]bool{}
	for _, e := range outbox {
		queued[e.Key] = true
	}
	for _, id := range ids {
		i, ok := crashIndex(id)
		require.True(t, ok, id)
		got, err := s.Snapshot(id)
		require.NoError(t, err, id)
		require.Equal(t, crashScan(i), got, id)
		require.True(t, changed[id], "change of %s", id)
		require.True(t, queued[id], "outbox entry of %s", id)
	}
	// Atomicity: every stored scan, reported or not, came with its change.
	scans, err := s.Scans("crash", 0)
	require.NoError(t, err)
	for _, sc := range scans {
		require.True(t, changed[sc.ID], "scan %s stored without its change", sc.ID)
		require.True(t, queued[sc.ID], "scan %s stored without its outbox entry", sc.ID)
	}
	if len(scans) > 0 {
		st, err := s.DiffState("crash")
		require.NoError(t, err)
		require.Equal(t, scans[0].ID, string(st), "diff state of the last commit")
	}
}
