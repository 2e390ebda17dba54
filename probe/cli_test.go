package probe

// Tests of `pulse probe` as a process: exit codes, output, and agreement
// with the real grpc_health_probe. They live here (not in cmd/pulse) so the
// probe package's own tests cover its command line.

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

// pulseBinary builds cmd/pulse into the test's temporary directory (the
// build cache makes repeats cheap).
func pulseBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "pulse")
	out, err := exec.Command(goTool(t), "build", "-o", bin, "github.com/fb4b1dcc/pulse/cmd/pulse").CombinedOutput()
	if err != nil {
		t.Fatalf("go build cmd/pulse: %v\n%s", err, out)
	}
	return bin
}

// goTool finds the go command: on PATH, else where `go test` runs from.
func goTool(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	if p := filepath.Join(os.Getenv("GOROOT"), "bin", "go"); os.Getenv("GOROOT") != "" {
		return p
	}
	t.Fatal("the go command is not on PATH; it is needed to build cmd/pulse")
	return ""
}

// grpcHealthProbe finds the real grpc_health_probe binary. A missing binary
// fails the test: the comparison is the point.
func grpcHealthProbe(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"grpc-health-probe", "grpc_health_probe"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	if out, err := exec.Command(goTool(t), "env", "GOPATH").Output(); err == nil {
		for _, gp := range filepath.SplitList(strings.TrimSpace(string(out))) {
			p := filepath.Join(gp, "bin", "grpc-health-probe")
			if _, err := os.Stat(p); err == nil {
				return p
			}
		}
	}
	t.Fatal("grpc-health-probe not found on PATH or in $(go env GOPATH)/bin; install it with:\n" +
		"  go install github.com/grpc-ecosystem/grpc-health-probe@v0.4.62")
	return ""
}

type run struct {
	code   int
	stdout string
	stderr string
	took   time.Duration
}

func runCmd(t *testing.T, bin string, args ...string) run {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	start := time.Now()
	err := cmd.Run()
	r := run{stdout: out.String(), stderr: errb.String(), took: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	default:
		t.Fatalf("run %s: %v", bin, err)
	}
	return r
}

// TestPulseProbeAgreesWithGrpcHealthProbe: the real grpc_health_probe and
// `pulse probe grpc://…` give the same exit code for SERVING, NOT_SERVING,
// an unknown service and a refused connection, against grpc-go's health
// server, in plaintext and TLS.
func TestPulseProbeAgreesWithGrpcHealthProbe(t *testing.T) {
	ghp := grpcHealthProbe(t)
	pulse := pulseBinary(t)
	p := newPKI(t)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, p.caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	plain := newGRPCServer(t, grpcServerOpts{})
	secure := newGRPCServer(t, grpcServerOpts{pki: p})
	for _, s := range []*grpcServer{plain, secure} {
		s.health.SetServingStatus("up", healthpb.HealthCheckResponse_SERVING)
		s.health.SetServingStatus("down", healthpb.HealthCheckResponse_NOT_SERVING)
	}
	refused := closedPort(t, "tcp")
	silent := newSilentListener(t)

	cases := []struct {
		name    string
		addr    string
		service string
		tls     bool
		want    int
	}{
		{"serving", plain.addr, "up", false, 0},
		{"server serving", plain.addr, "", false, 0},
		{"not serving", plain.addr, "down", false, 4},
		{"unknown service", plain.addr, "nope", false, 3},
		{"refused", refused, "", false, 2},
		{"accepts, never speaks", silent.Addr(), "", false, 2},
		{"accepts, never speaks TLS", silent.Addr(), "", true, 2},
		{"tls serving", secure.addr, "up", true, 0},
		{"tls not serving", secure.addr, "down", true, 4},
		{"tls unknown service", secure.addr, "nope", true, 3},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			gargs := []string{"-addr=" + c.addr, "-service=" + c.service, "-connect-timeout=1s", "-rpc-timeout=1s"}
			pargs := []string{"probe", "grpc://" + c.addr, "--service", c.service, "--timeout", "2s"}
			if c.tls {
				gargs = append(gargs, "-tls", "-tls-ca-cert="+caFile)
				pargs = append(pargs, "--tls", "--ca", caFile)
			}
			g := runCmd(t, ghp, gargs...)
			pr := runCmd(t, pulse, pargs...)
			if g.code != c.want {
				t.Fatalf("grpc_health_probe exit %d, want %d (%s)", g.code, c.want, g.stderr)
			}
			if pr.code != g.code {
				t.Fatalf("pulse probe exit %d, grpc_health_probe %d\npulse: %sgrpc_health_probe: %s", pr.code, g.code, pr.stdout, g.stderr)
			}
		})
	}
	// The server flips to NOT_SERVING; both see it.
	plain.health.SetServingStatus("up", healthpb.HealthCheckResponse_NOT_SERVING)
	g := runCmd(t, ghp, "-addr="+plain.addr, "-service=up")
	pr := runCmd(t, pulse, "probe", "grpc://"+plain.addr, "--service", "up")
	if g.code != 4 || pr.code != 4 || !strings.HasPrefix(pr.stdout, "unhealthy grpc://") || !strings.Contains(pr.stdout, "NOT_SERVING") {
		t.Fatalf("after flip: grpc_health_probe %d, pulse %d %q", g.code, pr.code, pr.stdout)
	}
}

