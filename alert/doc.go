// Package alert turns changes and policy conditions into notifications and
// delivers them through a durable outbox.
//
// The flow is: after each scan the daemon calls Plan, which renders one
// outbox entry per receiver (the exact bytes that will be sent) and the set
// of conditions now firing. The daemon writes the entries in the same store
// transaction as the snapshot and changes, then calls Dispatcher.Wake. A
// Dispatcher runs one delivery worker per receiver; each worker sends the
// receiver's entries oldest first through its Notifier and deletes an entry
// only once the receiver accepted it (or refused it for good, which is
// logged and counted). Retryable failures are retried with exponential
// backoff and jitter; the attempt count and the next attempt time are kept in
// the outbox so they survive restarts.
//
// Alerts come in two sorts (DESIGN.md):
//
//   - Conditions (ExposureUnexpectedPort, ExposureForbiddenPort,
//     ExposureExpectedPortMissing, ExposureVersionPolicy, ExposureHostDown,
//     ExposureScanFailing) fire while they hold. Every scan re-sends them with
//     endsAt = now + validity, so Alertmanager never times them out between
//     scans, and a condition that stopped holding is sent once more with
//     endsAt = now, which resolves it.
//   - Events (ExposurePortOpened, ExposurePortClosed,
//     ExposureServiceVersionChanged, ExposureCertChanged, ExposureHostUp,
//     ExposureAllPortsOpen) are sent once with endsAt = at + lifetime.
//
// Secrets (passwords, bearer tokens, webhook HMAC keys) are read from files at
// send time and never reach a log line or an error: URLs are redacted the way
// Alertmanager redacts them and the Secret type formats as "<secret>".
package alert
