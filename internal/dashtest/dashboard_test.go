package dashtest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/fb4b1dcc/pulse/internal/faultnet"
	"github.com/fb4b1dcc/pulse/monitor"
	"github.com/fb4b1dcc/pulse/web"
)

// gridJS reads the fleet grid's counts as "service/zone/state" → n
// (zone "*" for a service's totals).
const gridJS = `JSON.stringify(Object.fromEntries([...document.querySelectorAll('table.grid td.cnt')].map(td =>
  [td.dataset.service + '/' + (td.dataset.zone === undefined ? '*' : td.dataset.zone) + '/' + td.dataset.state, Number(td.dataset.count)])))`

// apiCounts turns the API's service list into the same shape as gridJS.
func apiCounts(svcs []monitor.ServiceView) map[string]int {
	out := map[string]int{}
	states := []string{"alive", "suspect", "protected", "degraded", "down", "unknown"}
	for _, sv := range svcs {
		for _, st := range states {
			out[sv.Name+"/*/"+st] = sv.Counts[st]
		}
		if len(sv.Zones) > 1 || (len(sv.Zones) == 1 && sv.Zones[0].Name != "") {
			for _, z := range sv.Zones {
				for _, st := range states {
					out[sv.Name+"/"+z.Name+"/"+st] = z.Counts[st]
				}
			}
		}
	}
	return out
}

func pageCounts(t *testing.T, ctx context.Context) map[string]int {
	t.Helper()
	s := eval[string](t, ctx, gridJS)
	var m map[string]int
	if err := json.Unmarshal([]byte(s), &m); err != nil {
		t.Fatalf("grid counts %q: %v", s, err)
	}
	return m
}

