package alert

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/exposure-monitor/exposure/snapshot"
)

var t0 = time.Date(2026, 11, 25, 6, 0, 0, 0, time.UTC)

// TestSeverityMapping checks that alerts take their names, severities and
// sorts from snapshot's kinds table (whose values the README pins, see
// snapshot.TestReadmeKindTable), and the fallback for an unknown kind.
func TestSeverityMapping(t *testing.T) {
	for _, k := range snapshot.Kinds() {
		require.Equal(t, k.AlertName, AlertName(k.Kind), k.Kind)
		require.Equal(t, k.Severity, SeverityOf(k.Kind), k.Kind)
		require.Equal(t, k.Condition, IsCondition(k.Kind), k.Kind)
		require.True(t, KnownKind(k.Kind), k.Kind)
	}
	require.Equal(t, snapshot.SeverityCritical, SeverityOf(snapshot.ForbiddenOpen))
	require.Equal(t, "ExposureChange", AlertName("something_new"))
	require.Equal(t, snapshot.SeverityWarning, SeverityOf("something_new"))
	require.False(t, IsCondition("something_new"))
	for _, s := range []string{"info", "warning", "critical"} {
		got, err := ParseSeverity(s)
		require.NoError(t, err)
		require.Equal(t, s, got.String())
	}
	_, err := ParseSeverity("fatal")
	require.EqualError(t, err, `parse severity "fatal": want info, warning or critical`)
}

func TestRouteMatch(t *testing.T) {
	all := Route{}
	dmzOnly := Route{Targets: []string{"dmz"}}
	opened := Route{Kinds: []snapshot.Kind{snapshot.PortOpened, snapshot.ForbiddenOpen}}
	warn := Route{MinSeverity: snapshot.SeverityWarning}
	crit := Route{MinSeverity: snapshot.SeverityCritical, Targets: []string{"dmz", "lan"}}
	tests := []struct {
		route  Route
		target string
		kind   snapshot.Kind
		want   bool
	}{
		{all, "dmz", snapshot.PortOpened, true},
		{all, "lan", snapshot.ScanFailing, true},
		{dmzOnly, "dmz", snapshot.PortClosed, true},
		{dmzOnly, "lan", snapshot.PortClosed, false},
		{dmzOnly, "dmz2", snapshot.ForbiddenOpen, false},
		{opened, "any", snapshot.PortOpened, true},
		{opened, "any", snapshot.ForbiddenOpen, true},
		{opened, "any", snapshot.PortClosed, false},
		{opened, "any", snapshot.UnexpectedOpen, false},
		{warn, "dmz", snapshot.PortOpened, false},
		{warn, "dmz", snapshot.VersionChanged, false},
		{warn, "dmz", snapshot.UnexpectedOpen, true},
		{warn, "dmz", snapshot.HostDownKind, true},
		{warn, "dmz", snapshot.ScanFailing, true},
		{warn, "dmz", snapshot.ForbiddenOpen, true},
		{crit, "dmz", snapshot.UnexpectedOpen, false},
		{crit, "dmz", snapshot.ForbiddenOpen, true},
		{crit, "lan", snapshot.ForbiddenOpen, true},
		{crit, "wan", snapshot.ForbiddenOpen, false},
	}
	for _, tt := range tests {
		require.Equal(t, tt.want, tt.route.Match(tt.target, tt.kind), "%+v %s %s", tt.route, tt.target, tt.kind)
	}
	require.NoError(t, crit.Validate())
	require.EqualError(t, Route{Kinds: []snapshot.Kind{"port_open"}}.Validate(), `route kinds: unknown kind "port_open"`)
	require.Error(t, Route{MinSeverity: 7}.Validate())

	r, err := NewRoute([]string{"dmz"}, []string{"forbidden_open", "scan_failing"}, "warning")
	require.NoError(t, err)
	require.Equal(t, Route{Targets: []string{"dmz"}, Kinds: []snapshot.Kind{snapshot.ForbiddenOpen, snapshot.ScanFailing}, MinSeverity: snapshot.SeverityWarning}, r)
	_, err = NewRoute(nil, nil, "urgent")
	require.EqualError(t, err, `route min_severity: parse severity "urgent": want info, warning or critical`)
	_, err = NewRoute(nil, []string{"port_open"}, "")
	require.EqualError(t, err, `route kinds: unknown kind "port_open"`)
}

