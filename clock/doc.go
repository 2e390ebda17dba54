// Package clock owns pulse's notion of time for scheduling and judging: a
// Clock whose Now carries Go's monotonic reading and whose timers can be
// stopped and reset, so loops never allocate a timer per iteration (AP-03)
// and tests can drive time (clock/clocktest) instead of sleeping.
//
// Code that only needs real time under test should prefer testing/synctest;
// Clock exists for code that must be driven step by step from outside, such
// as a simulator or a test that interleaves time with real sockets.
package clock
