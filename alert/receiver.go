package alert

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/exposure-monitor/exposure/config"
	"github.com/exposure-monitor/exposure/snapshot"
)

// receiverKind is everything that differs between receiver kinds: how a
// configured receiver becomes a Notifier, and what bytes it is sent for a
// scan. Each kind's file (alertmanager.go, webhook.go, log.go) holds both.
type receiverKind struct {
	build   func(r *config.Receiver, logger *slog.Logger) (Notifier, error)
	payload func(in *PlanInput, r Receiver, c routed) []byte // nil: nothing to send
}

// routed is what one receiver's route let through of a scan's changes.
type routed struct {
	events, firing, started, resolved []snapshot.Change
}

// receiverKinds is the one table of receiver kinds, keyed by their names
// in the configuration (config.ReceiverKinds; TestReceiverKindsMatchConfig
// keeps the two in step).
var receiverKinds = map[ReceiverType]receiverKind{
	ReceiverAlertmanager: {buildAlertmanager, alertmanagerPayload},
	ReceiverWebhook:      {buildWebhook, webhookPayload},
	ReceiverLog:          {buildLog, webhookPayload},
}

// Build turns the configured receivers into what Plan needs of each and
// the notifiers that deliver to them, by receiver name.
func Build(receivers []*config.Receiver, logger *slog.Logger) ([]Receiver, map[string]Notifier, error) {
	var out []Receiver
	notifiers := map[string]Notifier{}
	for _, r := range receivers {
		ar, n, err := build(r, logger)
		if err != nil {
			return nil, nil, fmt.Errorf("receiver %q: %w", r.Name, err)
		}
		out = append(out, ar)
		notifiers[r.Name] = n
	}
	return out, notifiers, nil
}

func build(r *config.Receiver, logger *slog.Logger) (Receiver, Notifier, error) {
	sev, err := snapshot.ParseSeverity(r.Route.MinSeverity)
	if err != nil {
		return Receiver{}, nil, err
	}
	route := Route{Targets: r.Route.Targets, MinSeverity: sev}
	for _, k := range r.Route.Kinds {
		route.Kinds = append(route.Kinds, snapshot.Kind(k))
	}
	if err := route.Validate(); err != nil {
		return Receiver{}, nil, err
	}
	typ := ReceiverType(r.Type())
	kind, ok := receiverKinds[typ]
	if !ok {
		return Receiver{}, nil, fmt.Errorf("no receiver type set")
	}
	n, err := kind.build(r, logger.With("receiver", r.Name))
	if err != nil {
		return Receiver{}, nil, err
	}
	// Each receiver keeps its own event_lifetime (0: the plan's default).
	return Receiver{Name: r.Name, Type: typ, Route: route, EventLifetime: time.Duration(r.EventLifetime)}, n, nil
}
