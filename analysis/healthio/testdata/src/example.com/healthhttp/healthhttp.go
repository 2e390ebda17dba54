// Package healthhttp stands in for a library that turns a check function
// into an HTTP handler which runs the check on every request.
package healthhttp

import (
	"context"
	"net/http"
)

func NewHandler(check func(context.Context) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if check(r.Context()) != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
}
