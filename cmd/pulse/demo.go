package main

import (
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/fb4b1dcc/pulse/internal/demo"
)

func newDemoCmd() *cobra.Command {
	var (
		f        serveFlags
		duration time.Duration
		cycle    time.Duration
		nodes    int
	)
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the monitor with a simulated fleet and a script of real faults",
		Long: `Start the monitor on embedded defaults (a temporary data directory unless
--data) and a simulated fleet of about 300 instances in 3 services and 3
zones over real loopback sockets: UDP beats through fault-injecting relays
and HTTP targets probed for real. A script replays the seed's incidents: an
RTT step, 30% loss, a hung dependency answering 200 {"code":503}, crashes, a
regional partition that triggers protection, and a hot reload of the beat
interval. The summary prints as it happens; at the end (--duration, default
until Ctrl-C) a scorecard says whether any healthy instance was declared
down and how fast the crashes were detected. Exit status 1 if the scorecard
shows a false down or an undetected crash.

With --cluster N the fleet is judged by N nodes coordinated through an
embedded etcd (docs/cluster.md), the API and dashboard are node-1's (the
whole fleet, mirrored), the hot reload is a push to etcd, and the last
node crashes a third into the run: its instances move to the survivors
when its lease expires, without a false down.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if nodes != 0 && (nodes < 2 || nodes > 9) {
				return &exitError{code: 2, msg: fmt.Sprintf("--cluster %d: give 2 to 9 nodes", nodes)}
			}
			c, err := f.loadConfig()
			if err != nil {
				return err
			}
			log, err := f.logger(c, discardUnlessDebug(f.logLevel), false)
			if err != nil {
				return err
			}
			card, err := demo.Run(cmd.Context(), demo.Options{HTTPAddr: f.httpAddr, GRPCAddr: f.grpcAddr, UDPAddr: f.udpAddr,
				DataDir: f.dataDir, Duration: duration, Cycle: cycle, Out: cmd.OutOrStdout(), Logger: log, Cluster: nodes})
			if err != nil {
				return err
			}
			if !card.OK() {
				return &exitError{code: 1, msg: "the scorecard shows a false down, an undetected crash or a failed takeover"}
			}
			return nil
		},
	}
	f.register(cmd, "")
	cmd.Flags().DurationVar(&duration, "duration", 0, "stop after this long and print the scorecard (default: until Ctrl-C)")
	cmd.Flags().DurationVar(&cycle, "cycle", 0, "length of one pass of the fault script (default 150s, or --duration if shorter)")
	cmd.Flags().IntVar(&nodes, "cluster", 0, "run N monitor nodes (2-9) on an embedded etcd and kill one mid-run")
	cmd.Flags().MarkHidden("config")
	cmd.Flags().MarkHidden("drain")
	cmd.Flags().MarkHidden("memory")
	return cmd
}

// discardUnlessDebug keeps the daemon's logs out of the demo's output
// unless --log-level is given.
func discardUnlessDebug(level string) *os.File {
	if level == "" {
		f, _ := os.Open(os.DevNull)
		return f
	}
	return os.Stderr
}
