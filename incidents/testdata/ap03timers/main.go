// Command ap03timers runs the seed's AP-03 heartbeat timeout, a
// `select` on the answer or `time.After(30 * time.Second)`, for many beats
// that are all answered at once, and prints how much live heap the
// never-fired timers keep. Its module says `go 1.22`, so by default it gets
// the timer semantics of Go before 1.23 (GODEBUG asynctimerchan=1): an
// unstopped timer stays in the runtime's heap until it fires. Run it with
// GODEBUG=asynctimerchan=0 to get the Go 1.23+ behaviour, where an
// unreferenced timer is collected at once.
package main

import (
	"flag"
	"fmt"
	"runtime"
	"time"
)

func main() {
	beats := flag.Int("beats", 100000, "beats to send")
	flag.Parse()
	heap := func() uint64 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapAlloc
	}
	before := heap()
	ack := make(chan bool, 1)
	answered := 0
	for range *beats {
		ack <- true // the monitor's answer is already there
		select {
		case <-ack:
			answered++
		case <-time.After(30 * time.Second): // ❌ the seed: never stopped
		}
	}
	after := heap()
	fmt.Printf("beats=%d answered=%d heap_growth=%d\n", *beats, answered, int64(after)-int64(before))
}
