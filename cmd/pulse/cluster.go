package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/fb4b1dcc/pulse/cluster"
	"github.com/fb4b1dcc/pulse/config"
	"github.com/fb4b1dcc/pulse/internal/daemon"
)

// clusterFlags run `pulse serve` as a node of a cluster; they override
// the configuration's cluster section.
type clusterFlags struct {
	endpoints, nodeID, zone, advertise string
	leaseTTL                           time.Duration
}

func (f *clusterFlags) register(cmd *cobra.Command) {
	fl := cmd.Flags()
	fl.StringVar(&f.endpoints, "cluster-endpoints", "", "etcd client URLs, comma-separated (http://etcd1:2379,...): run as a node of a cluster (docs/cluster.md)")
	fl.StringVar(&f.nodeID, "node-id", "", "this node's unique, stable name in the cluster")
	fl.StringVar(&f.zone, "zone", "", "this node's failure domain; down verdicts are confirmed from other zones")
	fl.StringVar(&f.advertise, "advertise", "", "gRPC host:port peers dial to reach this node (default --grpc-addr)")
	fl.DurationVar(&f.leaseTTL, "lease-ttl", 0, "how long a silent node keeps its instances before peers take over (default 10s)")
}

// options returns nil when no flag asks for cluster mode.
func (f *clusterFlags) options() *daemon.ClusterOptions {
	if f.endpoints == "" && f.nodeID == "" && f.zone == "" && f.advertise == "" && f.leaseTTL == 0 {
		return nil
	}
	return &daemon.ClusterOptions{Endpoints: splitList(f.endpoints), NodeID: f.nodeID, Zone: f.zone, Advertise: f.advertise, LeaseTTL: f.leaseTTL}
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

func newConfigPushCmd() *cobra.Command {
	var (
		endpoints string
		wait      time.Duration
	)
	cmd := &cobra.Command{
		Use:   "push FILE",
		Short: "Validate a configuration and store it in etcd for every node of a cluster to apply",
		Long: `Validate FILE as 'pulse config check' does, then write it to etcd
(/pulse/v1/config). Every node validates it again (with its own secrets
and files) and applies it through the same path as a file reload; a node
that rejects it logs every error and keeps its running configuration.
The command waits (--wait) for every live node to report and prints what
each did. Node-local sections (listen, data_dir, tls, log, cluster) are
not applied from etcd: they come from each node's own file and flags.

Exit status: 0 every node applied it; 1 the file is invalid (nothing was
written) or a node rejected it; 3 not every node answered within --wait.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			eps := splitList(endpoints)
			if len(eps) == 0 {
				return &exitError{code: 2, msg: "give --cluster-endpoints=http://etcd1:2379,..."}
			}
			c, err := config.Load(args[0])
			if err != nil {
				for _, fe := range config.FieldErrors(err) {
					fmt.Fprintln(cmd.ErrOrStderr(), fe.Error())
				}
				if len(config.FieldErrors(err)) == 0 {
					fmt.Fprintln(cmd.ErrOrStderr(), err)
				}
				return &exitError{code: 1, msg: fmt.Sprintf("%s is not valid; nothing was written to etcd", args[0])}
			}
			cli, err := cluster.Dial(eps, 5*time.Second)
			if err != nil {
				return err
			}
			defer cli.Close()
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			hash, err := cluster.Push(ctx, cli, c.Raw)
			cancel()
			if err != nil {
				return &exitError{code: 1, msg: fmt.Sprintf("%v (is etcd reachable at %s?)", err, endpoints)}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: pushed to %s (hash %s, %d services)\n", args[0], cluster.ConfigKey, hash, len(c.Spec.Services))
			if c.Cluster != nil || c.TLS != nil {
				fmt.Fprintln(cmd.OutOrStdout(), "note: the file's node-local sections (cluster, tls, listen) are not applied from etcd")
			}
			if wait <= 0 {
				return nil
			}
			wctx, cancel := context.WithTimeout(cmd.Context(), wait)
			defer cancel()
			sts, err := cluster.WaitApplied(wctx, cli, hash)
			if err != nil {
				return &exitError{code: 3, msg: fmt.Sprintf("reading the nodes' answers: %v", err)}
			}
			code := 0
			for _, s := range sts {
				switch {
				case s.Applied(hash):
					fmt.Fprintf(cmd.OutOrStdout(), "  %s: applied\n", s.Node)
				case s.Status.Rejected == hash:
					code = 1
					fmt.Fprintf(cmd.OutOrStdout(), "  %s: REJECTED, still running %s:\n", s.Node, s.Status.Applied)
					for _, e := range s.Status.Errors {
						fmt.Fprintf(cmd.OutOrStdout(), "      %s\n", e)
					}
				default:
					if code == 0 {
						code = 3
					}
					fmt.Fprintf(cmd.OutOrStdout(), "  %s: no answer within %s (running %s)\n", s.Node, wait, s.Status.Applied)
				}
			}
			if len(sts) == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "  no node is running; each applies it when it starts")
			}
			if code != 0 {
				return &exitError{code: code, msg: "not every node applied the configuration"}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&endpoints, "cluster-endpoints", "", "etcd client URLs, comma-separated")
	cmd.Flags().DurationVar(&wait, "wait", 10*time.Second, "how long to wait for every node's answer (0: do not wait)")
	return cmd
}
