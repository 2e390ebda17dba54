package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/fb4b1dcc/pulse/api"
	"github.com/fb4b1dcc/pulse/monitor"
)

type statusFlags struct {
	addr, token, state, zone string
	watch, json, color       bool
	timeout                  time.Duration
}

func newStatusCmd() *cobra.Command {
	var f statusFlags
	cmd := &cobra.Command{
		Use:   "status [SERVICE]",
		Short: "Show the fleet as the monitor judges it (a client of the API)",
		Long: `Without SERVICE: every service with its count of instances per state,
and protection banners. With SERVICE: its instances, their state, reason,
last beat and RTT. --watch follows transitions live; --json prints the
API's JSON.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if f.token == "" {
				f.token = os.Getenv("PULSE_TOKEN")
			}
			out := cmd.OutOrStdout()
			if fl := cmd.Flags().Lookup("color"); fl == nil || !fl.Changed {
				file, ok := out.(*os.File)
				f.color = ok && isTerminal(file) && os.Getenv("NO_COLOR") == ""
			}
			c := &statusClient{base: strings.TrimRight(f.addr, "/"), token: f.token, http: &http.Client{Timeout: f.timeout}}
			if f.watch {
				return c.watch(cmd.Context(), out, f, args)
			}
			if len(args) == 0 {
				return c.services(cmd.Context(), out, f)
			}
			return c.instances(cmd.Context(), out, f, args[0])
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.addr, "addr", "http://127.0.0.1:7700", "the monitor's HTTP address")
	fl.StringVar(&f.token, "token", "", "API bearer token (default $PULSE_TOKEN)")
	fl.StringVar(&f.state, "state", "", "only instances in these states (e.g. down,suspect)")
	fl.StringVar(&f.zone, "zone", "", "only instances in this zone")
	fl.BoolVarP(&f.watch, "watch", "w", false, "follow transitions live")
	fl.BoolVar(&f.json, "json", false, "print JSON")
	fl.BoolVar(&f.color, "color", false, "colour the states (default: on a terminal)")
	fl.DurationVar(&f.timeout, "timeout", 10*time.Second, "timeout of each API request")
	return cmd
}

type statusClient struct {
	base, token string
	http        *http.Client
}

func (c *statusClient) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return &exitError{code: 2, msg: fmt.Sprintf("cannot reach the monitor at %s: %v (is `pulse serve` running? set --addr)", c.base, err)}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e api.Error
		json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&e)
		hint := ""
		if resp.StatusCode == http.StatusUnauthorized {
			hint = " (pass --token or set PULSE_TOKEN)"
		}
		return &exitError{code: 1, msg: fmt.Sprintf("%s: %s: %s%s", path, e.Error, e.Detail, hint)}
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

// stateColor uses a colour-blind-safe palette; the state name is always
// printed too, so colour is never the only signal.
func paint(on bool, st string) string {
	if !on {
		return st
	}
	codes := map[string]string{"alive": "38;5;33", "degraded": "38;5;214", "suspect": "38;5;208",
		"protected": "38;5;141", "down": "1;38;5;160", "unknown": "38;5;245"}
	if c, ok := codes[st]; ok {
		return "\x1b[" + c + "m" + st + "\x1b[0m"
	}
	return st
}

var stateOrder = []string{"alive", "degraded", "suspect", "protected", "down", "unknown"}

func (c *statusClient) services(ctx context.Context, out io.Writer, f statusFlags) error {
	var resp struct {
		Services []monitor.ServiceView `json:"services"`
	}
	if err := c.get(ctx, "/api/v1/services", &resp); err != nil {
		return err
	}
	if f.json {
		return printJSON(out, resp)
	}
	if len(resp.Services) == 0 {
		fmt.Fprintln(out, "no services (configure them in pulse.yaml)")
		return nil
	}
	tw := tabwriter.NewWriter(out, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "SERVICE\tINSTANCES\t"+strings.ToUpper(strings.Join(stateOrder, "\t")))
	for _, s := range resp.Services {
		row := []string{s.Name, fmt.Sprint(s.Instances)}
		for _, st := range stateOrder {
			n := s.Counts[st]
			cell := fmt.Sprint(n)
			if n > 0 && st != "alive" {
				cell = paint(f.color, cell)
			}
			row = append(row, cell)
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	tw.Flush()
	for _, s := range resp.Services {
		if s.Protected {
			fmt.Fprintf(out, "%s: %s since %s\n", paint(f.color, "protected"), s.Reason, s.Since.Local().Format("15:04:05"))
		}
		for _, z := range s.Zones {
			if z.Protected {
				fmt.Fprintf(out, "%s zone %s: %s since %s\n", s.Name, z.Name, z.Reason, z.Since.Local().Format("15:04:05"))
			}
		}
	}
	return nil
}

func ago(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	d := time.Since(t)
	if d < 0 {
		d = 0
	}
	return d.Round(100*time.Millisecond).String() + " ago"
}

func (c *statusClient) instances(ctx context.Context, out io.Writer, f statusFlags, service string) error {
	q := url.Values{}
	if f.state != "" {
		q.Set("state", f.state)
	}
	if f.zone != "" {
		q.Set("zone", f.zone)
	}
	var l api.InstanceList
	if err := c.get(ctx, "/api/v1/services/"+url.PathEscape(service)+"/instances?"+q.Encode(), &l); err != nil {
		return err
	}
	if f.json {
		return printJSON(out, l)
	}
	tw := tabwriter.NewWriter(out, 0, 2, 2, ' ', 0)
	fmt.Fprintln(tw, "INSTANCE\tZONE\tSTATE\tSINCE\tLAST BEAT\tLAST PROBE\tRTT\tREASON")
	for _, in := range l.Instances {
		rtt := "-"
		if in.RTT > 0 {
			rtt = in.RTT.Round(10 * time.Microsecond).String()
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", in.Instance, dash(in.Zone), paint(f.color, in.State.String()),
			ago(in.Since), ago(in.LastBeat), ago(in.LastProbe), rtt, in.Reason)
	}
	tw.Flush()
	fmt.Fprintf(out, "%d instance(s)\n", l.Total)
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func printJSON(out io.Writer, v any) error {
	enc := json.NewEncoder(out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// watch prints transitions as they happen, from the SSE stream.
func (c *statusClient) watch(ctx context.Context, out io.Writer, f statusFlags, args []string) error {
	q := url.Values{}
	if len(args) == 1 {
		q.Set("service", args[0])
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/api/v1/watch?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	// The stream is long-lived: no overall timeout, but the dial and the
	// response headers have one, and keepalive comments arrive every 15s.
	tr := &http.Transport{ResponseHeaderTimeout: f.timeout, IdleConnTimeout: time.Minute}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return &exitError{code: 2, msg: fmt.Sprintf("cannot reach the monitor at %s: %v", c.base, err)}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return &exitError{code: 1, msg: fmt.Sprintf("watch: HTTP %d (pass --token if the API requires one)", resp.StatusCode)}
	}
	fmt.Fprintln(out, "watching transitions (Ctrl-C to stop)")
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "data: ") {
			continue
		}
		var e monitor.Event
		if json.Unmarshal([]byte(line[6:]), &e) != nil || e.Seq == 0 {
			continue
		}
		if f.json {
			printJSON(out, e)
			continue
		}
		who := e.Service
		if e.Instance != "" {
			who += "/" + e.Instance
		}
		if e.Zone != "" {
			who += " (zone " + e.Zone + ")"
		}
		fmt.Fprintf(out, "%s  %-40s %s → %s  %s\n", e.Time.Local().Format("15:04:05.000"), who, dash(e.From), paint(f.color, e.To), e.Reason)
	}
	if ctx.Err() != nil {
		return nil
	}
	if err := sc.Err(); err != nil {
		return &exitError{code: 2, msg: "watch stream ended: " + err.Error()}
	}
	return nil
}