func forbidden(port uint16) snapshot.Change {
	return snapshot.Change{Kind: snapshot.ForbiddenOpen, Target: "dmz", Address: "198.18.0.2", Port: port, Protocol: "tcp",
		After: &snapshot.Port{Port: port, Protocol: "tcp", State: "open"}, FirstSeen: t0}
}

var (
	amReceiver   = Receiver{Name: "am", Type: ReceiverAlertmanager}
	hookReceiver = Receiver{Name: "hook", Type: ReceiverWebhook}
)

func planInput(now time.Time, prev []snapshot.Change, conds ...snapshot.Change) PlanInput {
	return PlanInput{
		Target: "dmz", Labels: map[string]string{"env": "prod"},
		SnapshotID: snapshot.NewID("dmz", now), Now: now, Complete: true,
		Conditions: conds, Previous: prev,
		Validity: 45 * time.Minute, Receivers: []Receiver{amReceiver, hookReceiver},
	}
}

func entryFor(t *testing.T, res PlanResult, receiver string) (Entry, bool) {
	t.Helper()
	for _, e := range res.Entries {
		if e.Receiver == receiver {
			return e, true
		}
	}
	return Entry{}, false
}

func amAlerts(t *testing.T, res PlanResult) []model.Alert {
	t.Helper()
	e, ok := entryFor(t, res, "am")
	if !ok {
		return nil
	}
	var alerts []model.Alert
	require.NoError(t, json.Unmarshal(e.Body, &alerts))
	for _, a := range alerts {
		require.NoError(t, a.Validate())
	}
	return alerts
}

func hookPayload(t *testing.T, res PlanResult) (WebhookPayload, bool) {
	t.Helper()
	e, ok := entryFor(t, res, "hook")
	if !ok {
		return WebhookPayload{}, false
	}
	var p WebhookPayload
	require.NoError(t, json.Unmarshal(e.Body, &p))
	return p, true
}

// TestPlanConditionLifecycle follows a forbidden port over four scans: it
// fires, keeps firing (re-sent with the same start), and is resolved once.
func TestPlanConditionLifecycle(t *testing.T) {
	t1, t2, t3, t4 := t0, t0.Add(15*time.Minute), t0.Add(30*time.Minute), t0.Add(45*time.Minute)

	// Scan 1: fires.
	r1 := Plan(planInput(t1, nil, forbidden(3389)))
	alerts := amAlerts(t, r1)
	require.Len(t, alerts, 1)
	a := alerts[0]
	require.Equal(t, model.LabelSet{
		"alertname": "ExposureForbiddenPort", "target": "dmz", "address": "198.18.0.2", "port": "3389",
		"protocol": "tcp", "severity": "critical", "env": "prod",
	}, a.Labels)
	require.Equal(t, t1, a.StartsAt)
	require.Equal(t, t1.Add(45*time.Minute), a.EndsAt)
	require.Equal(t, "Forbidden port 3389/tcp on 198.18.0.2 is open (target dmz)", string(a.Annotations["summary"]))
	require.Contains(t, string(a.Annotations["description"]), "First seen: 2026-11-25T06:00:00Z")
	p, ok := hookPayload(t, r1)
	require.True(t, ok)
	require.Len(t, p.Changes, 1)
	require.Equal(t, snapshot.ForbiddenOpen, p.Changes[0].Kind)
	require.Empty(t, p.Resolved)
	require.Len(t, r1.Firing, 1)
	require.Equal(t, t1, r1.Firing[0].At)

	// Scan 2: still open. Re-sent to Alertmanager with the original start
	// and a new end; nothing new for the webhook.
	r2 := Plan(planInput(t2, r1.Firing, forbidden(3389)))
	alerts = amAlerts(t, r2)
	require.Len(t, alerts, 1)
	require.Equal(t, t1, alerts[0].StartsAt)
	require.Equal(t, t2.Add(45*time.Minute), alerts[0].EndsAt)
	require.Equal(t, a.Labels, alerts[0].Labels, "same labels: the same alert in Alertmanager")
	_, ok = hookPayload(t, r2)
	require.False(t, ok, "a condition that keeps holding is not repeated to webhooks")

	// Scan 3: closed. Resolved (endsAt = now) once.
	r3 := Plan(planInput(t3, r2.Firing))
	alerts = amAlerts(t, r3)
	require.Len(t, alerts, 1)
	require.Equal(t, a.Labels, alerts[0].Labels)
	require.Equal(t, t1, alerts[0].StartsAt)
	require.Equal(t, t3, alerts[0].EndsAt)
	p, ok = hookPayload(t, r3)
	require.True(t, ok)
	require.Empty(t, p.Changes)
	require.NotNil(t, p.Changes, `"changes": [] rather than null`)
	require.Len(t, p.Resolved, 1)
	require.Empty(t, r3.Firing)

	// Scan 4: still closed. Nothing at all.
	r4 := Plan(planInput(t4, r3.Firing))
	require.Empty(t, r4.Entries)
}

