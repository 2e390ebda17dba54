// Package sysinfo describes the machine a benchmark ran on and reads
// per-process CPU time and memory from /proc, so a comparison can charge
// each side for exactly the process that did the work.
package sysinfo
