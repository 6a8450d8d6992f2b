package config

import (
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// NewCronParser returns the parser config validates schedules with. The
// scheduler must use the same one (cron.New(cron.WithParser(NewCronParser())))
// so a schedule that passes check-config is exactly one the daemon runs:
// five fields (minute to day of week), descriptors such as @hourly and
// "@every 10m", and a CRON_TZ=Zone prefix. Without CRON_TZ the daemon's
// local time zone applies. Prefer ParseSchedule, which also guards against
// the parser's crash on a bare "CRON_TZ=Zone".
func NewCronParser() cron.Parser {
	return cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)
}

// ParseSchedule parses spec with NewCronParser's parser and the checks
// config adds: an @every interval of at least one second, and a schedule
// that fires at all. Errors are short reasons, without the spec.
func ParseSchedule(spec string) (sched cron.Schedule, err error) {
	if strings.TrimSpace(spec) == "" {
		return nil, fmt.Errorf("schedule is required")
	}
	if strings.HasPrefix(spec, "TZ=") || strings.HasPrefix(spec, "CRON_TZ=") {
		// robfig/cron v3.0.1 slices out of range when nothing follows the zone.
		if !strings.Contains(spec, " ") {
			return nil, fmt.Errorf("time zone must be followed by a space and a schedule")
		}
	}
	defer func() { // the parser has crashed on odd input before; never take the daemon down
		if r := recover(); r != nil {
			sched, err = nil, fmt.Errorf("unparsable schedule")
		}
	}()
	sched, err = NewCronParser().Parse(spec)
	if err != nil {
		return nil, fmt.Errorf("%s", cronReason(err))
	}
	if _, ok := sched.(cron.ConstantDelaySchedule); ok {
		// cron rounds shorter and negative intervals up to one second.
		_, after, _ := strings.Cut(spec, "@every ")
		if d, err := time.ParseDuration(strings.TrimSpace(after)); err != nil || d < time.Second {
			return nil, fmt.Errorf("@every interval must be at least 1s")
		}
		return sched, nil
	}
	// cron gives up after five years without a match (February 30th).
	if sched.Next(time.Now()).IsZero() {
		return nil, fmt.Errorf("never fires")
	}
	return sched, nil
}

// cronReason shortens robfig/cron's messages, which repeat the spec.
func cronReason(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, ": ["); i > 0 && strings.HasSuffix(msg, "]") {
		msg = msg[:i] // "expected exactly 5 fields, found 3: [* * *]"
	}
	return msg
}