func TestPlanIncompleteScanResolvesNothing(t *testing.T) {
	r1 := Plan(planInput(t0, nil, forbidden(23), forbidden(445)))
	require.Len(t, r1.Firing, 2)
	failing := snapshot.Change{Kind: snapshot.ScanFailing, Detail: "interface gone\x1b[31m"}
	in := planInput(t0.Add(time.Hour), r1.Firing, failing)
	in.Complete = false
	r2 := Plan(in)
	alerts := amAlerts(t, r2)
	require.Len(t, alerts, 3)
	for _, a := range alerts {
		require.True(t, a.EndsAt.After(in.Now), "%s must keep firing", a.Labels["alertname"])
	}
	require.Equal(t, model.LabelValue("ExposureScanFailing"), alerts[2].Labels["alertname"])
	require.Equal(t, model.LabelSet{"alertname": "ExposureScanFailing", "target": "dmz", "severity": "warning", "env": "prod"}, alerts[2].Labels)
	require.Equal(t, "Scans of target dmz are failing: interface gone [31m", string(alerts[2].Annotations["summary"]), "control characters stripped")

	// The next complete scan finds 445 closed: 445 and the scan failure
	// resolve, 23 keeps firing.
	r3 := Plan(planInput(t0.Add(2*time.Hour), r2.Firing, forbidden(23)))
	alerts = amAlerts(t, r3)
	require.Len(t, alerts, 3)
	ends := map[string]time.Time{}
	for _, a := range alerts {
		ends[string(a.Labels["alertname"])+"/"+string(a.Labels["port"])] = a.EndsAt
	}
	now := t0.Add(2 * time.Hour)
	require.Equal(t, map[string]time.Time{
		"ExposureForbiddenPort/23":  now.Add(45 * time.Minute),
		"ExposureForbiddenPort/445": now,
		"ExposureScanFailing/":      now,
	}, ends)
}

func TestPlanHostDown(t *testing.T) {
	down := snapshot.Change{Kind: snapshot.HostDownKind, Target: "dmz", Address: "198.18.0.9", At: t0}
	// The diff reports host_down once, as a change.
	in := planInput(t0, nil)
	in.Changes = []snapshot.Change{down}
	r1 := Plan(in)
	require.Len(t, r1.Firing, 1)
	alerts := amAlerts(t, r1)
	require.Len(t, alerts, 1)
	require.Equal(t, model.LabelValue("ExposureHostDown"), alerts[0].Labels["alertname"])
	require.NotContains(t, alerts[0].Labels, model.LabelName("port"))

	// Next scan: no change, the host is still absent: still firing.
	in = planInput(t0.Add(time.Hour), r1.Firing)
	in.Snapshot = &snapshot.Snapshot{Complete: true, Hosts: []snapshot.Host{{Address: "198.18.0.2", State: snapshot.HostUp}}}
	r2 := Plan(in)
	require.Len(t, r2.Firing, 1)
	alerts = amAlerts(t, r2)
	require.Len(t, alerts, 1)
	require.Equal(t, t0, alerts[0].StartsAt)
	require.True(t, alerts[0].EndsAt.After(in.Now))

	// The host answers again: resolved.
	in = planInput(t0.Add(2*time.Hour), r2.Firing)
	in.Snapshot = &snapshot.Snapshot{Complete: true, Hosts: []snapshot.Host{{Address: "198.18.0.9", State: snapshot.HostUp}}}
	r3 := Plan(in)
	require.Empty(t, r3.Firing)
	alerts = amAlerts(t, r3)
	require.Len(t, alerts, 1)
	require.Equal(t, in.Now, alerts[0].EndsAt)

	// Same through a host_up change without a snapshot.
	in = planInput(t0.Add(2*time.Hour), r2.Firing)
	in.Changes = []snapshot.Change{{Kind: snapshot.HostUpKind, Target: "dmz", Address: "198.18.0.9", At: in.Now}}
	r3 = Plan(in)
	require.Empty(t, r3.Firing)
	alerts = amAlerts(t, r3)
	require.Len(t, alerts, 2, "the host_up event and the resolution")
}

