//go:build !race

package heartbeat_test

const raceEnabled = false
