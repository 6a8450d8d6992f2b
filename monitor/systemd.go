package monitor

import (
	"context"
	"fmt"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"golang.org/x/sys/unix"
)

// sd_notify states.
const (
	sdReady     = daemon.SdNotifyReady
	sdReloading = daemon.SdNotifyReloading
	sdStopping  = daemon.SdNotifyStopping
	sdWatchdog  = daemon.SdNotifyWatchdog
)

// watchdog pings systemd at half the WatchdogSec interval, but only while
// the cron loop still answers: a scheduler that hangs gets the daemon
// restarted.
func (d *daemonState) watchdog(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		return
	}
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if !d.sched.alive(interval / 4) {
				d.logger.Error("scheduler does not answer; withholding the watchdog ping")
				continue
			}
			d.notify(sdWatchdog)
		}
	}
}

func (d *daemonState) notify(state string) {
	if err := d.opts.Notify(state); err != nil {
		d.logger.Warn("sd_notify failed", "state", state, "err", err)
	}
}

// reloadingState is RELOADING=1 with the MONOTONIC_USEC that
// Type=notify-reload units require; Type=notify units ignore it.
func reloadingState() string {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return sdReloading
	}
	return fmt.Sprintf("%s\nMONOTONIC_USEC=%d", sdReloading, ts.Nano()/1000)
}
