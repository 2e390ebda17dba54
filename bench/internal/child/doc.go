// Package child runs one part of a comparison in its own process: the
// report re-executes itself with a role name in the environment, sends the
// role its input as one JSON line on stdin, and reads JSON lines back
// (progress, messages, one result). Separate processes let each side be
// charged exactly its own CPU time and memory (from /proc), keep a
// baseline's goroutines and sockets out of the report, and put the load
// generator and the server under test in different processes, as a real
// deployment would.
//
// A child stops when its stdin closes (the parent went away or is done),
// and the kernel kills it if the parent dies (Pdeathsig).
package child
