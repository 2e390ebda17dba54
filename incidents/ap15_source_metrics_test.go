package incidents

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/fb4b1dcc/pulse/internal/daemon"
	"github.com/fb4b1dcc/pulse/monitor"
)

// AP-15 (INC-2023-117, INC-2023-188): one Prometheus series counted
// active probes and passive heartbeats together. A hung process whose
// sidecar kept beating looked mostly healthy; 38 % of SLO alarms were
// false, and real hangs hid in the mix.
//
// Pass criterion (INCIDENTS.md): a hung process whose sidecar still sends
// passive beats: active fails, passive succeeds, the verdict is down, and
// the exposition passes `promtool check metrics`.
//
// Real time, real processes: the service's HTTP health endpoint accepts
// requests and never answers (the process is hung), while its sidecar, the
// real `pulse beat` binary, keeps sending UDP beats to the daemon running
// in-process; the daemon probes the endpoint every 300 ms.

// apb15Hung is the hung service: its health endpoint reads the request and
// never answers, until the test ends.
func apb15Hung(t *testing.T) *httptest.Server {
	t.Helper()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); srv.Close() })
	return srv
}

// apb15Sidecar runs `pulse beat` for shop/shop-1 towards udpAddr until the
// test ends.
func apb15Sidecar(t *testing.T, udpAddr string) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, pulseBinary(t), "beat", "--service", "shop", "--instance", "shop-1",
		"--monitor", udpAddr, "--key-file", apbKeyFile(t), "--interval", "200ms")
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })
}

var apb15Sample = regexp.MustCompile(`(?m)^(\w+)\{([^}]*)\} ([0-9.eE+-]+)$`)

// apb15Value sums the samples of name whose labels include every want.
func apb15Value(text, name string, want ...string) (float64, int) {
	sum, n := 0.0, 0
	for _, m := range apb15Sample.FindAllStringSubmatch(text, -1) {
		if m[1] != name {
			continue
		}
		ok := true
		for _, w := range want {
			if !strings.Contains(","+m[2]+",", ","+w+",") {
				ok = false
			}
		}
		if ok {
			v, _ := strconv.ParseFloat(m[3], 64)
			sum += v
			n++
		}
	}
	return sum, n
}

