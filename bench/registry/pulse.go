package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"

	"github.com/fb4b1dcc/pulse/api"
	"github.com/fb4b1dcc/pulse/bench/internal/child"
	"github.com/fb4b1dcc/pulse/config"
	"github.com/fb4b1dcc/pulse/ingest"
	"github.com/fb4b1dcc/pulse/monitor"
	pulsev1 "github.com/fb4b1dcc/pulse/proto/pulse/v1"
	"github.com/fb4b1dcc/pulse/status"
	"github.com/fb4b1dcc/pulse/wire"
)

// Role names.
const (
	PulseServerRole = "pulse-registry"
	PulseLoadRole   = "pulse-load"
)

// Credentials of the pulse side.
const (
	Service = "reg"
	Secret  = "registry-bench-secret-0123456789abcdef"
	Token   = "registry-bench-token-0123456789abcdef"
)

// ServerInput configures the pulse server child.
type ServerInput struct {
	MaxInstances int
	Interval     time.Duration
}

// PulseServerMain runs what `pulse serve` runs for beats (ingest with UDP
// and gRPC, the monitor, the gRPC API with Watch) without the HTTP API,
// dashboard and store, with ingest's instance table sized for the run
// (daemon.Options cannot raise it yet; see the report).
func PulseServerMain(ctx context.Context, c *child.Conn) (any, error) {
	var in ServerInput
	if err := c.Input(&in); err != nil {
		return nil, err
	}
	cfg, err := config.Parse("registry.yaml", fmt.Appendf(nil, `
profile: lan
services:
  - name: %s
    passive:
      interval: %s
      jitter: 1ms
      keys:
        - {id: 1, secret: {value: %s}}
      tokens:
        - {value: %s}
`, Service, in.Interval, Secret, Token))
	if err != nil {
		return nil, err
	}
	mon, err := monitor.New(monitor.Options{})
	if err != nil {
		return nil, err
	}
	if err := mon.Apply(&cfg.Spec); err != nil {
		return nil, err
	}
	key, err := wire.NewKey(1, []byte(Secret))
	if err != nil {
		return nil, err
	}
	ring, err := wire.NewKeyring(map[string][]*wire.Key{Service: {key}})
	if err != nil {
		return nil, err
	}
	udp, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	glis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	var judged atomic.Uint64
	sink := ingest.SinkFunc(func(obs []ingest.Observation) {
		mon.ObserveBatch(obs)
		judged.Add(uint64(len(obs)))
	})
	recv, err := ingest.New(ingest.Config{UDPConn: udp, Keys: ring, Tokens: map[string][]string{Service: {Token}},
		Sink: sink, Directives: mon.Directives, MaxInstances: in.MaxInstances + 1024})
	if err != nil {
		return nil, err
	}
	gs := grpc.NewServer()
	api.RegisterGRPC(gs, mon, recv, api.New(mon, api.Options{}))
	rctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		gs.Stop()
		cancel()
		wg.Wait()
	}()
	wg.Add(3)
	go func() { defer wg.Done(); _ = mon.Run(rctx) }()
	go func() { defer wg.Done(); _ = recv.Run(rctx) }()
	go func() { defer wg.Done(); _ = gs.Serve(glis) }()
	<-recv.Ready()
	if err := c.Send(map[string]string{"udp": udp.LocalAddr().String(), "grpc": glis.Addr().String()}); err != nil {
		return nil, err
	}
	for raw := range c.Commands() {
		var cmd struct{ Light bool }
		_ = json.Unmarshal(raw, &cmd)
		var st ServerStats
		if !cmd.Light {
			st = selfStats()
		}
		rs := recv.Stats()
		st.Accepted = rs.Accepted
		st.Judged = judged.Load()
		st.Drops = map[string]uint64{}
		for _, r := range ingest.DropReasons() {
			if n := rs.Drops(r); n > 0 {
				st.Drops[r.String()] = n
			}
		}
		st.Instances = rs.Instances
		st.States = map[string]int{}
		mon.Counts(func(_, _ string, s monitor.State, n int) { st.States[s.String()] += n })
		if err := c.Send(st); err != nil {
			return nil, err
		}
	}
	return nil, nil
}

