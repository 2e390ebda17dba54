package web

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// Options configures the dashboard.
type Options struct {
	// TraceURL is a URL template for trace links, with {trace_id}
	// replaced (from api.trace_url in the config); empty: no links.
	TraceURL string
}

// Handler serves the dashboard.
func Handler(opts Options) http.Handler {
	sub, _ := fs.Sub(static, "static")
	return http.FileServerFS(sub)
}
