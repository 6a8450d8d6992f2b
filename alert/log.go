package alert

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"

	"github.com/exposure-monitor/exposure/internal/textsafe"
	"github.com/exposure-monitor/exposure/snapshot"
)

// Log writes every change of an entry as one log line: a receiver for
// setups without Alertmanager, and a record of what was sent.
type Log struct {
	logger *slog.Logger
}

var _ Notifier = (*Log)(nil)

// NewLog returns a log receiver writing to logger.
func NewLog(logger *slog.Logger) *Log {
	return &Log{logger: logger}
}

// Notify logs the changes and resolutions of each entry at a level that
// follows their severity. It never asks for a retry.
func (l *Log) Notify(ctx context.Context, entries ...Entry) (bool, error) {
	for _, e := range entries {
		var p WebhookPayload
		if err := json.Unmarshal(e.Body, &p); err != nil {
			return false, fmt.Errorf("decode outbox entry %s: %w", e.Key, err)
		}
		for _, c := range p.Changes {
			l.log(ctx, level(SeverityOf(c.Kind)), "exposure change", c, e.Key)
		}
		for _, c := range p.Resolved {
			l.log(ctx, slog.LevelInfo, "exposure condition resolved", c, e.Key)
		}
	}
	return false, nil
}

func (l *Log) log(ctx context.Context, lvl slog.Level, msg string, c snapshot.Change, key string) {
	l.logger.Log(ctx, lvl, msg,
		"kind", string(c.Kind), "severity", SeverityOf(c.Kind).String(),
		"target", textsafe.Clean(c.Target, maxLabelLen), "address", textsafe.Clean(c.Address, maxLabelLen),
		"port", c.Port, "summary", textsafe.Clean(Summary(c), maxAnnotationLen), "key", key)
}

func level(s snapshot.Severity) slog.Level {
	switch s {
	case snapshot.SeverityCritical:
		return slog.LevelError
	case snapshot.SeverityWarning:
		return slog.LevelWarn
	}
	return slog.LevelInfo
}
