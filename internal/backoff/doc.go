// Package backoff owns pulse's retry delays: exponential growth with full
// jitter (a uniformly random delay between zero and the capped exponential
// bound), so that many clients retrying the same failure spread out instead
// of retrying in lockstep.
package backoff
