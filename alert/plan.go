package alert

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"

	"github.com/exposure-monitor/exposure/config"
	"github.com/exposure-monitor/exposure/snapshot"
)

// ReceiverType says which payload a receiver gets.
type ReceiverType string

// Receiver types, named as in the configuration.
const (
	ReceiverAlertmanager ReceiverType = "alertmanager"
	ReceiverWebhook      ReceiverType = "webhook"
	ReceiverLog          ReceiverType = "log"
)

// Receiver is what Plan needs to know about a receiver.
type Receiver struct {
	Name  string
	Type  ReceiverType
	Route Route
	// EventLifetime overrides PlanInput.EventLifetime for this receiver
	// (config: event_lifetime); zero keeps it.
	EventLifetime time.Duration
}

// Defaults of PlanInput.
const (
	DefaultValidity      = time.Hour
	DefaultEventLifetime = time.Duration(config.DefaultEventLifetime) // the configuration's default
	// minValidity keeps a fast schedule (@every 10s) from producing alerts
	// that time out while a slow scan runs.
	minValidity = 5 * time.Minute
)

// Validity returns how long a firing condition stays valid in Alertmanager
// for a target scanned every interval: three intervals, so that two late or
// failed scans in a row do not resolve it by timeout.
func Validity(interval time.Duration) time.Duration {
	return max(3*interval, minValidity)
}

// PlanInput is everything Plan needs about one finished scan of one target.
type PlanInput struct {
	Target string
	// Labels are the target's labels, added to every alert.
	Labels map[string]string
	// SnapshotID identifies the scan; with the receiver name it makes the
	// entry key, so planning the same scan twice yields the same keys.
	SnapshotID string
	// Now is when the scan finished; it stamps entries and conditions.
	Now time.Time
	// Complete is false when the scan failed or was cut short. Then no
	// condition resolves: what was firing keeps firing, since an incomplete
	// scan proves nothing is gone.
	Complete bool
	// Snapshot, when set, tells whether a host that was down is back.
	Snapshot *snapshot.Snapshot
	// Changes are the events the diff found in this scan. Changes of a
	// condition kind (host_down, forbidden_open, ...) are added to the
	// conditions.
	Changes []snapshot.Change
	// Conditions are all conditions that hold now: diff.Evaluate's verdicts
	// and, while scans fail, a ScanFailing change (Detail = the error).
	Conditions []snapshot.Change
	// Previous is PlanResult.Firing of the previous scan of this target.
	Previous []snapshot.Change
	// Validity is how long a firing alert stays valid in Alertmanager
	// (see Validity); default DefaultValidity.
	Validity time.Duration
	// EventLifetime is how long an event alert lives; default
	// DefaultEventLifetime.
	EventLifetime time.Duration
	// GeneratorURL is the alerts' generatorURL (e.g. the daemon's web page).
	GeneratorURL string
	Receivers    []Receiver
}

// PlanResult is what one scan produces for the outbox.
type PlanResult struct {
	// Entries hold one entry per receiver that has something to send.
	Entries []Entry
	// Firing are the conditions firing after this scan, with At set to when
	// each started; pass them as Previous next time.
	Firing []snapshot.Change
}

// WebhookPayload is the JSON body of webhook and log entries.
type WebhookPayload struct {
	Version  int    `json:"version"`
	Target   string `json:"target"`
	Snapshot string `json:"snapshot,omitempty"`
	// Changes are the scan's events plus the conditions that started firing.
	Changes []snapshot.Change `json:"changes"`
	// Resolved are the conditions that stopped holding.
	Resolved []snapshot.Change `json:"resolved,omitempty"`
}