func apb15Scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := httpClient.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func apb15Promtool(t *testing.T, text string) string {
	t.Helper()
	cmd := exec.Command(apbPromtool(t), "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
	return string(out)
}

// TestAP15SourcesApart: pass: the verdict is down with the probe's timeout
// as its reason while beats keep arriving (the beat count grows after the
// down verdict); /metrics has passive observations from the sidecar all
// healthy (result="healthy", source="passive", transport="udp") and active
// ones all timeouts (source="active", transport="http", no active
// healthy), pulse_instances{state="down"} = 1 for shop, one transition to
// down with reason_class="probe_failed"; promtool check metrics passes.
func TestAP15SourcesApart(t *testing.T) {
	hung := apb15Hung(t)
	pulseBinary(t) // built before the monitor's start-up grace begins
	cfg := parseConfig(t, fmt.Sprintf(`
defaults:
  verdict: {down_after: 500ms, startup_grace: 3s}
modules:
  ready: {kind: http, timeout: 250ms}
services:
  - name: shop
    passive: {interval: 200ms, keys: [{id: 1, secret: {value: %%KEY%%}}]}
    active: [{module: ready, interval: 300ms}]
    instances: [{name: shop-1, zone: a, target: %q}]
`, hung.URL+"/healthz"))
	mp := startMonitor(t, daemon.Options{Config: cfg})
	apb15Sidecar(t, mp.D.UDPAddr())

	waitFor(t, 15*time.Second, "shop-1 to be down", func() bool {
		v, err := mp.Mon().Instance("shop", "shop-1")
		if err == nil && v.State == monitor.Down && v.Beats == 0 {
			t.Fatalf("down before the sidecar's first beat arrived: %q", v.Reason)
		}
		return err == nil && v.State == monitor.Down
	})
	v0, _ := mp.Mon().Instance("shop", "shop-1")
	time.Sleep(time.Second)
	v, _ := mp.Mon().Instance("shop", "shop-1")
	text := apb15Scrape(t, mp.Base+"/metrics")
	passiveOK, _ := apb15Value(text, "pulse_observations_total", `service="shop"`, `source="passive"`, `transport="udp"`, `result="healthy"`)
	passiveAll, _ := apb15Value(text, "pulse_observations_total", `service="shop"`, `source="passive"`)
	activeTimeout, _ := apb15Value(text, "pulse_observations_total", `service="shop"`, `source="active"`, `transport="http"`, `result="timeout"`)
	activeAll, _ := apb15Value(text, "pulse_observations_total", `service="shop"`, `source="active"`)
	downGauge, _ := apb15Value(text, "pulse_instances", `service="shop"`, `state="down"`)
	toDown, _ := apb15Value(text, "pulse_transitions_total", `service="shop"`, `to="down"`, `reason_class="probe_failed"`)
	lint := apb15Promtool(t, text)
	t.Logf("pulse: verdict %s %q; beats %d at the down verdict, %d a second later", v.State, v.Reason, v0.Beats, v.Beats)
	t.Logf("pulse: passive healthy %.0f of %.0f; active timeout %.0f of %.0f; pulse_instances{state=down} %.0f; transitions to down (probe_failed) %.0f; promtool: ok %q",
		passiveOK, passiveAll, activeTimeout, activeAll, downGauge, toDown, strings.TrimSpace(lint))
	if v.State != monitor.Down || !strings.Contains(v.Reason, "probe ready failed") || !strings.Contains(v.Reason, "(timeout)") {
		t.Errorf("verdict %s %q", v.State, v.Reason)
	}
	if v.Beats <= v0.Beats || v0.Beats == 0 {
		t.Errorf("the sidecar's beats did not keep arriving (%d then %d)", v0.Beats, v.Beats)
	}
	if passiveOK == 0 || passiveOK != passiveAll {
		t.Errorf("passive observations: %.0f healthy of %.0f", passiveOK, passiveAll)
	}
	if activeTimeout == 0 || activeTimeout != activeAll {
		t.Errorf("active observations: %.0f timeouts of %.0f", activeTimeout, activeAll)
	}
	if downGauge != 1 || toDown != 1 {
		t.Errorf("pulse_instances{state=down} = %.0f, transitions to down = %.0f; want 1 and 1", downGauge, toDown)
	}
}

// TestAP15Naive runs the seed's metrics on the same hung process and live
// sidecar: one counter, heartbeat_checks_total{result}, fed by the active
// probe of the hung endpoint and by every beat datagram of the same
// `pulse beat` sidecar (the seed's UDP receiver, which sends no ACK), and
// the health verdict read from it as the SLO does: success ratio ≥ 50 % →
// up. It must fail the criterion: no series tells the sources apart
// (there is no source label), and the verdict it yields is up, not down.
func TestAP15Naive(t *testing.T) {
	hung := apb15Hung(t)
	reg := prometheus.NewRegistry()
	checks := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "heartbeat_checks_total", Help: "Heartbeat checks by result."}, []string{"result"})
	reg.MustRegister(checks)

	// The seed's passive side: count every datagram as a success.
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 2048)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
			checks.WithLabelValues("success").Inc()
		}
	}()
	defer func() { pc.Close(); wg.Wait() }()
	apb15Sidecar(t, pc.LocalAddr().String())

	// The seed's active side: a probe of the hung endpoint every 300 ms.
	ctx, cancel := context.WithCancel(context.Background())
	wg.Add(1)
	go func() {
		defer wg.Done()
		client := &http.Client{Timeout: 250 * time.Millisecond}
		tick := time.NewTicker(300 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			resp, err := client.Get(hung.URL + "/healthz")
			if err == nil && resp.StatusCode == 200 {
				checks.WithLabelValues("success").Inc()
			} else {
				checks.WithLabelValues("failure").Inc()
			}
			if err == nil {
				resp.Body.Close()
			}
		}
	}()
	time.Sleep(3 * time.Second)
	cancel()

	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	text := apb15Scrape(t, srv.URL)
	ok, _ := apb15Value(text, "heartbeat_checks_total", `result="success"`)
	bad, _ := apb15Value(text, "heartbeat_checks_total", `result="failure"`)
	apb15Promtool(t, text)
	ratio := ok / (ok + bad)
	verdict := "down"
	if ratio >= 0.5 {
		verdict = "up"
	}
	t.Logf("seed: heartbeat_checks_total success %.0f failure %.0f → %.0f %% success → verdict %s; a source label: %v",
		ok, bad, 100*ratio, verdict, strings.Contains(text, "source="))
	if ok == 0 || bad == 0 {
		t.Fatalf("the replay did not run: %.0f successes, %.0f failures", ok, bad)
	}
	if strings.Contains(text, "source=") || verdict == "down" {
		t.Fatalf("the seed's metrics told the hang apart: the replay does not bite")
	}
}
