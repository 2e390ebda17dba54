package web

import (
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"net/http"
	"path"
	"strings"
)

//go:embed static
var static embed.FS

// Options configures the dashboard.
type Options struct {
	// TraceURL is a URL template for trace links, with {trace_id}
	// replaced (from api.trace_url in the config); empty: no links.
	// Only http and https URLs are used.
	TraceURL string
}

// clientConfig is what the page reads from /dashboard.json.
type clientConfig struct {
	TraceURL string `json:"trace_url"`
}

// csp allows nothing but this origin: no inline script, no CDN, no
// framing (the pages build their DOM from API data, so a strict policy is
// the backstop against markup slipping in through instance names or
// reasons).
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"base-uri 'self'; form-action 'self'; frame-ancestors 'none'"

// Handler serves the dashboard: the embedded assets under / and
// /dashboard.json (the trace link template). Assets carry a content hash
// as ETag and must be revalidated, so an upgraded daemon never serves a
// stale page from the browser's cache.
func Handler(opts Options) http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		// Only if the embedded tree were broken at build time.
		return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, "dashboard assets unavailable: "+err.Error(), http.StatusInternalServerError)
		})
	}
	etags := hashes(sub)
	cfg := clientConfig{}
	if u := strings.ToLower(opts.TraceURL); strings.HasPrefix(u, "http://") || strings.HasPrefix(u, "https://") {
		cfg.TraceURL = opts.TraceURL
	}
	cfgJSON, _ := json.Marshal(cfg) // a struct of strings always marshals
	files := http.FileServerFS(sub)

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			h.Set("Allow", "GET, HEAD")
			http.Error(w, "the dashboard is read-only: use GET", http.StatusMethodNotAllowed)
			return
		}
		name := strings.TrimPrefix(path.Clean("/"+r.URL.Path), "/")
		switch {
		case name == "dashboard.json":
			h.Set("Content-Type", "application/json")
			h.Set("Cache-Control", "no-store")
			w.Write(cfgJSON)
			return
		case name == "" || name == ".":
			name = "index.html"
		case strings.HasSuffix(r.URL.Path, "/"):
			// No directory listings.
			http.NotFound(w, r)
			return
		}
		if tag, ok := etags[name]; ok {
			h.Set("ETag", tag)
		}
		h.Set("Cache-Control", "no-cache")
		files.ServeHTTP(w, r)
	})
}

// hashes returns a strong ETag for every file of fsys.
func hashes(fsys fs.FS) map[string]string {
	out := map[string]string{}
	fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return nil
		}
		sum := sha256.Sum256(b)
		out[p] = `"` + hex.EncodeToString(sum[:12]) + `"`
		return nil
	})
	return out
}