// Plan turns one scan into outbox entries, one per receiver with something
// routed to it:
//   - Alertmanager receivers get a JSON array of postable alerts: events
//     (startsAt = at, endsAt = at + lifetime), every firing condition
//     (endsAt = now + validity) and the resolved ones (endsAt = now).
//   - Webhook and log receivers get a WebhookPayload with the events, the
//     conditions that started firing, and the resolved ones; a condition that
//     keeps holding is not repeated.
//
// Keys are "<16 hex digits of Now in unix nanos>-<32 hex digits of
// sha256(receiver, snapshot id)>": deterministic, and in byte order they sort
// chronologically, which keeps a store that orders by key delivering in
// order.
func Plan(in PlanInput) PlanResult {
	if in.Validity <= 0 {
		in.Validity = DefaultValidity
	}
	if in.EventLifetime <= 0 {
		in.EventLifetime = DefaultEventLifetime
	}
	var events []snapshot.Change
	current := map[string]snapshot.Change{}
	for _, c := range in.Conditions {
		c.Target = cmp.Or(c.Target, in.Target)
		current[condKey(c)] = c
	}
	for _, c := range in.Changes {
		c.Target = cmp.Or(c.Target, in.Target)
		if IsCondition(c.Kind) {
			if _, ok := current[condKey(c)]; !ok {
				current[condKey(c)] = c
			}
			continue
		}
		events = append(events, c)
	}
	prev := map[string]snapshot.Change{}
	for _, c := range in.Previous {
		prev[condKey(c)] = c
	}
	back := hostsBack(in)
	for k, p := range prev {
		if _, ok := current[k]; ok {
			continue
		}
		// A host stays down until a scan sees it again; a failed scan
		// resolves nothing.
		if !in.Complete || p.Kind == snapshot.HostDownKind && !back[p.Address] {
			current[k] = p
		}
	}
	var firing, started, resolved []snapshot.Change
	for k, c := range current {
		if p, ok := prev[k]; ok {
			c.At = p.At // the condition started then
		} else {
			started = append(started, c)
		}
		if c.At.IsZero() {
			c.At = in.Now
		}
		firing = append(firing, c)
	}
	for k, p := range prev {
		if _, ok := current[k]; !ok {
			resolved = append(resolved, p)
		}
	}
	sortConds(firing)
	sortConds(started)
	sortConds(resolved)

	res := PlanResult{Firing: firing}
	for _, r := range in.Receivers {
		match := func(cs []snapshot.Change) []snapshot.Change {
			var out []snapshot.Change
			for _, c := range cs {
				if r.Route.Match(in.Target, c.Kind) {
					out = append(out, c)
				}
			}
			return out
		}
		kind, ok := receiverKinds[r.Type]
		if !ok {
			panic(fmt.Sprintf("alert: receiver %q has unknown type %q", r.Name, r.Type))
		}
		body := kind.payload(&in, r, routed{events: match(events), firing: match(firing), started: match(started), resolved: match(resolved)})
		if body == nil {
			continue
		}
		res.Entries = append(res.Entries, Entry{
			Receiver:    r.Name,
			Key:         EntryKey(r.Name, in.SnapshotID, in.Now),
			Created:     in.Now,
			NextAttempt: in.Now,
			Body:        body,
		})
	}
	return res
}

// EntryKey returns the outbox key of a receiver's entry for one scan.
func EntryKey(receiver, snapshotID string, now time.Time) string {
	h := sha256.Sum256([]byte(receiver + "\x00" + snapshotID))
	return fmt.Sprintf("%016x-%s", uint64(now.UnixNano()), hex.EncodeToString(h[:16]))
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Only maps with string keys, strings, numbers and times: cannot fail.
		panic(fmt.Sprintf("alert: encode payload: %v", err))
	}
	return b
}

// hostsBack lists the addresses this scan saw up.
func hostsBack(in PlanInput) map[string]bool {
	back := map[string]bool{}
	for _, c := range in.Changes {
		if c.Kind == snapshot.HostUpKind {
			back[c.Address] = true
		}
	}
	if in.Snapshot != nil {
		for _, h := range in.Snapshot.Hosts {
			if h.State == snapshot.HostUp {
				back[h.Address] = true
			}
		}
	}
	return back
}

func condKey(c snapshot.Change) string {
	return strings.Join([]string{string(c.Kind), c.Target, c.Address, strconv.Itoa(int(c.Port)), c.Protocol}, "\x00")
}

func sortConds(cs []snapshot.Change) {
	slices.SortFunc(cs, func(a, b snapshot.Change) int { return strings.Compare(condKey(a), condKey(b)) })
}

// dedupAlerts keeps the last of alerts with the same label set: a
// service_changed and a version_changed of one port map to one alert, and
// Alertmanager would merge them anyway.
func dedupAlerts(alerts []model.Alert) []model.Alert {
	seen := map[model.Fingerprint]int{}
	out := alerts[:0]
	for _, a := range alerts {
		fp := a.Labels.Fingerprint()
		if i, ok := seen[fp]; ok {
			out[i] = a
			continue
		}
		seen[fp] = len(out)
		out = append(out, a)
	}
	return out
}
