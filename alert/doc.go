// Package alert turns changes and policy conditions into notifications and
// delivers them through a durable outbox.
//
// # Flow
//
// After each scan the daemon calls Plan, which renders one outbox entry per
// receiver (the exact bytes that will be sent) and returns the set of
// conditions now firing. The daemon writes the entries in the same store
// transaction as the snapshot and changes (store.Commit.Outbox), then calls
// Dispatcher.Wake. A Dispatcher runs one delivery worker per receiver; each
// worker sends that receiver's entries strictly oldest first (a resolution
// never overtakes its alert) and deletes an entry only once the receiver
// accepted it, or refused it for good (any 4xx but 408 and 429), which is
// logged and counted as dropped. 5xx, 408, 429 and network errors are
// retried with exponential backoff and jitter (Retry-After is honoured up to
// the maximum backoff); attempts and the next attempt time live in the
// outbox, so they survive restarts. Delivery is at least once: webhook
// receivers dedup by Idempotency-Key, Alertmanager by label set.
//
// # Alerts
//
// Conditions fire while they hold. Every scan re-sends them with
// endsAt = now + validity (three schedule intervals, see Validity), so
// Alertmanager never times them out between scans, and a condition that
// stopped holding is sent once more with endsAt = now, which resolves it. An
// incomplete or failed scan resolves nothing. Events are sent once with
// startsAt = at and endsAt = at + lifetime (default 1h).
//
// The kinds, their alertnames, sorts and severities are snapshot.Kinds
// (tabled in the README).
//
// Labels are alertname, target, address, port, protocol and severity (empty
// ones omitted) plus the target's labels, which cannot use a reserved name
// (snapshot.ReservedLabels).
// Values are stripped of control characters and cut at 256 bytes.
// Annotations: summary (one line), description (before and after service,
// detail, first seen, snapshot id), kind and snapshot.
//
// # Receivers
//
//   - Alertmanager: POST /api/v2/alerts to every URL of the cluster, with
//     optional basic auth (password_file) or bearer_token_file. An entry is
//     delivered when at least one member accepted it (see Alertmanager).
//   - Webhook: POST {"version": 1, "target", "snapshot", "changes": [...],
//     "resolved": [...]} where changes are the scan's events plus the
//     conditions that started firing, in the `exposure history --format json`
//     shape; headers Idempotency-Key (the outbox key, stable across retries)
//     and, with secret_file, X-Exposure-Signature: sha256=<hex HMAC-SHA256 of
//     the body> (VerifySignature checks one).
//   - Log: one slog line per change or resolution, at a level following the
//     severity.
//
// Routing (Route): a receiver gets what matches its targets, its kinds and
// its minimum severity; empty lists match everything.
//
// # Secrets
//
// Passwords, tokens and HMAC keys are read from their files at every send
// (rotation needs no reload) and never reach a log line or an error: URLs
// are redacted (Alertmanager: user info and query; webhooks: everything
// after the host), anything a receiver echoes is scrubbed, and Secret
// formats and marshals as "<secret>".
package alert
