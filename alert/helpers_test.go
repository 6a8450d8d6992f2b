package alert

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// memOutbox is an in-memory Outbox with the store's contract.
type memOutbox struct {
	mu      sync.Mutex
	entries map[string]map[string]Entry
	acked   []string
	retries int
	lenErr  error
	// reads counts the OutboxPending calls: a test waits on it to know
	// a worker has made its pass over the outbox.
	reads int
}

var _ Outbox = (*memOutbox)(nil)

func newMemOutbox(es ...Entry) *memOutbox {
	o := &memOutbox{entries: map[string]map[string]Entry{}}
	for _, e := range es {
		o.add(e)
	}
	return o
}

func (o *memOutbox) add(e Entry) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.entries[e.Receiver] == nil {
		o.entries[e.Receiver] = map[string]Entry{}
	}
	o.entries[e.Receiver][e.Key] = e
}

func (o *memOutbox) OutboxReceivers() (map[string]int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := map[string]int{}
	for r, es := range o.entries {
		if len(es) > 0 {
			out[r] = len(es)
		}
	}
	return out, nil
}

func (o *memOutbox) OutboxPending(receiver string, limit int) ([]Entry, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.reads++
	var keys []string
	for k := range o.entries[receiver] {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var out []Entry
	for _, k := range keys {
		if limit > 0 && len(out) == limit {
			break
		}
		out = append(out, o.entries[receiver][k])
	}
	return out, nil
}

func (o *memOutbox) OutboxAck(receiver, key string) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.entries[receiver][key]; !ok {
		return errors.New("no such entry")
	}
	delete(o.entries[receiver], key)
	o.acked = append(o.acked, receiver+"/"+key)
	return nil
}

func (o *memOutbox) OutboxRetry(e Entry) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.entries[e.Receiver][e.Key]; !ok {
		return errors.New("no such entry")
	}
	o.entries[e.Receiver][e.Key] = e
	o.retries++
	return nil
}

func (o *memOutbox) OutboxLen() (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.lenErr != nil {
		return 0, o.lenErr
	}
	n := 0
	for _, m := range o.entries {
		n += len(m)
	}
	return n, nil
}

func (o *memOutbox) readCount() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.reads
}

func (o *memOutbox) get(receiver, key string) (Entry, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	e, ok := o.entries[receiver][key]
	return e, ok
}

func (o *memOutbox) ackedKeys() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.acked)
}

// syncBuffer collects log output written from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) count(substr string) int { return strings.Count(s.String(), substr) }

func newTestLogger() (*slog.Logger, *syncBuffer) {
	buf := &syncBuffer{}
	return slog.New(slog.NewTextHandler(buf, &slog.HandlerOptions{Level: slog.LevelDebug})), buf
}

func writeSecret(t *testing.T, value string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "secret")
	require.NoError(t, os.WriteFile(p, []byte(value+"\n"), 0o600))
	return p
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }
