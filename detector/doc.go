// Package detector owns pulse's failure detectors: pure functions of the
// arrival history and the present instant that decide when a silent instance
// is really gone. It holds pulse's own Adaptive detector (the default), the
// baselines it is measured against (Fixed, SeedFix, PhiNormal,
// PhiExponential), the PauseLedger that keeps the judge's own pauses from
// condemning everyone, and the QoS metrics of Chen, Toueg and Aguilera.
//
// Time is always passed in as a monotonic offset (now time.Duration) from an
// epoch the caller chooses: nothing here reads a clock, sleeps, does I/O or
// starts a goroutine, so the same code runs in the monitor, the simulator and
// tests. See docs/detectors.md for the design and the measurements.
package detector