func TestPlanEvents(t *testing.T) {
	at := t0.Add(3 * time.Minute)
	before := &snapshot.Port{Port: 22, Protocol: "tcp", State: "open", Service: &snapshot.Service{Name: "ssh", Product: "OpenSSH", Version: "9.2p1"}}
	after := &snapshot.Port{Port: 22, Protocol: "tcp", State: "open", Service: &snapshot.Service{Name: "ssh", Product: "OpenSSH", Version: "9.6p1", Info: "protocol 2.0"}}
	in := planInput(t0.Add(5*time.Minute), nil)
	in.EventLifetime = 2 * time.Hour
	in.Changes = []snapshot.Change{
		{Kind: snapshot.PortOpened, Target: "dmz", Address: "198.18.0.2", Port: 4444, Protocol: "tcp", At: at, After: &snapshot.Port{Port: 4444, Protocol: "tcp", State: "open"}},
		{Kind: snapshot.VersionChanged, Target: "dmz", Address: "198.18.0.2", Port: 22, Protocol: "tcp", At: at, Before: before, After: after, FirstSeen: t0.Add(-48 * time.Hour)},
		{Kind: snapshot.PortClosed, Target: "dmz", Address: "198.18.0.3", Port: 80, Protocol: "tcp", At: at},
	}
	res := Plan(in)
	require.Empty(t, res.Firing, "events are not conditions")
	alerts := amAlerts(t, res)
	require.Len(t, alerts, 3)
	for _, a := range alerts {
		require.Equal(t, at, a.StartsAt)
		require.Equal(t, at.Add(2*time.Hour), a.EndsAt)
		require.Equal(t, model.LabelValue("info"), a.Labels["severity"])
	}
	require.Equal(t, model.LabelValue("ExposurePortOpened"), alerts[0].Labels["alertname"])
	require.Equal(t, model.LabelValue("ExposureServiceVersionChanged"), alerts[1].Labels["alertname"])
	require.Equal(t, model.LabelValue("ExposurePortClosed"), alerts[2].Labels["alertname"])
	require.Equal(t, "Service on 22/tcp on 198.18.0.2 changed: ssh OpenSSH 9.2p1 -> ssh OpenSSH 9.6p1 (protocol 2.0) (target dmz)", string(alerts[1].Annotations["summary"]))
	desc := string(alerts[1].Annotations["description"])
	require.Contains(t, desc, "Before: ssh OpenSSH 9.2p1.")
	require.Contains(t, desc, "After: ssh OpenSSH 9.6p1 (protocol 2.0).")
	require.Contains(t, desc, "First seen: 2026-11-23T06:00:00Z.")

	p, ok := hookPayload(t, res)
	require.True(t, ok)
	require.Len(t, p.Changes, 3)
	require.Equal(t, 1, p.Version)
	require.Equal(t, in.SnapshotID, p.Snapshot)

	// Default lifetime, and a receiver's own.
	in.EventLifetime = 0
	alerts = amAlerts(t, Plan(in))
	require.Equal(t, at.Add(DefaultEventLifetime), alerts[0].EndsAt)
	in.Receivers = []Receiver{{Name: "am", Type: ReceiverAlertmanager, EventLifetime: 10 * time.Minute}}
	alerts = amAlerts(t, Plan(in))
	require.Equal(t, at.Add(10*time.Minute), alerts[0].EndsAt)
}

func TestPlanLabelsSanitised(t *testing.T) {
	in := planInput(t0, nil, forbidden(23))
	in.Labels = map[string]string{
		"team":      "net\x00work\nops",
		"long":      strings.Repeat("é", 400),
		"severity":  "low", // reserved: cannot override
		"alertname": "Other",
		"bad-name":  "x",
		"__meta":    "hidden",
		"empty":     "\x01\x02",
	}
	alerts := amAlerts(t, Plan(in))
	require.Len(t, alerts, 1)
	ls := alerts[0].Labels
	require.Equal(t, model.LabelValue("net work ops"), ls["team"])
	require.LessOrEqual(t, len(ls["long"]), maxLabelLen)
	require.True(t, strings.HasSuffix(string(ls["long"]), "é..."))
	require.Equal(t, model.LabelValue("critical"), ls["severity"])
	require.Equal(t, model.LabelValue("ExposureForbiddenPort"), ls["alertname"])
	require.Equal(t, model.LabelValue("x"), ls["bad_name"])
	require.NotContains(t, ls, model.LabelName("__meta"))
	require.NotContains(t, ls, model.LabelName("empty"))

	banner := forbidden(21)
	banner.After.Service = &snapshot.Service{Name: "ftp", Product: "Evil\x1b]0;pwned\x07FTPd " + strings.Repeat("A", 5000)}
	in = planInput(t0, nil, banner)
	alerts = amAlerts(t, Plan(in))
	desc := string(alerts[0].Annotations["description"])
	require.NotContains(t, desc, "\x1b")
	require.NotContains(t, desc, "\x07")
	require.LessOrEqual(t, len(desc), maxAnnotationLen+3)
}

