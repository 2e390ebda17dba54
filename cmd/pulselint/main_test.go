package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// badSrc has three findings of two analyzers plus one silenced finding.
const badSrc = `package bad

import (
	"context"
	"crypto/tls"
	"net"
	"time"
)

func dial(addr string) (*tls.Conn, error) {
	return tls.Dial("tcp", addr, &tls.Config{})
}

func beat(send func(), every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for range t.C {
		send()
	}
}

func admin(addr string) (net.Conn, error) {
	//pulselint:ignore nettimeout loopback admin socket with its own deadline
	return net.Dial("tcp", addr)
}

func good(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}
`

const goodSrc = `package good

import (
	"context"
	"net"
)

func dial(ctx context.Context, addr string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "tcp", addr)
}
`

// buildTool builds this command once for the test.
func buildTool(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "pulselint")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

func module(t *testing.T, name, src string) string {
	t.Helper()
	dir := t.TempDir()
	write(t, filepath.Join(dir, "go.mod"), "module example.com/"+name+"\n\ngo 1.23\n")
	write(t, filepath.Join(dir, name+".go"), src)
	return dir
}

func write(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

// run runs a command in dir with no network and returns its combined
// output and exit code.
func run(t *testing.T, dir string, name string, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=", "GOWORK=off", "GOPROXY=off", "GOTOOLCHAIN=local")
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	}
	t.Fatalf("%s %v: %v\n%s", name, args, err, out)
	return "", 0
}

func TestPulselint(t *testing.T) {
	bin := buildTool(t)

	t.Run("standalone reports and fails", func(t *testing.T) {
		dir := module(t, "bad", badSrc)
		out, code := run(t, dir, bin, "./...")
		if code == 0 {
			t.Fatalf("exit 0 with findings:\n%s", out)
		}
		for _, want := range []string{"bad.go:11:9: tls.Dial has no timeout", "bad.go:17:2: this ticker loop has no exit path"} {
			if !strings.Contains(out, want) {
				t.Errorf("missing %q in:\n%s", want, out)
			}
		}
		if n := strings.Count(out, "bad.go:"); n != 2 {
			t.Errorf("%d findings, want 2 (the ignored net.Dial is silenced):\n%s", n, out)
		}
	})

	t.Run("analyzer disabled by flag", func(t *testing.T) {
		dir := module(t, "bad", badSrc)
		out, code := run(t, dir, bin, "-nettimeout=false", "./...")
		if code == 0 || strings.Contains(out, "tls.Dial") || !strings.Contains(out, "no exit path") {
			t.Fatalf("exit %d, output:\n%s", code, out)
		}
		out, code = run(t, dir, bin, "-nettimeout=false", "-tickerstop=false", "./...")
		if code != 0 || strings.TrimSpace(out) != "" {
			t.Fatalf("exit %d with both analyzers off, output:\n%s", code, out)
		}
	})

	t.Run("clean code exits 0", func(t *testing.T) {
		dir := module(t, "good", goodSrc)
		if out, code := run(t, dir, bin, "./..."); code != 0 || strings.TrimSpace(out) != "" {
			t.Fatalf("exit %d, output:\n%s", code, out)
		}
	})

	t.Run("go vet -vettool", func(t *testing.T) {
		dir := module(t, "bad", badSrc)
		out, code := run(t, dir, "go", "vet", "-vettool="+bin, "./...")
		if code == 0 || !strings.Contains(out, "tls.Dial has no timeout") || !strings.Contains(out, "no exit path") {
			t.Fatalf("exit %d, output:\n%s", code, out)
		}
		good := module(t, "good", goodSrc)
		if out, code := run(t, good, "go", "vet", "-vettool="+bin, "./..."); code != 0 {
			t.Fatalf("vet on clean code: exit %d\n%s", code, out)
		}
	})

	t.Run("fix applies suggested fixes", func(t *testing.T) {
		dir := module(t, "bad", badSrc)
		if out, code := run(t, dir, bin, "-fix", "-tickerstop=false", "./..."); code == 0 {
			t.Logf("fix run output:\n%s", out)
		}
		src, err := os.ReadFile(filepath.Join(dir, "bad.go"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(src), "tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, \"tcp\", addr, &tls.Config{})") {
			t.Fatalf("fix not applied:\n%s", src)
		}
		if out, code := run(t, dir, "go", "build", "./..."); code != 0 {
			t.Fatalf("fixed code does not build:\n%s", out)
		}
		if out, code := run(t, dir, bin, "-tickerstop=false", "./..."); code != 0 {
			t.Fatalf("finding left after -fix: exit %d\n%s", code, out)
		}
	})
}
