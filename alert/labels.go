package alert

import (
	"cmp"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"

	"github.com/exposure-monitor/exposure/internal/textsafe"
	"github.com/exposure-monitor/exposure/snapshot"
)

// maxAnnotationLen bounds the description annotation.
const maxAnnotationLen = 2048

// alert renders one change as a postable Alertmanager alert.
func (in *PlanInput) alert(c snapshot.Change, startsAt, endsAt time.Time) model.Alert {
	ls := model.LabelSet{}
	for k, v := range in.Labels {
		name := labelName(k)
		if name == "" || snapshot.ReservedLabel(name) {
			continue
		}
		if v = textsafe.Clean(v, maxLabelLen); v != "" {
			ls[model.LabelName(name)] = model.LabelValue(v)
		}
	}
	set := func(k, v string) {
		if v = textsafe.Clean(v, maxLabelLen); v != "" {
			ls[model.LabelName(k)] = model.LabelValue(v)
		}
	}
	set("alertname", AlertName(c.Kind))
	set("target", c.Target)
	set("address", c.Address)
	if c.Port != 0 {
		set("port", strconv.Itoa(int(c.Port)))
	}
	set("protocol", c.Protocol)
	set("severity", SeverityOf(c.Kind).String())
	return model.Alert{
		Labels: ls,
		Annotations: model.LabelSet{
			"summary":     model.LabelValue(textsafe.Clean(Summary(c), maxLabelLen)),
			"description": model.LabelValue(textsafe.Clean(description(c), maxAnnotationLen)),
			"kind":        model.LabelValue(textsafe.Clean(string(c.Kind), maxLabelLen)),
			"snapshot":    model.LabelValue(textsafe.Clean(c.Snapshot, maxLabelLen)),
		},
		StartsAt:     startsAt.UTC(),
		EndsAt:       endsAt.UTC(),
		GeneratorURL: in.GeneratorURL,
	}
}

// labelName maps a target label name onto [a-zA-Z_][a-zA-Z0-9_]*; config
// validates names already, this only keeps a bad one from making
// Alertmanager reject the whole batch.
func labelName(k string) string {
	var b strings.Builder
	for i, r := range k {
		ok := r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9'
		if !ok {
			r = '_'
		}
		b.WriteRune(r)
		if b.Len() >= 128 {
			break
		}
	}
	if s := b.String(); strings.HasPrefix(s, "__") {
		return "" // reserved for Alertmanager/Prometheus internals
	}
	return b.String()
}

// Summary is the one-line human text of a change, used as the summary
// annotation and in log lines. It is not sanitised; callers are.
func Summary(c snapshot.Change) string {
	where := c.Address
	if c.Port != 0 {
		where = fmt.Sprintf("%d/%s on %s", c.Port, cmp.Or(c.Protocol, "tcp"), c.Address)
	}
	t := c.Target
	switch c.Kind {
	case snapshot.ForbiddenOpen:
		return fmt.Sprintf("Forbidden port %s is open (target %s)", where, t)
	case snapshot.UnexpectedOpen:
		return fmt.Sprintf("Unexpected open port %s (target %s)", where, t)
	case snapshot.ExpectedMissing:
		return fmt.Sprintf("Expected port %s is not open (target %s)", where, t)
	case snapshot.VersionPolicy:
		return fmt.Sprintf("Version policy broken on %s (target %s): %s", where, t, cmp.Or(c.Detail, describePort(c.After)))
	case snapshot.HostDownKind:
		return fmt.Sprintf("Host %s is down (target %s)", c.Address, t)
	case snapshot.HostUpKind:
		return fmt.Sprintf("Host %s is up (target %s)", c.Address, t)
	case snapshot.ScanFailing:
		return fmt.Sprintf("Scans of target %s are failing: %s", t, cmp.Or(c.Detail, "unknown error"))
	case snapshot.AllPortsOpen:
		return fmt.Sprintf("Host %s answers on every port, likely a SYN proxy or tarpit (target %s)", c.Address, t)
	case snapshot.PortOpened:
		return fmt.Sprintf("Port %s opened (target %s)", where, t)
	case snapshot.PortClosed:
		return fmt.Sprintf("Port %s closed (target %s)", where, t)
	case snapshot.ServiceChanged, snapshot.VersionChanged:
		return fmt.Sprintf("Service on %s changed: %s -> %s (target %s)", where, describePort(c.Before), describePort(c.After), t)
	case snapshot.CertChanged:
		return fmt.Sprintf("TLS certificate on %s changed: %s -> %s (target %s)", where, describeCert(c.Before), describeCert(c.After), t)
	}
	return fmt.Sprintf("%s on %s (target %s)", c.Kind, where, t)
}

func description(c snapshot.Change) string {
	parts := []string{Summary(c) + "."}
	if c.Before != nil {
		parts = append(parts, "Before: "+describePort(c.Before)+".")
	}
	if c.After != nil {
		parts = append(parts, "After: "+describePort(c.After)+".")
	}
	if c.Detail != "" {
		parts = append(parts, "Detail: "+c.Detail+".")
	}
	if !c.FirstSeen.IsZero() {
		parts = append(parts, "First seen: "+c.FirstSeen.UTC().Format(time.RFC3339)+".")
	}
	if c.Flaps > 0 {
		parts = append(parts, fmt.Sprintf("Flapped %d times.", c.Flaps))
	}
	if c.Snapshot != "" {
		parts = append(parts, "Snapshot: "+c.Snapshot+".")
	}
	return strings.Join(parts, " ")
}

// describePort says what ran on a port, e.g. "ssl/http nginx 1.22.1".
func describePort(p *snapshot.Port) string {
	if p == nil {
		return "nothing"
	}
	if p.Service == nil {
		return cmp.Or(p.State, "open") + ", service unknown"
	}
	return cmp.Or(p.Service.Describe(), "service unknown")
}

func describeCert(p *snapshot.Port) string {
	if p == nil || p.Service == nil || p.Service.Cert == nil {
		return "none"
	}
	c := p.Service.Cert
	fp := c.Fingerprint
	if len(fp) > 16 {
		fp = fp[:16]
	}
	return fmt.Sprintf("%s (sha256 %s, expires %s)", c.Subject, fp, c.NotAfter.UTC().Format("2006-01-02"))
}
