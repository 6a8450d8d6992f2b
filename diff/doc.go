// Package diff turns two scans of a target into typed changes without
// crying wolf. It is pure: no I/O, no clock; the caller passes the scans,
// the State from the last diff and the target's Policy, and stores the new
// State.
//
// Guards:
//   - The first complete scan is the baseline: only policy verdicts fire.
//   - An incomplete scan never yields port_closed or host_down.
//   - A host that goes down is ONE host_down; its ports stay in the
//     reported view, so its return reports only real port differences.
//   - A host that answers open on more than Policy.AllOpenShare of the
//     probed ports is ONE all_ports_open and its ports are not diffed
//     until it answers on less than half that share; its open ports then
//     become its baseline without port_opened changes.
//   - Port openings and closures are Pending until Confirm re-probes them
//     (n agreeing answers out of m).
//   - A port whose reported state changes Policy.FlapThreshold times
//     within Policy.FlapWindow (config global.flap) is reported that time
//     with Flaps set, then held until it keeps one state for a whole
//     FlapWindow; if that state differs from the last report, it is
//     reported again with the number of folded alternations.
//   - A service detection that is inconclusive (Service.Incomplete, nothing
//     recognised, or the known version gone) changes the reported service
//     only when it holds for WeakScans scans in a row; a first detection
//     that was inconclusive is replaced by the first conclusive one without
//     a change.
//   - Policy verdicts fire when they newly hold; Evaluate lists all that
//     hold now, for alerts that fire while a condition lasts.
//
// Compare is the stateless difference of two stored scans (exposure diff):
// no State, no confirmation, no flap damping.
//
// Version rules compare with dpkg ordering (CompareVersions), which also
// orders semver and OpenSSH-style versions ("9.2p1" < "9.6p1").
package diff
