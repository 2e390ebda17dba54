// Package fixedinterval defines an analyzer for AP-01 (INC-2023-0891:
// static threshold) and AP-10 (INC-2021-277, INC-2023-166: hard-coded
// interval, heartbeat storm): heartbeat, health and probe functions whose
// interval or timeout is a compile-time constant.
//
// In a function whose name or receiver type name is health-like
// (heartbeat, beat, health, probe, ping, alive, liveness, readiness,
// keepalive…), it reports a constant duration passed to
//
//   - time.NewTicker, time.Tick, (*time.Ticker).Reset, (*time.Timer).Reset
//     — the beat schedule; not reported when the function adds jitter
//     (math/rand, or an identifier named like jitter/splay);
//   - time.NewTimer, time.After, time.AfterFunc, context.WithTimeout, or
//     the Timeout field of an http.Client or net.Dialer literal — a timeout.
//
// time.Sleep and a time.After that only waits (a bare receive or an empty
// select case) are delays such as retry waits, not the schedule: they are
// not reported (on real code they were mostly retry and poll delays).
//
// A fixed interval makes every instance that restarts together beat in
// lockstep and needs a rebuild to change; a fixed timeout drops healthy
// instances in bulk when RTT grows (the seed's gateway: 420 ms RTT against
// a 3 s timeout with a long answer-time tail). A duration that comes from
// a parameter, a field or a variable counts as configured. Test files are
// skipped. Unlike statusonly, the package path does not make a function
// health-like here: in grpc-go's health and keepalive examples that only
// caught demo timeouts of ordinary calls.
//
// Fix: take intervals and timeouts from configuration (reloadable), start
// at a random phase and add jitter to intervals, and derive timeouts from
// measured RTT with a floor and a ceiling (pulse's detector package).
package fixedinterval
