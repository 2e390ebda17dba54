// Package statusonly defines an analyzer for AP-08 (INC-2021-155,
// INC-2023-226: a degraded instance judged healthy): a health, heartbeat or
// probe function that looks at resp.StatusCode (or resp.Status) and never
// reads or decodes resp.Body.
//
// Many services report degradation in the body of a 200 answer
// ({"code":503,"msg":"service degraded"}, {"status":"DOWN"}); a check that
// stops at the status line keeps routing traffic to them and lets the
// failure cascade. Functions count as health-like when their name or their
// receiver's type name or its package's import path contains a word such
// as health, heartbeat, beat, probe, ping, alive, liveness or readiness.
// Only responses the function obtains itself (Client.Do/Get/Post…,
// http.Get…, RoundTrip) are judged: a response handed in by a parameter or
// a struct may have had its body read by whoever produced it (pulse's own
// prober reads the body in one function and judges in another). Closing or draining the body
// (io.Copy to io.Discard) is not reading it; passing the whole response to
// another function is assumed to read it. Test files are skipped.
//
// Fix: decode the body and check its business status — in pulse, a probe
// condition such as `body.code == 0` or `body.status == "UP"` — and report
// degraded rather than healthy.
package statusonly