func TestPlanRoutingPerReceiver(t *testing.T) {
	in := planInput(t0, nil, forbidden(3389), snapshot.Change{Kind: snapshot.UnexpectedOpen, Target: "dmz", Address: "198.18.0.2", Port: 8080, Protocol: "tcp"})
	in.Changes = []snapshot.Change{{Kind: snapshot.PortOpened, Target: "dmz", Address: "198.18.0.2", Port: 8080, Protocol: "tcp", At: t0}}
	in.Receivers = []Receiver{
		{Name: "am", Type: ReceiverAlertmanager, Route: Route{MinSeverity: snapshot.SeverityCritical}},
		{Name: "hook", Type: ReceiverWebhook, Route: Route{Kinds: []snapshot.Kind{snapshot.PortOpened}}},
		{Name: "log", Type: ReceiverLog},
		{Name: "other", Type: ReceiverWebhook, Route: Route{Targets: []string{"lan"}}},
	}
	res := Plan(in)
	require.Len(t, res.Entries, 3, "nothing for a receiver with nothing routed")
	alerts := amAlerts(t, res)
	require.Len(t, alerts, 1)
	require.Equal(t, model.LabelValue("ExposureForbiddenPort"), alerts[0].Labels["alertname"])
	p, _ := hookPayload(t, res)
	require.Len(t, p.Changes, 1)
	require.Equal(t, snapshot.PortOpened, p.Changes[0].Kind)
	e, ok := entryFor(t, res, "log")
	require.True(t, ok)
	var lp WebhookPayload
	require.NoError(t, json.Unmarshal(e.Body, &lp))
	require.Len(t, lp.Changes, 3)
	require.Len(t, res.Firing, 2, "routing does not change what fires")
}

func TestPlanKeys(t *testing.T) {
	in := planInput(t0, nil, forbidden(23))
	a, b := Plan(in), Plan(in)
	require.Equal(t, a.Entries, b.Entries, "re-planning the same scan gives the same keys and bodies")
	require.NotEqual(t, a.Entries[0].Key, a.Entries[1].Key, "one key per receiver")
	later := planInput(t0.Add(time.Second), nil, forbidden(23))
	c := Plan(later)
	for i := range a.Entries {
		require.Less(t, a.Entries[i].Key, c.Entries[i].Key, "keys sort chronologically")
		require.Equal(t, t0, a.Entries[i].Created)
		require.Equal(t, t0, a.Entries[i].NextAttempt)
		require.Zero(t, a.Entries[i].Attempts)
	}
	require.Regexp(t, `^[0-9a-f]{16}-[0-9a-f]{32}$`, a.Entries[0].Key)
	require.Equal(t, 45*time.Minute, Validity(15*time.Minute))
	require.Equal(t, 5*time.Minute, Validity(10*time.Second))
}

// TestReservedLabelsNotOverridden: a target label with a reserved name
// (snapshot.ReservedLabels, the list config also refuses) never reaches an
// alert, even when the caller did not validate it.
func TestReservedLabelsNotOverridden(t *testing.T) {
	in := &PlanInput{Labels: map[string]string{"env": "prod"}}
	for _, name := range snapshot.ReservedLabels() {
		in.Labels[name] = "from-target"
	}
	a := in.alert(snapshot.Change{Kind: snapshot.PortOpened, Target: "dmz", Address: "198.18.0.2", Port: 22, Protocol: "tcp"}, t0, t0)
	require.Equal(t, model.LabelSet{"alertname": "ExposurePortOpened", "target": "dmz", "address": "198.18.0.2",
		"port": "22", "protocol": "tcp", "severity": "info", "env": "prod"}, a.Labels)
}
