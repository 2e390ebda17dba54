// Package lazy owns retriable, panic-safe initialisation (AP-09): a Value
// that builds a client or connection on first use, shares one attempt among
// concurrent callers, turns an error or a panic into an error for every one
// of them (never a nil value), and tries again later with exponential
// back-off and jitter until an attempt succeeds.
//
// Why not sync.Once or sync.OnceValue: sync.Once runs its function exactly
// once, so a failed or panicking initialisation leaves the guarded value nil
// for the life of the process, and the next caller dereferences it. Since Go
// 1.21, sync.OnceValue(s) at least remembers the error and re-panics with the
// same value, but it still caches the first outcome forever: a database that
// was down for the first 200 ms after start-up keeps the service broken until
// it is restarted. Initialisation that depends on the network must be allowed
// to fail and to succeed later.
package lazy
