//go:build race

package wire

// raceEnabled: under -race, sync.Pool drops items on purpose, so
// allocation counts say nothing about the code; alloc checks are skipped.
const raceEnabled = true
