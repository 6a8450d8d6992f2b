package store

import (
	"bytes"
	"fmt"
	"sort"
	"time"

	bolt "go.etcd.io/bbolt"
)

// OutboxEntry is one notification waiting for its receiver. It stays in the
// store until OutboxAck, so it survives restarts. alert.Entry is this type.
type OutboxEntry struct {
	Receiver string `json:"receiver"`
	// Key identifies the notification across retries (Idempotency-Key);
	// adding an entry whose key exists keeps the existing one.
	Key         string    `json:"key"`
	Created     time.Time `json:"created"`
	Attempts    int       `json:"attempts,omitempty"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	Body        []byte    `json:"body"`
}

func (e *OutboxEntry) validate() error {
	if err := checkName("outbox receiver", e.Receiver); err != nil {
		return err
	}
	if e.Key == "" {
		return fmt.Errorf("store: outbox entry for %s has no key", e.Receiver)
	}
	return nil
}

func putOutbox(tx *bolt.Tx, entries []OutboxEntry) error {
	b := tx.Bucket(bucketOutbox)
	for i := range entries {
		e := &entries[i]
		if err := e.validate(); err != nil {
			return err
		}
		k := outboxKey(e.Receiver, e.Key)
		if b.Get(k) != nil {
			continue
		}
		v, err := encode(e)
		if err != nil {
			return fmt.Errorf("encode outbox entry: %w", err)
		}
		if err := b.Put(k, v); err != nil {
			return fmt.Errorf("put outbox entry: %w", err)
		}
	}
	return nil
}

// OutboxAdd adds entries outside a scan commit (e.g. scan failures). Entries
// whose receiver and key exist already are left as they are.
func (s *Store) OutboxAdd(entries ...OutboxEntry) error {
	if err := s.update(func(tx *bolt.Tx) error { return putOutbox(tx, entries) }); err != nil {
		return fmt.Errorf("store: outbox add: %w", err)
	}
	return nil
}

// OutboxPending returns up to limit entries of receiver (limit <= 0: all),
// ordered by NextAttempt, then Created. Callers skip entries whose
// NextAttempt is in the future.
func (s *Store) OutboxPending(receiver string, limit int) ([]OutboxEntry, error) {
	var out []OutboxEntry
	err := s.view(func(tx *bolt.Tx) error {
		p := prefix(receiver)
		c := tx.Bucket(bucketOutbox).Cursor()
		for k, v := c.Seek(p); k != nil && bytes.HasPrefix(k, p); k, v = c.Next() {
			var e OutboxEntry
			if err := decode(v, &e); err != nil {
				return fmt.Errorf("decode outbox %q: %w", k, err)
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: outbox of %s: %w", receiver, err)
	}
	sort.SliceStable(out, func(i, j int) bool {
		if !out[i].NextAttempt.Equal(out[j].NextAttempt) {
			return out[i].NextAttempt.Before(out[j].NextAttempt)
		}
		return out[i].Created.Before(out[j].Created)
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out, nil
}

// OutboxAck deletes a delivered entry. Acking a missing entry is not an
// error: a retry may have raced with an ack.
func (s *Store) OutboxAck(receiver, key string) error {
	err := s.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOutbox).Delete(outboxKey(receiver, key))
	})
	if err != nil {
		return fmt.Errorf("store: outbox ack %s/%s: %w", receiver, key, err)
	}
	return nil
}

// OutboxRetry stores e's new Attempts and NextAttempt. It returns
// ErrNotFound if the entry was acked meanwhile, and never recreates it.
func (s *Store) OutboxRetry(e OutboxEntry) error {
	if err := e.validate(); err != nil {
		return err
	}
	err := s.update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketOutbox)
		k := outboxKey(e.Receiver, e.Key)
		old := b.Get(k)
		if old == nil {
			return ErrNotFound
		}
		var cur OutboxEntry
		if err := decode(old, &cur); err != nil {
			return fmt.Errorf("decode outbox %q: %w", k, err)
		}
		cur.Attempts, cur.NextAttempt = e.Attempts, e.NextAttempt
		v, err := encode(cur)
		if err != nil {
			return err
		}
		return b.Put(k, v)
	})
	if err != nil {
		return fmt.Errorf("store: outbox retry %s/%s: %w", e.Receiver, e.Key, err)
	}
	return nil
}

// OutboxReceivers counts the entries of every receiver that has any.
func (s *Store) OutboxReceivers() (map[string]int, error) {
	out := map[string]int{}
	err := s.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketOutbox).ForEach(func(k, _ []byte) error {
			receiver, _, ok := bytes.Cut(k, []byte{sep})
			if !ok {
				return fmt.Errorf("outbox key %q: no receiver", k)
			}
			out[string(receiver)]++
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("store: outbox receivers: %w", err)
	}
	return out, nil
}

// OutboxLen counts all entries of all receivers.
func (s *Store) OutboxLen() (int, error) {
	var n int
	err := s.view(func(tx *bolt.Tx) error {
		n = tx.Bucket(bucketOutbox).Stats().KeyN
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("store: outbox length: %w", err)
	}
	return n, nil
}
