package udpingest

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/fb4b1dcc/pulse/bench/internal/child"
	"github.com/fb4b1dcc/pulse/bench/internal/result"
	"github.com/fb4b1dcc/pulse/bench/internal/stats"
)

// Modes are the receivers compared, baseline first.
var Modes = []string{"raw", "raw-echo", "readfrom", "ingest"}

// Measure runs rounds × every mode, interleaved, and returns each mode's
// results by round.
func Measure(ctx context.Context, r *child.Runner, quick bool) (map[string][]RecvResult, error) {
	in := BlastInput{Instances: 4096, Seqs: 256}
	rounds := 3
	if quick {
		in.Seqs, rounds = 24, 1
	}
	count := in.Instances * (in.Seqs - 1)
	recv, err := r.Run(ctx, RecvRole, "udp receivers", struct{}{})
	if err != nil {
		return nil, err
	}
	defer recv.Stop(5 * time.Second)
	bl, err := r.Run(ctx, BlastRole, "udp sender", in)
	if err != nil {
		return nil, err
	}
	defer bl.Stop(5 * time.Second)
	var ready map[string]int
	if err := bl.Next(ctx, &ready); err != nil {
		return nil, err
	}
	out := map[string][]RecvResult{}
	for round := range rounds {
		for _, mode := range Modes {
			var addr map[string]string
			if err := recv.Send(recvCmd{Mode: mode}); err != nil {
				return nil, err
			}
			if err := recv.Next(ctx, &addr); err != nil {
				return nil, err
			}
			var br BlastResult
			if mode == "ingest" {
				// Intern every instance once (its only allocation) before
				// measuring.
				if err := bl.Send(blastCmd{Addr: addr["addr"], Warm: true}); err != nil {
					return nil, err
				}
				if err := bl.Next(ctx, &br); err != nil {
					return nil, err
				}
				time.Sleep(200 * time.Millisecond)
			}
			var ok map[string]bool
			if err := recv.Send(recvCmd{Mark: true}); err != nil {
				return nil, err
			}
			if err := recv.Next(ctx, &ok); err != nil {
				return nil, err
			}
			if err := bl.Send(blastCmd{Addr: addr["addr"], Count: count}); err != nil {
				return nil, err
			}
			if err := bl.Next(ctx, &br); err != nil {
				return nil, err
			}
			time.Sleep(300 * time.Millisecond) // let the receiver drain its socket
			var res RecvResult
			if err := recv.Send(recvCmd{Stop: true}); err != nil {
				return nil, err
			}
			if err := recv.Next(ctx, &res); err != nil {
				return nil, err
			}
			r.Printf("  udp ingest round %d/%d %-8s: sent %s in %.2fs; received %s in %.2fs = %s",
				round+1, rounds, mode, stats.Count(int64(br.Sent)), br.Secs, stats.Count(res.Count), res.Secs, stats.Rate(rate(res)))
			out[mode] = append(out[mode], res)
		}
	}
	return out, nil
}

func rate(r RecvResult) float64 {
	if r.Secs <= 0 {
		return 0
	}
	return float64(r.Count) / r.Secs
}

func best(rs []RecvResult) RecvResult {
	sort.Slice(rs, func(i, j int) bool { return rate(rs[i]) > rate(rs[j]) })
	return rs[0]
}

// Raw is what Measure found, as the report saves it.
type Raw struct {
	Results map[string][]RecvResult
}

// Run measures; Render formats.
func Run(ctx context.Context, r *child.Runner, quick bool) (Raw, error) {
	res, err := Measure(ctx, r, quick)
	return Raw{Results: res}, err
}

// Render formats the comparison.
func Render(in Raw) *result.Section {
	sec := result.New("UDP beat ingest vs the physical limit")
	res := in.Results
	if len(res["raw"]) == 0 || len(res["ingest"]) == 0 {
		sec.Err = fmt.Errorf("no measurements")
		return sec
	}
	sec.P("One sender process blasts distinct, signed beats (4,096 instances × rising sequence numbers, 64 per `sendmmsg`, no flow control) at one UDP socket; the receivers run one at a time in another process, with the same %d reader goroutines and batch of %d. **raw**: `x/net/ipv4` `ReadBatch` counting datagrams (the physical limit); **raw-echo**: the same, plus one %d-byte reply per datagram written back with one `WriteBatch` per batch (the physical limit for a protocol that acknowledges every beat, as pulse's must so that senders retransmit lost beats, AP-03); **readfrom**: a plain `ReadFromUDPAddrPort` loop per reader; **ingest**: pulse's `ingest.Receiver` (decode, two HMAC-SHA256, intern, replay window, queue, sink that counts, and a signed ACK written back per beat with `sendmmsg`). Receivers are interleaved over rounds and each keeps its best round, so a burst of someone else's load does not decide the ratio. Allocations are the receiving process's mallocs during the round divided by beats.", res["raw"][0].Readers, Batch, EchoLen)
	raw := best(res["raw"])
	var rows [][]string
	for _, m := range Modes {
		b := best(res[m])
		var all []string
		for _, x := range res[m] {
			all = append(all, stats.Rate(rate(x)))
		}
		drops := "–"
		if len(b.Drops) > 0 {
			var ds []string
			for k, v := range b.Drops {
				ds = append(ds, fmt.Sprintf("%s %d", k, v))
			}
			sort.Strings(ds)
			drops = strings.Join(ds, ", ")
		}
		cpuPer := "–"
		if b.Count > 0 {
			cpuPer = fmt.Sprintf("%.2f µs", b.CPU/float64(b.Count)*1e6)
		}
		rows = append(rows, []string{m, stats.Rate(rate(b)), strings.Join(all, ", "), stats.Ratio(rate(b) / rate(raw)),
			fmt.Sprintf("%.4f", float64(b.Mallocs)/float64(max(b.Count, 1))), cpuPer, drops})
	}
	sec.Table([]string{"receiver", "best rate", "every round", "vs raw ReadBatch", "allocs per beat", "receiver CPU per beat", "ingest drops"}, rows)
	ing := best(res["ingest"])
	ratio := rate(ing) / rate(raw)
	echo := ""
	if len(res["raw-echo"]) > 0 {
		e := best(res["raw-echo"])
		echo = fmt.Sprintf("; against raw-echo, the limit for a protocol that acknowledges every beat: %s (%s)", stats.Ratio(rate(ing)/rate(e)), stats.Rate(rate(e)))
	}
	sec.Goal("UDP ingest ≥ 0.6 of raw ReadBatch", ratio >= 0.6, "%s (%s vs %s)%s%s", stats.Ratio(ratio), stats.Rate(rate(ing)), stats.Rate(rate(raw)), missBy(ratio, 0.6), echo)
	return sec
}

func missBy(got, want float64) string {
	if got >= want {
		return ""
	}
	return fmt.Sprintf("; short of the goal by %.0f %%", (want-got)/want*100)
}
