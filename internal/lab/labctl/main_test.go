package main

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/internal/lab"
)

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		o       options
		wantErr string
	}{
		{options{hosts: 1}, ""},
		{options{hosts: 509, loss: 0.5}, ""},
		{options{hosts: 0}, "--hosts 0: want 1..509"},
		{options{hosts: 510}, "--hosts 510: want 1..509"},
		{options{hosts: 1, loss: 1}, "--loss 1: want 0 <= P < 1"},
	}
	for _, tt := range tests {
		err := tt.o.validate()
		if tt.wantErr == "" {
			require.NoError(t, err)
		} else {
			require.EqualError(t, err, tt.wantErr)
		}
	}
}

func TestLabctlUp(t *testing.T) {
	lab.Require(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	o := options{hosts: 3, openPorts: "8080,rand:2", seed: 5, banner: "hello\n"}
	go func() {
		done <- run(ctx, o, pw, slog.New(slog.NewTextHandler(io.Discard, nil)))
		pw.Close()
	}()
	line, err := bufio.NewReader(pr).ReadString('\n')
	require.NoError(t, err)
	go func() { _, _ = io.Copy(io.Discard, pr) }()
	var out Output
	require.NoError(t, json.Unmarshal([]byte(line), &out))
	require.Len(t, out.Hosts, 3)
	plan, err := lab.ParsePortPlan(o.openPorts)
	require.NoError(t, err)
	for i, h := range out.Hosts {
		require.True(t, out.Prefix.Contains(h.Addr))
		require.Equal(t, plan.Ports(5, i), h.Open, "host %d", i)
		require.Contains(t, h.Open, uint16(8080))
		for _, p := range h.Open {
			c, err := net.DialTimeout("tcp", netip.AddrPortFrom(h.Addr6, p).String(), 2*time.Second)
			require.NoError(t, err)
			require.NoError(t, c.SetReadDeadline(time.Now().Add(2*time.Second)))
			b, err := io.ReadAll(c)
			require.NoError(t, err)
			require.Equal(t, "hello\n", string(b))
			c.Close()
		}
		_, err := net.DialTimeout("tcp", netip.AddrPortFrom(h.Addr, 1).String(), 2*time.Second)
		require.ErrorIs(t, err, syscall.ECONNREFUSED)
	}

	// Identify the lab's kernel objects by inode and index, not name: another
	// test process may reuse the freed block at once.
	nsInodes := map[uint64]bool{}
	for _, h := range out.Hosts {
		var st syscall.Stat_t
		require.NoError(t, syscall.Stat("/run/netns/"+out.Bridge+"-"+h.Name, &st))
		nsInodes[st.Ino] = true
	}
	bridge, err := net.InterfaceByName(out.Bridge)
	require.NoError(t, err)

	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(time.Minute):
		t.Fatal("labctl did not tear down")
	}
	for _, h := range out.Hosts {
		var st syscall.Stat_t
		if syscall.Stat("/run/netns/"+out.Bridge+"-"+h.Name, &st) == nil {
			require.False(t, nsInodes[st.Ino], "namespace of %s removed", h.Name)
		}
	}
	if b, err := net.InterfaceByName(out.Bridge); err == nil {
		require.NotEqual(t, bridge.Index, b.Index, "bridge removed")
	}
}
