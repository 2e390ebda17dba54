package incidents

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fb4b1dcc/pulse/api"
	"github.com/fb4b1dcc/pulse/internal/daemon"
	"github.com/fb4b1dcc/pulse/monitor"
)

// AP-08 (INC-2021-155, INC-2023-226, degraded instance judged healthy). The
// health check looked only at the HTTP status; an instance that had shed
// its own load and answered `200 {"code":503,"msg":"service degraded"}`
// was judged healthy, kept receiving traffic, and the overload cascaded.
//
// Replay (real HTTP, the pulse daemon probing): two instances of a
// service, each a real HTTP server; one answers 200 {"code":0,"msg":"ok"},
// the other 200 {"code":503,"msg":"service degraded"}. The probe module is
// the documented one: expect status 200 and json.code == 0; degraded when
// json.code == 503, with json.msg as the reason. Probes every 2 s.
//
// Pass criterion: after its first probe (the probe count is 1 when the
// state is read) the second instance is `degraded` with the reason
// "degraded: service degraded", its first transition was unknown→degraded
// (it was never in the healthy set), and the API's healthy set
// (state=alive,protected) lists the first instance and not the second. It
// is not `down`: degraded leaves the traffic set but is not killed.

const ap08Config = `
modules:
  biz:
    kind: http
    timeout: 1s
    conditions:
      expect: {status: 200, json: {code: 0}}
      degraded:
        - when: json.code == 503
          reason: json.msg
services:
  - name: pay
    active: [{module: biz, interval: 2s}]
    instances:
      - {name: pay-ok, target: %q}
      - {name: pay-shed, target: %q}
`

// ap08Target serves body with status 200 on a real listener; it counts
// requests.
func ap08Target(t *testing.T, body string) (url string, hits *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hits = new(atomic.Int64)
	srv := &http.Server{ReadHeaderTimeout: time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, body)
	})}
	done := make(chan struct{})
	go func() { defer close(done); srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close(); <-done })
	return "http://" + ln.Addr().String() + "/healthz", hits
}

const (
	ap08OK   = `{"code":0,"msg":"ok"}`
	ap08Shed = `{"code":503,"msg":"service degraded"}`
)

func TestAP08BusinessVerdicts(t *testing.T) {
	okURL, _ := ap08Target(t, ap08OK)
	shedURL, shedHits := ap08Target(t, ap08Shed)
	mon := startMonitor(t, daemon.Options{Config: parseConfig(t, fmt.Sprintf(ap08Config, okURL, shedURL))})

	var v monitor.InstanceView
	waitFor(t, 10*time.Second, "pay-shed to be judged", func() bool {
		var err error
		v, err = mon.Mon().Instance("pay", "pay-shed")
		return err == nil && v.State != monitor.Unknown
	})
	probes := uint64(0)
	if len(v.Probes) == 1 {
		probes = v.Probes[0].Probes
	}
	t.Logf("pay-shed after %d probe(s) (%d requests served): %v, %q (source %s)", probes, shedHits.Load(), v.State, v.Reason, v.Source)
	if v.State != monitor.Degraded || v.Reason != "degraded: service degraded" || probes != 1 {
		t.Errorf("pay-shed: %v %q after %d probes; want degraded, \"degraded: service degraded\", after 1 probe", v.State, v.Reason, probes)
	}
	waitFor(t, 10*time.Second, "pay-ok to be judged", func() bool {
		o, err := mon.Mon().Instance("pay", "pay-ok")
		return err == nil && o.State == monitor.Alive
	})

	// The healthy set, as the API serves it to a load balancer.
	resp, err := httpClient.Get(mon.Base + "/api/v1/services/pay/instances?state=alive,protected")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list api.InstanceList
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatalf("%s: %v", resp.Status, err)
	}
	var names []string
	for _, in := range list.Instances {
		names = append(names, in.Instance)
	}
	t.Logf("healthy set: %v", names)
	if len(names) != 1 || names[0] != "pay-ok" {
		t.Errorf("healthy set %v, want [pay-ok]", names)
	}
	shed := aTransitions(mon.Mon(), "pay", "pay-shed")
	if len(shed) == 0 || shed[0] != "unknown→degraded" || strings.Contains(strings.Join(shed, " "), "→down") {
		t.Errorf("pay-shed transitions %v, want unknown→degraded first and never down", shed)
	}
}

// TestAP08Naive runs the seed's check, `resp.StatusCode == 200`, against the
// same two targets. It must fail the criterion: the degraded instance is
// judged healthy, probe after probe, and stays in the healthy set.
func TestAP08Naive(t *testing.T) {
	okURL, _ := ap08Target(t, ap08OK)
	shedURL, _ := ap08Target(t, ap08Shed)
	isHealthy := func(url string) bool { // ❌ the seed: status only
		resp, err := httpClient.Get(url)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, resp.Body)
		return resp.StatusCode == http.StatusOK
	}
	var healthySet []string
	const probes = 3
	shedHealthy := 0
	for range probes {
		healthySet = healthySet[:0]
		for name, url := range map[string]string{"pay-ok": okURL, "pay-shed": shedURL} {
			if isHealthy(url) {
				healthySet = append(healthySet, name)
				if name == "pay-shed" {
					shedHealthy++
				}
			}
		}
	}
	t.Logf("status-only check: pay-shed judged healthy in %d of %d probes; healthy set %v", shedHealthy, probes, healthySet)
	if shedHealthy != probes {
		t.Errorf("the status-only check judged pay-shed unhealthy: the replay does not bite")
	}
}
