// Package clocktest owns Fake, a manually advanced clock.Clock for tests and
// simulations: time moves only when the test calls Advance or Set, and timers
// and tickers fire in deadline order as it does.
package clocktest
