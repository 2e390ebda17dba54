package web

import (
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func get(t *testing.T, h http.Handler, method, path string, hdr map[string]string) *http.Response {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w.Result()
}

func body(t *testing.T, r *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestIndexAndAssets(t *testing.T) {
	h := Handler(Options{})
	r := get(t, h, http.MethodGet, "/", nil)
	if r.StatusCode != http.StatusOK {
		t.Fatalf("GET /: %d", r.StatusCode)
	}
	if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Errorf("index Content-Type %q", ct)
	}
	if csp := r.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") {
		t.Errorf("CSP %q", csp)
	}
	if r.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Error("no nosniff")
	}
	html := body(t, r)
	if !strings.Contains(html, `<script type="module" src="js/main.js">`) {
		t.Errorf("index does not load js/main.js:\n%s", html)
	}
	// Every asset the page or a module names is served, as the right type:
	// a missing file would only show up as a blank page.
	refs := regexp.MustCompile(`(?:src|href)="([a-z][^":#]*\.(?:js|css|svg))"`).FindAllStringSubmatch(html, -1)
	sub, _ := fs.Sub(static, "static")
	fs.WalkDir(sub, "js", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, _ := fs.ReadFile(sub, p)
		for _, m := range regexp.MustCompile(`from '(\.{1,2}/[^']+)'`).FindAllStringSubmatch(string(b), -1) {
			dir := p[:strings.LastIndex(p, "/")]
			refs = append(refs, []string{"", cleanJoin(dir, m[1])})
		}
		return nil
	})
	if len(refs) < 8 {
		t.Fatalf("found only %d asset references: %v", len(refs), refs)
	}
	for _, ref := range refs {
		r := get(t, h, http.MethodGet, "/"+ref[1], nil)
		if r.StatusCode != http.StatusOK {
			t.Errorf("GET /%s: %d", ref[1], r.StatusCode)
			continue
		}
		ct := r.Header.Get("Content-Type")
		want := map[string]string{".js": "text/javascript", ".css": "text/css", ".svg": "image/svg+xml"}[ref[1][strings.LastIndex(ref[1], "."):]]
		if !strings.HasPrefix(ct, want) {
			t.Errorf("/%s: Content-Type %q, want %s", ref[1], ct, want)
		}
	}
}

func cleanJoin(dir, rel string) string {
	parts := strings.Split(dir, "/")
	for _, seg := range strings.Split(rel, "/") {
		switch seg {
		case ".":
		case "..":
			parts = parts[:len(parts)-1]
		default:
			parts = append(parts, seg)
		}
	}
	return strings.Join(parts, "/")
}

// Assets are revalidated by content hash: an unchanged file answers 304,
// so upgrades show at once and reloads stay cheap.
func TestETag(t *testing.T) {
	h := Handler(Options{})
	r := get(t, h, http.MethodGet, "/app.css", nil)
	tag := r.Header.Get("ETag")
	if !regexp.MustCompile(`^"[0-9a-f]{24}"$`).MatchString(tag) {
		t.Fatalf("ETag %q", tag)
	}
	if cc := r.Header.Get("Cache-Control"); cc != "no-cache" {
		t.Errorf("Cache-Control %q", cc)
	}
	r = get(t, h, http.MethodGet, "/app.css", map[string]string{"If-None-Match": tag})
	if r.StatusCode != http.StatusNotModified {
		t.Fatalf("If-None-Match: %d, want 304", r.StatusCode)
	}
	if other := get(t, h, http.MethodGet, "/js/main.js", nil).Header.Get("ETag"); other == tag || other == "" {
		t.Errorf("main.js ETag %q vs app.css %q", other, tag)
	}
}

func TestDashboardJSON(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"http://jaeger:16686/trace/{trace_id}", "http://jaeger:16686/trace/{trace_id}"},
		{"HTTPS://tempo.example/explore?trace={trace_id}", "HTTPS://tempo.example/explore?trace={trace_id}"},
		{"javascript:alert(1)//{trace_id}", ""},
		{"", ""},
	} {
		r := get(t, Handler(Options{TraceURL: tc.in}), http.MethodGet, "/dashboard.json", nil)
		if r.StatusCode != http.StatusOK || r.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("%q: %d %s", tc.in, r.StatusCode, r.Header.Get("Content-Type"))
		}
		var got struct {
			TraceURL string `json:"trace_url"`
		}
		if err := json.NewDecoder(r.Body).Decode(&got); err != nil {
			t.Fatal(err)
		}
		if got.TraceURL != tc.want {
			t.Errorf("TraceURL %q served as %q, want %q", tc.in, got.TraceURL, tc.want)
		}
	}
}

func TestRefusals(t *testing.T) {
	h := Handler(Options{})
	if r := get(t, h, http.MethodPost, "/", nil); r.StatusCode != http.StatusMethodNotAllowed || r.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /: %d Allow %q", r.StatusCode, r.Header.Get("Allow"))
	}
	if r := get(t, h, http.MethodGet, "/js/", nil); r.StatusCode != http.StatusNotFound {
		t.Errorf("directory listing /js/: %d, want 404", r.StatusCode)
	}
	if r := get(t, h, http.MethodGet, "/nope.js", nil); r.StatusCode != http.StatusNotFound {
		t.Errorf("/nope.js: %d", r.StatusCode)
	}
	if r := get(t, h, http.MethodGet, "/../web.go", nil); r.StatusCode != http.StatusNotFound {
		t.Errorf("/../web.go: %d", r.StatusCode)
	}
	if r := get(t, h, http.MethodHead, "/", nil); r.StatusCode != http.StatusOK {
		t.Errorf("HEAD /: %d", r.StatusCode)
	}
}
