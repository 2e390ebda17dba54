package a

import (
	"encoding/json"
	"errors"
	"net"
	"sync"
	"time"
)

type HeartbeatClient struct{ conn net.Conn }

func newHeartbeatClient() (*HeartbeatClient, error) {
	c, err := net.DialTimeout("tcp", "monitor:7700", time.Second)
	if err != nil {
		return nil, err
	}
	return &HeartbeatClient{conn: c}, nil
}

var (
	once   sync.Once
	client *HeartbeatClient
)

// GetHeartbeatClient is the seed's INC-2022-418 code with the error dropped.
func GetHeartbeatClient() *HeartbeatClient {
	once.Do(func() {
		client, _ = newHeartbeatClient() // want `error dropped inside sync.Once.Do`
	})
	return client
}

var (
	panicOnce sync.Once
	pclient   *HeartbeatClient
)

func MustClient() *HeartbeatClient {
	panicOnce.Do(func() {
		c, err := newHeartbeatClient()
		if err != nil {
			panic(err) // want `panic inside sync.Once.Do`
		}
		pclient = c
	})
	return pclient
}

type holder struct {
	once sync.Once
	c    *HeartbeatClient
}

func (h *holder) init() {
	var err error
	h.c, _ = newHeartbeatClient() // want `error dropped inside sync.Once.Do`
	_ = err
}

func (h *holder) get() *HeartbeatClient {
	h.once.Do(h.init)
	return h.c
}

// The seed's "fix" with sync.OnceValues caches the first error forever.
var getClient = sync.OnceValues(newHeartbeatClient) // want `sync.OnceValues caches the first error forever`

var getErr = sync.OnceValue(func() error { // want `sync.OnceValue caches the first error forever`
	_, err := net.Dial("tcp", "monitor:7700")
	return err
})

// --- must not be flagged ---

var (
	errOnce sync.Once
	eclient *HeartbeatClient
	initErr error
)

// Keeps the error (whether caching it is wise is a separate question).
func keep() (*HeartbeatClient, error) {
	errOnce.Do(func() { eclient, initErr = newHeartbeatClient() })
	return eclient, initErr
}

var (
	cfgOnce sync.Once
	table   map[string]int
)

// No error and no panic: a pure computation.
func lookup(k string) int {
	cfgOnce.Do(func() {
		table = map[string]int{"a": 1}
	})
	return table[k]
}

// OnceValue over a function without an error result is fine.
var hostname = sync.OnceValue(func() string { return "localhost" })

// A recover in a deferred closure is not a panic of the body.
func guarded() {
	var o sync.Once
	o.Do(func() {
		defer func() {
			if r := recover(); r != nil {
				panic(errors.New("re-panic inside the deferred closure is not examined"))
			}
		}()
	})
}

// Static tables: a panic guards a programming error, not an outage.
var (
	tableOnce sync.Once
	table2    []int
)

func buildTable() []int {
	tableOnce.Do(func() {
		t, err := compute()
		if err != nil {
			panic(err)
		}
		table2 = t
	})
	return table2
}

func compute() ([]int, error) { return []int{1}, nil }

type Registry struct{}

func (Registry) FindFile(path string) (*int, error) { return nil, nil }

// A lookup whose error is handled by a fallback is not client creation.
func lookupOnce(r Registry) *int {
	var o sync.Once
	var v *int
	o.Do(func() {
		v, _ = r.FindFile("x")
		if v == nil {
			v = new(int)
		}
	})
	return v
}

// A cached marshalling error is deterministic.
var marshalled = sync.OnceValues(func() ([]byte, error) { return json.Marshal(map[string]int{"a": 1}) })

// lazy is the AP-09 answer: errors returned, failures retried.
type lazy struct {
	mu  sync.Mutex
	c   *HeartbeatClient
	err error
	at  time.Time
}

func (l *lazy) Get() (*HeartbeatClient, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.c != nil {
		return l.c, nil
	}
	if time.Since(l.at) < time.Second && l.err != nil {
		return nil, l.err
	}
	l.c, l.err = newHeartbeatClient()
	l.at = time.Now()
	return l.c, l.err
}

var ignoredOnce sync.Once

func ignored() {
	ignoredOnce.Do(func() {
		//pulselint:ignore oncepanic the DSN is a compile-time constant; a failure is a programming error
		client, _ = newHeartbeatClient()
	})
}
