// Package timeafter defines an analyzer for AP-03 (INC-2023-1152, timer
// leak): time.After or time.Tick evaluated on every iteration of a loop.
//
// A `case <-time.After(d)` in a select inside a loop creates a new timer
// every iteration. Whenever another case wins, that timer is abandoned.
// Before Go 1.23 an abandoned timer stays in the runtime heap until it
// fires, so a loop that receives beats faster than its timeout piles up
// timers (the seed's incident: 23,000 per node). Since Go 1.23 (decided by
// the main module's go line, which is never lower than this module's) the
// timer is collected, but every iteration still allocates a timer and a
// channel. time.Tick in a loop starts a ticker per iteration that is never
// stopped.
//
// The analyzer reports time.After only where another select case can win
// and continue the loop (a default clause, or a case that does not return
// and does not receive from a done channel); a loop whose only other cases
// return leaves at most one timer behind. A time.After case with an empty
// body is a wake-up (poll every d or sooner when notified), not a timeout,
// and is reported only beside a default clause.
// The message depends on the module's go line: a leak below go1.23, a
// per-iteration allocation at or above it.
//
// Fix: create one timer before the loop (time.NewTimer), Stop it on exit
// and Reset it per iteration, or put the deadline in a context.
package timeafter
