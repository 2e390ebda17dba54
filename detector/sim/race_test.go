//go:build race

package sim

// Under the race detector the reduced run is shorter still; the goals
// asserted are the same.
const goalHours = 25
