// Package testnet holds the loopback servers that the tests of several
// packages share.
package testnet

import (
	"net"
	"sync"
	"testing"
	"time"
)

// connLimit bounds how long a served connection may stay open.
const connLimit = 20 * time.Second

// Serve accepts on l until the test ends and hands each connection to fn
// in a goroutine of its own, closing it when fn returns; a connection gets
// a deadline connLimit ahead. It returns l's port. When the test ends, l
// is closed and Serve waits for every handler.
func Serve(t testing.TB, l net.Listener, fn func(net.Conn)) uint16 {
	t.Helper()
	var wg sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(connLimit))
				fn(c)
			}()
		}
	}()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}