func equalCounts(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// The dashboard against a live fleet: the counts it shows match the API;
// a crashed instance shows as down, with the monitor's reason, within
// seconds and without a reload; a correlated failure of 60 % of one zone
// raises the protection banner with its reason; the events page lists
// the transitions from the store.
func TestDashboard(t *testing.T) {
	b := startBrowser(t) // first: without chromium there is nothing to test
	defer b.close()
	f := startFleet(t, fleetSpec{checkoutA: 5, checkoutB: 4, search: 6, relayed: []string{"checkout-a2"}})
	defer f.stop()
	defer b.close() // before the daemon stops

	waitFor(t, 15*time.Second, "every instance alive", func() (bool, string) {
		c, s := f.states("checkout"), f.states("search")
		return count(c, "alive") == 9 && count(s, "alive") == 6, fmt.Sprintf("checkout %v search %v", c, s)
	})

	page, closePage := b.tab(t, 1280, 800)
	defer closePage()

	// Fleet: the grid shows exactly the API's counts, service totals and
	// zones alike.
	if err := chromedp.Do(page, chromedp.Navigate(f.base+"/")); err != nil {
		t.Fatal(err)
	}
	waitJS(t, page, 10*time.Second, "the fleet grid", `document.querySelectorAll('table.grid td.cnt').length > 0 && document.querySelector('#conn').dataset.state === 'live'`,
		`document.querySelector('main').innerText.slice(0, 300) + ' conn=' + document.querySelector('#conn').dataset.state`)
	if eval[bool](t, page, `document.getElementById('token-dialog').open`) {
		t.Fatal("the page asks for a token although the API has none")
	}
	var last map[string]int
	waitFor(t, 5*time.Second, "the grid to match the API", func() (bool, string) {
		want, got := apiCounts(f.services()), pageCounts(t, page)
		last = got
		return equalCounts(want, got), fmt.Sprintf("API %v page %v", want, got)
	})
	if last["checkout/*/alive"] != 9 || last["checkout/a/alive"] != 5 || last["checkout/b/alive"] != 4 || last["search/*/alive"] != 6 {
		t.Fatalf("grid: %v", last)
	}
	if _, ok := last["search//alive"]; ok {
		t.Fatalf("search has no zones, but the grid has a zone row: %v", last)
	}
	total := eval[int](t, page, `Number(document.querySelector('.tile-n[data-total]').dataset.total)`)
	if total != 15 {
		t.Fatalf("total tile: %d, want 15", total)
	}
	shot(t, page, "fleet.png", false)

	// The instance page of checkout-a2 collects its timeline from now on,
	// in its own tab.
	inst, closeInst := b.tab(t, 1280, 800)
	defer closeInst()
	if err := chromedp.Do(inst, chromedp.Navigate(f.base+"/#/services/checkout/instances/checkout-a2")); err != nil {
		t.Fatal(err)
	}

	// Service page; mark the document so a reload would show.
	if err := chromedp.Do(page, chromedp.Evaluate[chromedp.Void](`window.__noReload = 'yes'; location.hash = '#/services/checkout'`)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, page, 5*time.Second, "9 instance rows", `document.querySelectorAll('table.instances tbody tr[data-instance]').length === 9`,
		`document.querySelector('main').innerText.slice(0, 300)`)

	// Crash checkout-b2: the page must show it down, with the monitor's
	// reason, by itself.
	killed := time.Now()
	f.kill("checkout-b2")
	// Generous: the bound is what the detector learned, which on a loaded
	// machine includes the scheduling stalls it saw (speed is measured by
	// benchmarks, not here).
	waitJS(t, page, 30*time.Second, "checkout-b2 down on the service page",
		`document.querySelector('tr[data-instance="checkout-b2"]').dataset.state === 'down'`,
		`document.querySelector('tr[data-instance="checkout-b2"]').innerText`)
	shown := time.Since(killed)
	v := f.instance("checkout", "checkout-b2")
	if v.State != monitor.Down || v.Reason == "" {
		t.Fatalf("API: checkout-b2 is %s (%q)", v.State, v.Reason)
	}
	reason := eval[string](t, page, `document.querySelector('tr[data-instance="checkout-b2"] td.reason').textContent`)
	if reason != v.Reason {
		t.Fatalf("reason on the page %q, API %q", reason, v.Reason)
	}
	badge := eval[string](t, page, `document.querySelector('tr[data-instance="checkout-b2"] td.state').textContent`)
	if !strings.Contains(badge, "down") {
		t.Fatalf("state cell %q does not say down", badge)
	}
	if eval[string](t, page, `String(window.__noReload)`) != "yes" {
		t.Fatal("the page reloaded")
	}
	t.Logf("checkout-b2 shown down %v after the crash: %q", shown.Round(time.Millisecond), v.Reason)

	// Back on the fleet page (no reload): the attention table says what,
	// since when and why; the counts still match.
	if err := chromedp.Do(page, chromedp.Evaluate[chromedp.Void](`location.hash = '#/'`)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, page, 5*time.Second, "checkout-b2 in the attention table",
		`document.querySelector('table.attention tr[data-instance="checkout-b2"][data-state="down"]')`, `document.querySelector('main').innerText.slice(0, 600)`)
	att := eval[string](t, page, `document.querySelector('table.attention tr[data-instance="checkout-b2"] td.reason').textContent`)
	if att != v.Reason {
		t.Fatalf("attention reason %q, API %q", att, v.Reason)
	}
	waitFor(t, 5*time.Second, "the grid to match the API after the crash", func() (bool, string) {
		want, got := apiCounts(f.services()), pageCounts(t, page)
		return equalCounts(want, got) && got["checkout/b/down"] == 1, fmt.Sprintf("API %v page %v", want, got)
	})

	// A slow path for checkout-a2 (RTT step on its chart), then a
	// correlated failure: 3 of zone a's 5 instances (60 %) stop beating at
	// once. The monitor presumes a network fault and protects the zone;
	// the banner says so, with the reason.
	screenshots := os.Getenv("PULSE_SCREENSHOTS") != ""
	if screenshots {
		// For the pictures: a stretch of normal timeline first, and fresh
		// connections (so the phase breakdown has connect and TLS times).
		time.Sleep(8 * time.Second)
		f.targets["checkout-a2"].CloseClientConnections()
	}
	if err := f.relays["checkout-a2"].SetFaults(faultnet.Faults{Delay: 60 * time.Millisecond, Jitter: 10 * time.Millisecond}, faultnet.Faults{}); err != nil {
		t.Fatal(err)
	}
	if screenshots {
		// The page samples the latest probe once a second: reconnect a
		// few times so some samples show connect and TLS.
		for range 6 {
			time.Sleep(1100 * time.Millisecond)
			f.targets["checkout-a2"].CloseClientConnections()
		}
		time.Sleep(4 * time.Second) // a visible stretch of the higher RTT on the chart
	}
	f.stopBeats("checkout-a2", "checkout-a3", "checkout-a4")
	waitJS(t, page, 8*time.Second, "the protection banner for zone a",
		`document.querySelector('#banners .banner.protection[data-service="checkout"][data-zone="a"]')`,
		`document.querySelector('#banners').innerText + ' | ' + document.querySelector('main').innerText.slice(0, 300)`)
	var zoneA monitor.ZoneView
	for _, sv := range f.services() {
		if sv.Name == "checkout" {
			for _, z := range sv.Zones {
				if z.Name == "a" {
					zoneA = z
				}
			}
		}
	}
	if !zoneA.Protected || !strings.Contains(zoneA.Reason, "zone a") {
		t.Fatalf("API zone a: %+v", zoneA)
	}
	bannerText := eval[string](t, page, `document.querySelector('#banners .banner.protection[data-zone="a"]').innerText`)
	for _, want := range []string{"Protection on", "checkout", "zone a", "evictions paused since", zoneA.Reason} {
		if !strings.Contains(bannerText, want) {
			t.Errorf("banner %q lacks %q", bannerText, want)
		}
	}
	if n := eval[int](t, page, `document.querySelectorAll('#banners .banner.protection').length`); n != 1 {
		t.Errorf("%d protection banners, want 1 (zone a only): %s", n, eval[string](t, page, `document.querySelector('#banners').innerText`))
	}
	// The protected instances are flagged, not evicted, on the page as in the API.
	waitFor(t, 5*time.Second, "the grid to match the API under protection", func() (bool, string) {
		want, got := apiCounts(f.services()), pageCounts(t, page)
		return equalCounts(want, got) && got["checkout/a/protected"] >= 1, fmt.Sprintf("API %v page %v", want, got)
	})
	if eval[string](t, page, `String(window.__noReload)`) != "yes" {
		t.Fatal("the page reloaded")
	}
	shot(t, page, "fleet-protection.png", false)

	// The service page, filtered to zone a, shows the protected instances.
	if err := chromedp.Do(page, chromedp.Evaluate[chromedp.Void](`location.hash = '#/services/checkout'`)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, page, 5*time.Second, "protected rows", `document.querySelectorAll('table.instances tr[data-state="protected"]').length >= 1`,
		`document.querySelector('main').innerText.slice(0, 400)`)
	shot(t, page, "service.png", false)

	// Filters: state=down leaves exactly checkout-b2; search narrows by name.
	if err := chromedp.Do(page, chromedp.Click(chromedp.CSS(`#f-down`))); err != nil {
		t.Fatal(err)
	}
	waitJS(t, page, 5*time.Second, "the down filter", `(() => { const r = [...document.querySelectorAll('table.instances tbody tr[data-instance]')]; return r.length === 1 && r[0].dataset.instance === 'checkout-b2' })()`,
		`[...document.querySelectorAll('table.instances tbody tr[data-instance]')].map(r => r.dataset.instance).join()`)
	if !strings.Contains(eval[string](t, page, `location.hash`), "state=down") {
		t.Errorf("the filter is not in the address: %s", eval[string](t, page, `location.hash`))
	}
	if err := chromedp.Do(page, chromedp.Click(chromedp.CSS(`#f-down`)), chromedp.SendKeys(chromedp.CSS(`#f-q`), "a1")); err != nil {
		t.Fatal(err)
	}
	waitJS(t, page, 5*time.Second, "the search", `(() => { const r = [...document.querySelectorAll('table.instances tbody tr[data-instance]')]; return r.length === 1 && r[0].dataset.instance === 'checkout-a1' })()`,
		`[...document.querySelectorAll('table.instances tbody tr[data-instance]')].map(r => r.dataset.instance).join()`)

	// Sorting by a column header, from the keyboard.
	if err := chromedp.Do(page, chromedp.Evaluate[chromedp.Void](`location.hash = '#/services/search'`)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, page, 5*time.Second, "search rows", `document.querySelectorAll('table.instances tbody tr[data-instance]').length === 6`, `document.querySelector('main').innerText.slice(0, 300)`)
	if err := chromedp.Do(page, chromedp.Focus(chromedp.CSS(`button.sort[data-key="sort-instance"]`)), chromedp.KeyEvent("\r")); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(page, chromedp.Focus(chromedp.CSS(`button.sort[data-key="sort-instance"]`)), chromedp.KeyEvent("\r")); err != nil {
		t.Fatal(err)
	}
	waitJS(t, page, 3*time.Second, "descending sort by name",
		`[...document.querySelectorAll('table.instances tbody tr[data-instance]')].map(r => r.dataset.instance).join() === 'search-6,search-5,search-4,search-3,search-2,search-1'
		 && document.querySelector('th[aria-sort="descending"] button[data-key="sort-instance"]')`,
		`[...document.querySelectorAll('table.instances tbody tr[data-instance]')].map(r => r.dataset.instance).join()`)

	// Events: the crash is in the log, from the store, with its reason.
	if err := chromedp.Do(page, chromedp.Evaluate[chromedp.Void](`location.hash = '#/events'`)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, page, 5*time.Second, "the down event of checkout-b2",
		`[...document.querySelectorAll('table.events tbody tr')].some(r => r.dataset.to === 'down' && r.innerText.includes('checkout-b2'))`,
		`document.querySelector('main').innerText.slice(0, 600)`)
	evReason := eval[string](t, page, `[...document.querySelectorAll('table.events tbody tr')].find(r => r.dataset.to === 'down' && r.innerText.includes('checkout-b2')).querySelector('td.reason').textContent`)
	if evReason == "" || evReason == "—" {
		t.Fatalf("the down event of checkout-b2 has no reason on the page")
	}
	var hist struct {
		Events []struct {
			To      string `json:"to"`
			TraceID string `json:"trace_id"`
		} `json:"events"`
	}
	f.getJSON("/api/v1/events?service=checkout&instance=checkout-b2&order=desc&limit=100", &hist)
	downTrace := ""
	for _, e := range hist.Events {
		if e.To == "down" {
			downTrace = e.TraceID
		}
	}
	if downTrace == "" {
		t.Error("the stored down event of checkout-b2 has no trace id")
	}
	evLink := eval[string](t, page, `([...document.querySelectorAll('table.events tbody tr')].find(r => r.dataset.to === 'down' && r.innerText.includes('checkout-b2')).querySelector('a.trace') || {}).href || ''`)
	if want := strings.ReplaceAll(traceURL, "{trace_id}", downTrace); evLink != want {
		t.Errorf("event trace link %q, want %q", evLink, want)
	}
	protEvents := eval[int](t, page, `[...document.querySelectorAll('table.events tbody tr')].filter(r => r.dataset.to === 'protection_on').length`)
	if protEvents != 1 {
		t.Errorf("%d protection_on events listed, want 1", protEvents)
	}
	shot(t, page, "events.png", false)

	// The instance page has been polling checkout-a2 all along: its
	// timeline shows the state change (alive, then suspect/protected), the
	// beat chart and the probe phases.
	waitJS(t, inst, 5*time.Second, "the instance page's timeline",
		`document.querySelector('#chart-beats svg path.line.c1') && document.querySelector('#chart-rtt') && document.querySelectorAll('svg.strip rect.band').length >= 2
		 && document.querySelectorAll('table.phases tbody tr').length >= 2`,
		`document.querySelector('main').innerText.slice(0, 800)`)
	strip := eval[[]string](t, inst, `[...document.querySelectorAll('svg.strip rect.band')].map(r => r.getAttribute('class').replace('band s-fill-', ''))`)
	if strip[0] != "alive" || !slices.ContainsFunc(strip, func(s string) bool { return s == "protected" || s == "suspect" }) {
		t.Errorf("state strip %v: want alive, then suspect or protected", strip)
	}
	title := eval[string](t, inst, `document.querySelector('main h1').textContent`)
	a2 := f.instance("checkout", "checkout-a2")
	if !strings.Contains(title, a2.State.String()) {
		t.Errorf("instance heading %q, API state %s", title, a2.State)
	}
	// The trace id moves with every beat and probe: the link must be the
	// template filled with the id the page shows.
	if a2.TraceID == "" {
		t.Error("checkout-a2 has no trace id in the API")
	}
	link := eval[[]string](t, inst, `(() => { const a = document.querySelector('.facts-grid a.trace'); return a ? [a.href, a.title] : [] })()`)
	if len(link) != 2 || !traceLink.MatchString(link[0]) || !strings.HasSuffix(link[1], link[0][len(link[0])-32:]) {
		t.Errorf("instance trace link %q: want %s with the id shown", link, traceURL)
	}
	if screenshots {
		time.Sleep(4 * time.Second) // suspicion climbing past the threshold
		shot(t, inst, "instance.png", true)
		if err := chromedp.Do(inst, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile)); err != nil {
			t.Fatal(err)
		}
		shot(t, inst, "instance-phone.png", false)
		if err := chromedp.Do(page, chromedp.EmulateViewport(390, 844, chromedp.EmulateMobile), chromedp.Evaluate[chromedp.Void](`location.hash = '#/'`)); err != nil {
			t.Fatal(err)
		}
		waitJS(t, page, 5*time.Second, "the fleet page", `document.querySelector('table.grid')`, "")
		shot(t, page, "fleet-phone.png", false)
	}
}

