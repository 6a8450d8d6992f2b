package service

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/internal/lab"
	"github.com/exposure-monitor/exposure/scanner/netif"
	"github.com/exposure-monitor/exposure/snapshot"
)

// labKey is one port of a lab host over one address family.
type labKey struct {
	port uint16
	v6   bool
}

// smb reports whether k is one of Samba's ports.
func (k labKey) smb() bool { return k.port == 139 || k.port == 445 }

// labDetector is a detector bound to h's lab interface with the default
// intensity and a 10 s timeout per port, as the daemon-group tests use.
// startGroup starts every daemon of group on a new lab host of its own.
func startGroup(t *testing.T, host string, group []lab.Daemon) *lab.Host {
	t.Helper()
	h := lab.New(t).AddHost(host)
	names := make([]string, 0, len(group))
	for _, d := range group {
		names = append(names, d.Name)
	}
	lab.Start(t, h, names...)
	return h
}

func labDetector(t *testing.T, h *lab.Host) *Detector {
	t.Helper()
	bind, err := netif.New(h.Lab().Interface())
	require.NoError(t, err)
	d, err := New(Options{Intensity: DefaultIntensity, Timeout: 10 * time.Second, Bind: bind})
	require.NoError(t, err)
	return d
}

// detectOne detects k on h; an error fails the test and gives nil.
func detectOne(ctx context.Context, t *testing.T, d *Detector, h *lab.Host, k labKey) *snapshot.Service {
	addr := h.Addr()
	if k.v6 {
		addr = h.Addr6()
	}
	s, err := d.Detect(ctx, addr, k.port)
	if err != nil {
		t.Errorf("port %d (v6 %v): %v", k.port, k.v6, err)
		return nil
	}
	return s
}

// detectBoth detects every port of wants over IPv4 and IPv6 at once, each
// after delay(k) (nil: none), and logs what it found.
func detectBoth[W any](ctx context.Context, t *testing.T, d *Detector, h *lab.Host, wants map[uint16]W, delay func(labKey) time.Duration) map[labKey]*snapshot.Service {
	var (
		mu  sync.Mutex
		got = map[labKey]*snapshot.Service{}
		wg  sync.WaitGroup
	)
	for port := range wants {
		for _, v6 := range []bool{false, true} {
			k := labKey{port, v6}
			wg.Add(1)
			go func() {
				defer wg.Done()
				if delay != nil {
					time.Sleep(delay(k))
				}
				if s := detectOne(ctx, t, d, h, k); s != nil {
					mu.Lock()
					got[k] = s
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	for k, g := range got {
		t.Logf("%5d v6=%-5v %s %q %q %q %v", k.port, k.v6, g.FullName(), g.Product, g.Version, g.Info, g.CPE)
	}
	require.Len(t, got, 2*len(wants))
	return got
}

// requireService checks g's name, product, version and tunnel against w.
func requireService(t *testing.T, k labKey, w, g *snapshot.Service) {
	t.Helper()
	require.Equal(t, w.Name, g.Name, "port %d v6 %v", k.port, k.v6)
	require.Equal(t, w.Product, g.Product, "port %d v6 %v", k.port, k.v6)
	require.Equal(t, w.Version, g.Version, "port %d v6 %v", k.port, k.v6)
	require.Equal(t, w.Tunnel, g.Tunnel, "port %d v6 %v", k.port, k.v6)
}
