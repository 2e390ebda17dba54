package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/fb4b1dcc/pulse/config"
	"github.com/fb4b1dcc/pulse/internal/daemon"
	"github.com/fb4b1dcc/pulse/telemetry"
)

// serveFlags are shared by serve and demo.
type serveFlags struct {
	configPath, httpAddr, grpcAddr, udpAddr, dataDir string
	logLevel, logFormat                              string
	drain                                            time.Duration
	memory                                           bool
}

func (f *serveFlags) register(cmd *cobra.Command, defaultData string) {
	fl := cmd.Flags()
	fl.StringVar(&f.configPath, "config", "", "configuration file (pulse.yaml); watched and reloaded on change and SIGHUP")
	fl.StringVar(&f.httpAddr, "http-addr", "", "HTTP listen address: API, dashboard, /metrics, /livez, /readyz (default 127.0.0.1:7700)")
	fl.StringVar(&f.grpcAddr, "grpc-addr", "", "gRPC listen address: pulse.v1.Monitor and grpc.health.v1 (default 127.0.0.1:7701)")
	fl.StringVar(&f.udpAddr, "udp-addr", "", "UDP beat listen address (default 127.0.0.1:7702)")
	fl.StringVar(&f.dataDir, "data", defaultData, "data directory holding pulse.db (default: data_dir from the config, else ./pulse-data)")
	fl.StringVar(&f.logLevel, "log-level", "", "debug, info, warn or error (default from config, else info)")
	fl.StringVar(&f.logFormat, "log-format", "", "json or text (default: text on a terminal, json otherwise)")
	fl.DurationVar(&f.drain, "drain", 5*time.Second, "how long /readyz answers 503 before the listeners close on shutdown")
	fl.BoolVar(&f.memory, "memory", false, "keep history in memory only (no pulse.db)")
}

// loadConfig reads --config, or the built-in defaults.
func (f *serveFlags) loadConfig() (*config.Config, error) {
	if f.configPath == "" {
		return config.Default()
	}
	c, err := config.Load(f.configPath)
	if err != nil {
		for _, fe := range config.FieldErrors(err) {
			fmt.Fprintln(os.Stderr, fe.Error())
		}
		return nil, fmt.Errorf("%s is not valid (fix the lines above; `pulse config check %s` checks without starting)", f.configPath, f.configPath)
	}
	return c, nil
}

// logger builds the daemon's logger: JSON by default, text on a terminal.
func (f *serveFlags) logger(c *config.Config, w io.Writer, terminal bool) (*slog.Logger, error) {
	level := f.logLevel
	if level == "" {
		level = c.Log.Level
	}
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	format := f.logFormat
	if format == "" {
		format = c.Log.Format
	}
	if format == "" {
		format = "json"
		if terminal {
			format = "text"
		}
	}
	if format != "json" && format != "text" {
		return nil, fmt.Errorf("--log-format %q: want json or text", format)
	}
	return telemetry.NewLogger(w, telemetry.LogOptions{Level: lv, Format: format}), nil
}

func (f *serveFlags) daemonOptions(c *config.Config, log *slog.Logger, out io.Writer) daemon.Options {
	return daemon.Options{Config: c, ConfigPath: f.configPath, HTTPAddr: f.httpAddr, GRPCAddr: f.grpcAddr, UDPAddr: f.udpAddr,
		DataDir: f.dataDir, InMemory: f.memory, DrainDelay: f.drain, Logger: log, Out: out, HandleSIGHUP: true}
}

func newServeCmd() *cobra.Command {
	var (
		f  serveFlags
		cf clusterFlags
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run the monitor: ingest beats, probe targets, judge, serve the API and dashboard",
		Long: `Run the pulse monitor. With no --config it runs on built-in defaults and
listens on 127.0.0.1 only. SIGINT/SIGTERM drain (/readyz turns 503 first)
and stop cleanly; SIGHUP reloads the configuration.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.loadConfig()
			if err != nil {
				return err
			}
			log, err := f.logger(c, cmd.ErrOrStderr(), isTerminal(os.Stderr))
			if err != nil {
				return err
			}
			opts := f.daemonOptions(c, log, cmd.OutOrStdout())
			opts.Cluster = cf.options()
			d, err := daemon.New(opts)
			if err != nil {
				return err
			}
			return d.Run(cmd.Context())
		},
	}
	f.register(cmd, "")
	cf.register(cmd)
	return cmd
}
