// Command pulselint finds the seed's heartbeat anti-patterns in Go code.
//
//	pulselint ./...
//	go vet -vettool=$(command -v pulselint) ./...
//
// Every analyzer can be turned off with -NAME=false (or selected with
// -NAME); -fix applies the suggested fixes and -diff shows them; the exit
// status is non-zero when there are findings. A comment
//
//	//pulselint:ignore <analyzer> <reason>
//
// on the finding's line or the line above silences it; the reason is
// required. See docs/pulselint.md.
package main
