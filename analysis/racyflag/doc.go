// Package racyflag defines an analyzer for AP-04 (INC-2024-0334: racy
// writes left the health state wrong): a package-level variable of basic
// type (bool, number, string, time.Duration…) written without sync/atomic
// or a mutex while code that runs concurrently touches it.
//
// "Runs concurrently" means: the body of a `go` statement, an HTTP handler
// (a func(http.ResponseWriter, *http.Request) or a ServeHTTP method), a
// time.AfterFunc callback, and every function of the package those call.
// The seed's code — `var isHealthy = true; func SetHealthy(v bool) {
// isHealthy = v }` read by a heartbeat handler — is the canonical case.
//
// Not reported: writes in init or main (set-up before goroutines start),
// writes inside sync.Once.Do, writes in a function that holds a
// sync.Mutex/RWMutex lock at that point, variables whose address is taken
// (flag.BoolVar, atomic.StoreInt32(&v…)), and test files.
//
// Fix: atomic.Bool / atomic.Int64 / atomic.Value for single values, an
// immutable snapshot behind atomic.Pointer or a sync.RWMutex for composite
// state.
package racyflag
