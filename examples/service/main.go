// Command service is a small HTTP + gRPC server that embeds pulse's health
// package the intended way: dependency checks run in the background with
// their own interval and timeout, /livez /readyz /healthz and
// grpc.health.v1 answer from one cached state, and shutdown drains.
//
//	go run ./examples/service -hang   # the "database" hangs: readyz → 503, livez stays 200
package main

import (
	"context"
	"flag"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"google.golang.org/grpc"

	"github.com/fb4b1dcc/pulse/health"
	"github.com/fb4b1dcc/pulse/health/healthgrpc"
)

func main() {
	httpAddr := flag.String("http", "127.0.0.1:8080", "HTTP listen address")
	grpcAddr := flag.String("grpc", "127.0.0.1:9090", "gRPC listen address")
	hang := flag.Bool("hang", false, "make the database check hang forever (ignoring its context)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	// A database-like dependency: a ping that can be made to hang.
	ping := func(ctx context.Context) error {
		if *hang {
			select {} // a driver stuck on a half-open socket
		}
		return nil
	}
	h, err := health.New(health.Options{DrainDelay: 5 * time.Second},
		health.Check{Name: "db", Func: ping, Interval: 5 * time.Second, Timeout: time.Second, Groups: []string{"orders.v1.Orders"}},
	)
	if err != nil {
		slog.Error("health setup", "err", err)
		os.Exit(1)
	}
	go h.Run(context.Background()) // stopped by h.Shutdown below

	mux := http.NewServeMux()
	h.Register(mux) // /livez /readyz /healthz
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("hello\n")) })
	hs := &http.Server{Addr: *httpAddr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	gs := grpc.NewServer()
	healthgrpc.Register(gs, h)
	gl, err := net.Listen("tcp", *grpcAddr)
	if err != nil {
		slog.Error("grpc listen", "err", err)
		os.Exit(1)
	}
	go hs.ListenAndServe()
	go gs.Serve(gl)
	slog.Info("serving", "http", "http://"+*httpAddr+"/readyz?verbose", "grpc", *grpcAddr)

	<-ctx.Done()
	slog.Info("draining: readyz is 503 now, stopping in 5s")
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.Shutdown(sctx); err != nil {
		slog.Warn("health shutdown", "err", err) // the hung check never returns
	}
	hs.Shutdown(sctx)
	gs.GracefulStop()
}
