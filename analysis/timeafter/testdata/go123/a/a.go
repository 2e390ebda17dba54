package a

import "time"

// watch, under a go 1.23 module: no leak, but a timer per iteration.
func watch(beats <-chan struct{}, dead func()) {
	for {
		select {
		case <-beats:
		case <-time.After(30 * time.Second): // want `time.After in a loop allocates a new timer and channel every iteration .*module go 1.23`
			dead()
		}
	}
}

func tickPerIteration(send func()) {
	for i := 0; i < 10; i++ {
		<-time.Tick(time.Second) // want `time.Tick in a loop starts a new ticker every iteration`
		send()
	}
}