// pulseLoad is the pulse load generator's state: one epoch per instance
// (base + index), so an ACK's epoch says whose it is.
type pulseLoad struct {
	in       LoadInput
	grpcMode bool
	base     uint64
	names    [][]byte
	seq      []uint64 // owned by the instance's block goroutine
	lastAck  []atomic.Int64
	killed   []atomic.Bool
	downAt   []atomic.Int64
	heldAt   []atomic.Int64 // first report of a held verdict, after the kill
	states   sync.Map       // index → last state name (killed instances)
	sent     atomic.Int64
	acked    atomic.Int64
	falseDn  atomic.Int64
	watched  atomic.Int64
	blastTil atomic.Int64 // unix nanos; while now < it, blocks blast
}

const blocks = 4

func instName(i int) string { return "p-" + strconv.Itoa(i) }

// PulseLoadMain registers N instances by beating (UDP or gRPC, by
// LoadInput: GRPC set and UDP empty means gRPC) and keeps them beating
// until stdin closes.
func PulseLoadMain(ctx context.Context, c *child.Conn) (any, error) {
	var in LoadInput
	if err := c.Input(&in); err != nil {
		return nil, err
	}
	l := &pulseLoad{in: in, grpcMode: in.UDP == "", base: uint64(time.Now().UnixNano()),
		names: make([][]byte, in.N), seq: make([]uint64, in.N),
		lastAck: make([]atomic.Int64, in.N), killed: make([]atomic.Bool, in.N), downAt: make([]atomic.Int64, in.N), heldAt: make([]atomic.Int64, in.N)}
	for i := range l.names {
		l.names[i] = []byte(instName(i))
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()

	conn, err := grpc.NewClient(in.GRPC, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	cl := pulsev1.NewMonitorClient(conn)
	// The watcher, over the API, as a client of the registry would.
	ws, err := cl.Watch(ctx, &pulsev1.WatchRequest{FromNow: true, Service: Service})
	if err != nil {
		return nil, fmt.Errorf("watch: %w", err)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			ev, err := ws.Recv()
			if err != nil {
				return
			}
			i, err := strconv.Atoi(ev.GetInstance()[min(2, len(ev.GetInstance())):])
			if err != nil || i < 0 || i >= in.N {
				continue
			}
			if l.killed[i].Load() {
				l.states.Store(i, ev.GetTo())
				// A held verdict is reported at once, with its reason:
				// protection (AP-16) or the hold of coincident suspicions.
				if ev.GetTo() == "protected" || ev.GetSource() == "protection" {
					l.heldAt[i].CompareAndSwap(0, time.Now().UnixNano())
				}
			}
			if ev.GetTo() != "down" {
				continue
			}
			l.watched.Add(1)
			if l.killed[i].Load() {
				l.downAt[i].CompareAndSwap(0, time.Now().UnixNano())
			} else {
				l.falseDn.Add(1)
			}
		}
	}()

	key, err := wire.NewKey(1, []byte(Secret))
	if err != nil {
		return nil, err
	}
	for b := range blocks {
		lo, hi := b*in.N/blocks, (b+1)*in.N/blocks
		if l.grpcMode {
			md := metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+Token)
			st, err := cl.Beat(md)
			if err != nil {
				return nil, fmt.Errorf("beat stream: %w", err)
			}
			wg.Add(2)
			go func() { defer wg.Done(); l.grpcAcks(st) }()
			go func() { defer wg.Done(); l.schedule(ctx, lo, hi, grpcSender(st)) }()
			continue
		}
		ua, err := net.ResolveUDPAddr("udp", in.UDP)
		if err != nil {
			return nil, err
		}
		uc, err := net.DialUDP("udp", nil, ua)
		if err != nil {
			return nil, err
		}
		_ = uc.SetWriteBuffer(8 << 20)
		if in.NoAcks {
			_ = uc.SetReadBuffer(4096) // the kernel drops the ACKs
		} else {
			_ = uc.SetReadBuffer(8 << 20)
			wg.Add(1)
			go func() { defer wg.Done(); l.udpAcks(uc) }()
		}
		wg.Add(1)
		go func() { defer wg.Done(); l.schedule(ctx, lo, hi, udpSender(uc, key)); uc.Close() }()
	}
	if err := c.Send(map[string]bool{"started": true}); err != nil {
		return nil, err
	}
	for raw := range c.Commands() {
		var cmd LoadCmd
		if err := json.Unmarshal(raw, &cmd); err != nil {
			return nil, err
		}
		switch {
		case cmd.Mark:
			ct := Counters{At: time.Now(), Registered: in.N, Renewals: l.acked.Load(), Sent: l.sent.Load(),
				Expired: int(l.falseDn.Load()), Watched: l.watched.Load()}
			if err := c.Send(ct); err != nil {
				return nil, err
			}
		case cmd.Blast:
			l.blastTil.Store(time.Now().Add(time.Duration(cmd.Secs * float64(time.Second))).UnixNano())
			time.Sleep(time.Duration(cmd.Secs*float64(time.Second)) + 50*time.Millisecond)
			if err := c.Send(map[string]int64{"sent": l.sent.Load()}); err != nil {
				return nil, err
			}
		case cmd.Kill:
			to := min(cmd.From+cmd.Count, in.N)
			killAt := time.Now()
			for i := cmd.From; i < to; i++ {
				l.killed[i].Store(true)
			}
			deadline := killAt.Add(cmd.Wait)
			for time.Now().Before(deadline) {
				seen := 0
				for i := cmd.From; i < to; i++ {
					if l.downAt[i].Load() != 0 {
						seen++
					}
				}
				if seen == to-cmd.From {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			res := KillResult{Count: to - cmd.From, States: map[string]int{}}
			var last, lastHeld int64
			for i := cmd.From; i < to; i++ {
				if h := l.heldAt[i].Load(); h != 0 {
					res.Held++
					lastHeld = max(lastHeld, h)
				}
				if s, ok := l.states.Load(i); ok {
					res.States[s.(string)]++
				} else {
					res.States["(no event)"]++
				}
				d := l.downAt[i].Load()
				if d == 0 {
					continue
				}
				res.Seen++
				res.FromLast = append(res.FromLast, float64(d-l.lastAck[i].Load())/1e9)
				last = max(last, d)
			}
			if last > 0 {
				res.AllVisible = float64(last-killAt.UnixNano()) / 1e9
			}
			if lastHeld > 0 {
				res.AllHeld = float64(lastHeld-killAt.UnixNano()) / 1e9
			}
			if err := c.Send(res); err != nil {
				return nil, err
			}
		}
	}
	return nil, nil
}

// sendFunc sends the beats of instances idx (seq already advanced).
type sendFunc func(l *pulseLoad, idx []int) error

// schedule beats instances [lo, hi) once per interval each, spread evenly
// over the interval (instance lo+k at phase k/(hi-lo) of it), checking
// every 2 ms what has come due; while a blast is on it sends round-robin
// as fast as it can instead.
func (l *pulseLoad) schedule(ctx context.Context, lo, hi int, send sendFunc) {
	n := hi - lo
	if n <= 0 {
		return
	}
	iv := l.in.Interval
	start := time.Now()
	cursor := 0 // next instance offset due, counting up without wrap
	idx := make([]int, 0, 64)
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	flush := func() bool {
		if len(idx) == 0 {
			return true
		}
		err := send(l, idx)
		idx = idx[:0]
		return err == nil || ctx.Err() == nil
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		if now.UnixNano() < l.blastTil.Load() {
			for time.Now().UnixNano() < l.blastTil.Load() && ctx.Err() == nil {
				for k := 0; k < 64; k++ {
					i := lo + cursor%n
					cursor++
					if !l.killed[i].Load() {
						idx = append(idx, i)
					}
				}
				if !flush() {
					return
				}
			}
			start = time.Now().Add(-time.Duration(float64(cursor%n) / float64(n) * float64(iv)))
			cursor %= n
			continue
		}
		// Every instance whose phase has passed since start.
		due := int(float64(now.Sub(start)) / float64(iv) * float64(n))
		for ; cursor < due; cursor++ {
			i := lo + cursor%n
			if l.killed[i].Load() {
				continue
			}
			idx = append(idx, i)
			if len(idx) == cap(idx) && !flush() {
				return
			}
		}
		if !flush() {
			return
		}
	}
}

func udpSender(uc *net.UDPConn, key *wire.Key) sendFunc {
	pc := ipv4.NewPacketConn(uc)
	msgs := make([]ipv4.Message, 64)
	bufs := make([][]byte, 64)
	for i := range bufs {
		bufs[i] = make([]byte, 0, wire.MaxBeatSize)
		msgs[i].Buffers = make([][]byte, 1)
	}
	return func(l *pulseLoad, idx []int) error {
		now := time.Now()
		for k, i := range idx {
			l.seq[i]++
			b := wire.Beat{Status: status.Healthy, Interval: l.in.Interval, Epoch: l.base + uint64(i), Seq: l.seq[i],
				SentAt: time.Duration(now.UnixNano()), Service: []byte(Service), Instance: l.names[i]}
			var err error
			bufs[k], err = wire.AppendBeat(bufs[k][:0], &b, key)
			if err != nil {
				return err
			}
			msgs[k].Buffers[0] = bufs[k]
		}
		off := 0
		for off < len(idx) {
			m, err := pc.WriteBatch(msgs[off:len(idx)], 0)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return err
				}
				continue
			}
			off += m
		}
		l.sent.Add(int64(len(idx)))
		return nil
	}
}

