package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestRun(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = io.WriteString(c, "SSH-2.0-OpenSSH_9.6\r\n")
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	port := l.Addr().(*net.TCPAddr).Port
	var out bytes.Buffer
	require.NoError(t, run(&out, strconv.Itoa(port), 7, 2*time.Second, "", "lo", []string{"127.0.0.1"}))
	var r result
	require.NoError(t, json.Unmarshal(out.Bytes(), &r))
	require.Equal(t, uint16(port), r.Port)
	require.Equal(t, "OpenSSH", r.Service.Product)
	require.Equal(t, "9.6", r.Service.Version)

	require.Error(t, run(&out, "", 7, time.Second, "", "", []string{"127.0.0.1"}))
	require.Error(t, run(&out, "x", 7, time.Second, "", "", []string{"127.0.0.1"}))
	require.Error(t, run(&out, "22", 7, time.Second, "", "", []string{"not-an-ip"}))
}
