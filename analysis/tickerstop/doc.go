// Package tickerstop defines an analyzer for AP-06 (INC-2021-089,
// INC-2022-144: goroutine leak and clock drift): heartbeat loops that
// cannot be stopped.
//
// It reports
//
//   - a time.NewTicker or time.NewTimer whose result is never stopped: no
//     Stop call on the variable anywhere in the function (deferred or in a
//     closure), and the value does not escape to an owner (returned, passed
//     on, stored where another function stops it). A ticker stored in an
//     unexported struct field counts as stopped when the package calls Stop
//     on that field anywhere, e.g. in the owner's Close. A timer whose
//     channel is received outside a select has fired and needs no Stop.
//   - `time.NewTicker(d).C`, which nothing can ever stop;
//   - a time-driven loop with no exit path: `for range ticker.C`, `for range
//     time.Tick(d)`, or a `for { ... }` that receives from a ticker, timer or
//     time.After, with no return, no break or goto out of the loop and no
//     process exit in its body. Such a loop (the seed's startHeartbeat) keeps
//     its goroutine and ticker alive until the process dies and cannot be
//     stopped on shutdown or reconfiguration.
//
// Fix: select on ctx.Done() (or a done channel) and return, and
// `defer t.Stop()` where the ticker is created; a SuggestedFix inserts the
// defer when the ticker is a local variable created outside any loop.
package tickerstop
