//go:build race

package heartbeat_test

// raceEnabled: the race detector slows this machine's two cores about
// tenfold and caps live goroutines at 8128, so the load tests scale down
// under -race (the assertions stay the same); run without -race for the
// full-size figures.
const raceEnabled = true
