// Package health stands in for a library that serves health over HTTP.
package health

import "net/http"

func Handler() http.Handler { return http.NotFoundHandler() }
