// Package health owns a service's own health state and its answers to
// orchestrators (AP-02, AP-04, AP-12): named checks that run in the
// background on their own interval and timeout, at most one run in flight
// each; an immutable Snapshot of their results published through an
// atomic pointer; and the HTTP endpoints /livez, /readyz and /healthz that
// answer from that snapshot without locks or I/O. The gRPC face of the same
// state lives in health/healthgrpc.
//
// Liveness says "this process is not wedged": only checks registered with
// AffectsLiveness count, never a dependency. Readiness says "send me
// traffic": false until every check has passed once, false when one fails,
// and false as soon as Shutdown starts draining.
package health
