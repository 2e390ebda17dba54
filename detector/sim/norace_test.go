//go:build !race

package sim

// goalHours is the reduced run CI checks the goals on (the default run is
// 1,000 instance-hours per scenario).
const goalHours = 50