var traceLink = regexp.MustCompile(`^http://127\.0\.0\.1:16686/trace/[0-9a-f]{32}$`)

func count(m map[string]string, st string) int {
	n := 0
	for _, v := range m {
		if v == st {
			n++
		}
	}
	return n
}

// The page's pure helpers (durations, Go timestamps, axis ticks, links),
// run in the browser that runs the dashboard.
func TestFormatting(t *testing.T) {
	b := startBrowser(t)
	defer b.close()
	srv := httptest.NewServer(web.Handler(web.Options{}))
	defer srv.Close()
	defer b.close() // before the server closes
	tab, closeTab := b.tab(t, 800, 600)
	defer closeTab()
	if err := chromedp.Do(tab, chromedp.Navigate(srv.URL+"/dashboard.json")); err != nil {
		t.Fatal(err)
	}
	got, err := chromedp.Run(tab, chromedp.Evaluate[map[string]string](`(async () => {
		const u = await import('/js/util.js');
		const c = await import('/js/charts.js');
		return {
			us: u.fmtDur(850e3), ms: u.fmtDur(212e6), ms2: u.fmtDur(61.9e6), s: u.fmtDur(4.1e9), m: u.fmtDur(200e9), h: u.fmtDur(7500e9), neg: u.fmtDur(-2e9), none: u.fmtDur(null),
			nano: String(u.parseTime('2026-01-02T03:04:05.123456789Z') - Date.UTC(2026, 0, 2, 3, 4, 5, 123)),
			zero: String(u.parseTime('0001-01-01T00:00:00Z')),
			ticks: c.niceTicks(0, 4.4, 4).join(','), ticks2: c.niceTicks(0, 0.37, 4).join(','),
			hash: u.hashURL(['services', 'a b/c'], { zone: 'x', state: ['down', 'suspect'], q: '' }),
			sev: [...u.STATES].sort((a, b) => u.severity(a) - u.severity(b)).join(','),
		};
	})()`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"us": "850 µs", "ms": "212 ms", "ms2": "61.9 ms", "s": "4.1 s", "m": "3m 20s", "h": "2h 05m", "neg": "−2 s", "none": "—",
		"nano": "0", "zero": "null",
		"ticks": "0,2,4,6", "ticks2": "0,0.1,0.2,0.3,0.4",
		"hash": "#/services/a%20b%2Fc?zone=x&state=down%2Csuspect",
		"sev":  "down,suspect,protected,degraded,unknown,alive",
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("%s: got %q, want %q", k, got[k], w)
		}
	}
}

