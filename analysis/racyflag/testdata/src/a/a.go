package a

import (
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// isHealthy is the seed's INC-2024-0334 flag.
var isHealthy = true

func SetHealthy(v bool) { isHealthy = v } // want `package-level bool isHealthy is written without sync/atomic or a mutex and an HTTP handler accesses it concurrently \(a.go:16\)`

func heartbeat(w http.ResponseWriter, r *http.Request) {
	if !isHealthy {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
}

var beats int

func startBeats(send func()) {
	go func() {
		for {
			beats++ // want `package-level int beats is written without sync/atomic or a mutex and this write runs in a goroutine`
			send()
			time.Sleep(time.Second)
		}
	}()
}

var lastErr string

func recordErr(err error) { lastErr = err.Error() } // want `package-level string lastErr .* this write runs in a goroutine`

func beatLoop(send func() error) {
	for {
		if err := send(); err != nil {
			recordErr(err)
		}
	}
}

func start(send func() error) { go beatLoop(send) }

var lastBeat time.Duration

type srv struct{}

func (srv) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	lastBeat = time.Second // want `package-level time.Duration lastBeat .* this write runs in an HTTP handler`
}

// --- must not be flagged ---

var (
	mu      sync.Mutex
	guarded bool
)

func setGuarded(v bool) {
	mu.Lock()
	defer mu.Unlock()
	guarded = v
}

func readGuarded(w http.ResponseWriter, r *http.Request) {
	mu.Lock()
	_ = guarded
	mu.Unlock()
}

func setGuardedLocked(v bool) { guarded = v } // caller holds mu

// healthy is what AP-04 asks for.
var healthy atomic.Bool

func setAtomic(v bool) { healthy.Store(v) }

func readAtomic(w http.ResponseWriter, r *http.Request) { _ = healthy.Load() }

var counter int32

func incr() { atomic.AddInt32(&counter, 1) }

func readCounter(w http.ResponseWriter, r *http.Request) { _ = atomic.LoadInt32(&counter) }

// verbose is set up before any goroutine starts.
var verbose bool

func init() { verbose = true }

func handlerVerbose(w http.ResponseWriter, r *http.Request) { _ = verbose }

// configured is never touched concurrently.
var configured string

func configure() { configured = "x" }

func plain() string { return configured }

var (
	once    sync.Once
	onceVal string
)

func lazyGet(w http.ResponseWriter, r *http.Request) {
	once.Do(func() { onceVal = "x" })
	_ = onceVal
}

// pulse's idiom: an immutable snapshot behind an atomic pointer.
type snapshot struct{ ok bool }

var state atomic.Pointer[snapshot]

func publish(ok bool) { state.Store(&snapshot{ok: ok}) }

func livez(w http.ResponseWriter, r *http.Request) {
	if s := state.Load(); s == nil || !s.ok {
		w.WriteHeader(http.StatusServiceUnavailable)
	}
}

var debugMode bool

func SetDebug(v bool) {
	//pulselint:ignore racyflag only called from main before the server starts
	debugMode = v
}

func debugHandler(w http.ResponseWriter, r *http.Request) { _ = debugMode }
