package fix

import "time"

func beat(send func()) {
	t := time.NewTicker(time.Second) // want `time.NewTicker result is never stopped`
	for i := 0; i < 3; i++ {
		<-t.C
		send()
	}
}

func wait(ch <-chan int) int {
	if ch != nil {
		tm := time.NewTimer(time.Second) // want `time.NewTimer result is never stopped`
		select {
		case v := <-ch:
			return v
		case <-tm.C:
		}
	}
	return 0
}

// inLoop gets no fix: a defer in a loop would pile up until return.
func inLoop(chs []chan int) {
	for _, ch := range chs {
		tm := time.NewTimer(time.Second) // want `time.NewTimer result is never stopped`
		select {
		case <-ch:
		case <-tm.C:
		}
	}
}