// With api.tokens set, the page asks for a token (and again when it is
// wrong), keeps it in sessionStorage, reads the API with it and follows
// the watch stream with it: a transition arrives live.
func TestDashboardToken(t *testing.T) {
	const token = "dashboard-token-5f2c"
	b := startBrowser(t)
	defer b.close()
	f := startFleet(t, fleetSpec{search: 4, tokens: []string{token}})
	defer f.stop()
	defer b.close() // before the daemon stops
	waitFor(t, 15*time.Second, "every instance alive", func() (bool, string) {
		s := f.states("search")
		return count(s, "alive") == 4, fmt.Sprint(s)
	})

	page, closePage := b.tab(t, 1280, 800)
	defer closePage()
	if err := chromedp.Do(page, chromedp.Navigate(f.base+"/")); err != nil {
		t.Fatal(err)
	}
	waitJS(t, page, 5*time.Second, "the token dialog", `document.getElementById('token-dialog').open`, `document.body.innerText.slice(0, 300)`)
	if n := eval[int](t, page, `document.querySelectorAll('table.grid td.cnt').length`); n != 0 {
		t.Fatalf("the grid rendered without a token (%d cells)", n)
	}
	if err := chromedp.Do(page, chromedp.SendKeys(chromedp.CSS(`#token-input`), "wrong-token\r")); err != nil {
		t.Fatal(err)
	}
	waitJS(t, page, 5*time.Second, "the dialog to ask again", `document.getElementById('token-dialog').open && document.querySelector('.dialog-message').textContent.includes('not accepted')`,
		`document.querySelector('.dialog-message').textContent`)
	shot(t, page, "token.png", false)
	if err := chromedp.Do(page, chromedp.SendKeys(chromedp.CSS(`#token-input`), token+"\r")); err != nil {
		t.Fatal(err)
	}
	waitJS(t, page, 10*time.Second, "the grid and a live stream",
		`!document.getElementById('token-dialog').open && document.querySelector('td.cnt[data-service="search"][data-state="alive"]').dataset.count === '4' && document.querySelector('#conn').dataset.state === 'live'`,
		`document.querySelector('main').innerText.slice(0, 300) + ' conn=' + document.querySelector('#conn').dataset.state`)
	if got := eval[string](t, page, `sessionStorage.getItem('pulse.token')`); got != token {
		t.Fatalf("sessionStorage token %q", got)
	}

	// The latest-events table is fed by the watch stream only: a down
	// there proves the stream authenticated with the token.
	f.stopBeats("search-2")
	waitJS(t, page, 30*time.Second, "search-2 suspect or down in the live events",
		`[...document.querySelectorAll('table.events tbody tr')].some(r => (r.dataset.to === 'down' || r.dataset.to === 'suspect') && r.innerText.includes('search-2'))`,
		`document.querySelector('main').innerText.slice(0, 800)`)
}