func (l *pulseLoad) udpAcks(uc *net.UDPConn) {
	pc := ipv4.NewPacketConn(uc)
	msgs := make([]ipv4.Message, 64)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, 256)}
	}
	var a wire.Ack
	for {
		k, err := pc.ReadBatch(msgs, 0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		now := time.Now().UnixNano()
		for _, m := range msgs[:k] {
			if wire.DecodeAck(m.Buffers[0][:m.N], &a) != nil {
				continue
			}
			if i := int(a.Epoch - l.base); i >= 0 && i < len(l.lastAck) {
				l.lastAck[i].Store(now)
				l.acked.Add(1)
			}
		}
	}
}

func grpcSender(st pulsev1.Monitor_BeatClient) sendFunc {
	var req pulsev1.BeatRequest
	return func(l *pulseLoad, idx []int) error {
		now := time.Now().UnixNano()
		for _, i := range idx {
			l.seq[i]++
			req.Reset()
			req.Service, req.Instance = Service, instName(i)
			req.Epoch, req.Seq, req.SentAtNs = l.base+uint64(i), l.seq[i], now
			req.Status = pulsev1.HealthStatus_HEALTH_STATUS_HEALTHY
			req.IntervalMs = uint32(l.in.Interval.Milliseconds())
			if err := st.Send(&req); err != nil {
				return err
			}
		}
		l.sent.Add(int64(len(idx)))
		return nil
	}
}

func (l *pulseLoad) grpcAcks(st pulsev1.Monitor_BeatClient) {
	for {
		a, err := st.Recv()
		if err != nil {
			return
		}
		if a.GetCode() != pulsev1.BeatAck_CODE_ACCEPTED && a.GetCode() != pulsev1.BeatAck_CODE_DUPLICATE {
			continue
		}
		if i := int(a.GetEpoch() - l.base); i >= 0 && i < len(l.lastAck) {
			l.lastAck[i].Store(time.Now().UnixNano())
			l.acked.Add(1)
		}
	}
}