// TestPulseProbeHTTPExitCodes covers the HTTP side of the exit codes and
// the three output forms, as a Kubernetes exec probe would run them.
func TestPulseProbeHTTPExitCodes(t *testing.T) {
	pulse := pulseBinary(t)
	p := newPKI(t)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, p.caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	var body atomic.Value
	body.Store(`{"code":0}`)
	srv := newTLSServer(t, p, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			time.Sleep(time.Second)
		}
		io.WriteString(w, body.Load().(string))
	}), true)
	silent := newSilentListener(t)
	business := []string{"--ca", caFile, "--status", "200", "--expect", "json.code == 0",
		"--degraded", "json.code == 503", "--degraded-reason", "json.msg"}

	cases := []struct {
		name   string
		body   string
		args   []string
		want   int
		prefix string
	}{
		{"healthy", `{"code":0}`, append([]string{srv.URL + "/healthz"}, business...), 0, "healthy " + srv.URL + "/healthz "},
		{"degraded", `{"code":503,"msg":"service degraded"}`, append([]string{srv.URL + "/healthz"}, business...), 5, "degraded "},
		{"degraded ok for liveness", `{"code":503,"msg":"service degraded"}`, append([]string{srv.URL + "/healthz", "--degraded-ok"}, business...), 0, "degraded "},
		{"unhealthy", `{"code":1}`, append([]string{srv.URL + "/healthz"}, business...), 4, "unhealthy "},
		{"not json", `<html>`, append([]string{srv.URL + "/healthz"}, business...), 3, "unhealthy "},
		{"untrusted certificate", `{"code":0}`, []string{srv.URL + "/healthz"}, 2, "unhealthy "},
		{"response timeout", `{"code":0}`, []string{srv.URL + "/slow", "--ca", caFile, "--timeout", "300ms"}, 3, "unhealthy "},
		{"silent TLS server", "", []string{"https://" + silent.Addr() + "/", "--timeout", "300ms", "--insecure"}, 2, "unhealthy "},
		{"bad condition", "", []string{srv.URL, "--expect", "json.code =="}, 1, ""},
		{"no scheme", "", []string{"127.0.0.1:1"}, 1, ""},
		{"bad header", "", []string{srv.URL, "-H", "nocolon"}, 1, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.body != "" {
				body.Store(c.body)
			}
			r := runCmd(t, pulse, append([]string{"probe"}, c.args...)...)
			if r.code != c.want {
				t.Fatalf("exit %d, want %d\nstdout: %s\nstderr: %s", r.code, c.want, r.stdout, r.stderr)
			}
			if !strings.HasPrefix(r.stdout, c.prefix) || strings.Count(r.stdout, "\n") > 1 {
				t.Fatalf("want one line starting %q, got %q", c.prefix, r.stdout)
			}
			if c.want == 1 && r.stderr == "" {
				t.Fatal("bad arguments must say what is wrong on stderr")
			}
			if r.took > 3*time.Second {
				t.Fatalf("took %v", r.took)
			}
		})
	}

	body.Store(`{"code":503,"msg":"service degraded"}`)
	r := runCmd(t, pulse, append([]string{"probe", srv.URL + "/healthz", "-v"}, business...)...)
	if r.code != 5 || !strings.Contains(r.stdout, "degraded "+srv.URL+"/healthz") || !strings.HasSuffix(strings.SplitN(r.stdout, "\n", 2)[0], "service degraded") ||
		!strings.Contains(r.stdout, "  phases: dns=") || !strings.Contains(r.stdout, `  body: {"code":503,"msg":"service degraded"}`) ||
		!strings.Contains(r.stdout, "tls_handshakes=1") {
		t.Fatalf("verbose output:\n%s", r.stdout)
	}
	r = runCmd(t, pulse, append([]string{"probe", srv.URL + "/healthz", "--json"}, business...)...)
	var j struct {
		Status     string             `json:"status"`
		Reason     string             `json:"reason"`
		ExitCode   int                `json:"exit_code"`
		HTTPStatus int                `json:"http_status"`
		PhasesMS   map[string]float64 `json:"phases_ms"`
		Connected  bool               `json:"connected"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &j); err != nil {
		t.Fatalf("--json output is not JSON: %v\n%s", err, r.stdout)
	}
	if r.code != 5 || j.Status != "degraded" || j.Reason != "service degraded" || j.ExitCode != 5 || j.HTTPStatus != 200 ||
		j.PhasesMS["tls"] <= 0 || !j.Connected {
		t.Fatalf("json: %+v (exit %d)", j, r.code)
	}
}

// TestPulseProbeOtherKinds: tcp, tls and udp through the command line.
func TestPulseProbeOtherKinds(t *testing.T) {
	pulse := pulseBinary(t)
	redis := lineServer(t, "", func(l string) string { return "+PONG\r\n" })
	r := runCmd(t, pulse, "probe", "tcp://"+redis, "--send", `PING\r\n`, "--expect-reply", `^\+PONG`)
	if r.code != 0 || !strings.HasPrefix(r.stdout, "healthy tcp://") {
		t.Fatalf("tcp: %d %q %q", r.code, r.stdout, r.stderr)
	}
	r = runCmd(t, pulse, "probe", "tcp://"+redis, "--send", `PING\r\n`, "--expect-reply", `^-ERR`, "--timeout", "300ms")
	if r.code != 4 {
		t.Fatalf("tcp mismatch: %d %q", r.code, r.stdout)
	}
	r = runCmd(t, pulse, "probe", "tcp://"+closedPort(t, "tcp"))
	if r.code != 2 {
		t.Fatalf("tcp refused: %d %q", r.code, r.stdout)
	}
}
