package main

import (
	"log/slog"
	"os"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
)

// notifier tells systemd the daemon's state (sd_notify): READY=1,
// RELOADING=1, STOPPING=1 and watchdog pings. All of vxland's systemd
// integration is here; the supervisor decides when. Without NOTIFY_SOCKET
// (not started by systemd, or not Type=notify) it does nothing.
type notifier struct {
	log    *slog.Logger
	on     bool
	failed bool // a send failed and was logged: log only the first
}

func newNotifier(log *slog.Logger) *notifier {
	return &notifier{log: log, on: os.Getenv("NOTIFY_SOCKET") != ""}
}

func (n *notifier) send(state string) {
	if !n.on {
		return
	}
	if _, err := sd.SdNotify(false, state); err != nil && !n.failed {
		n.failed = true
		n.log.Warn("telling systemd the daemon's state failed", "state", state, "err", err)
	}
}

func (n *notifier) ready()    { n.send(sd.SdNotifyReady) }
func (n *notifier) stopping() { n.send(sd.SdNotifyStopping) }

// reloading carries the monotonic time, which Type=notify-reload requires.
func (n *notifier) reloading() {
	n.send(sd.SdNotifyReloading + "\n" + sd.SdNotifyMonotonicUsec())
}

func (n *notifier) watchdog() { n.send(sd.SdNotifyWatchdog) }

// watchdogPeriod is how often to ping systemd's watchdog: half of
// WatchdogSec, as sd_watchdog_enabled(3) advises; 0 when it is off.
func (n *notifier) watchdogPeriod() time.Duration {
	if !n.on {
		return 0
	}
	d, err := sd.SdWatchdogEnabled(false)
	if err != nil {
		n.log.Warn("systemd watchdog ignored", "err", err)
		return 0
	}
	return d / 2
}
