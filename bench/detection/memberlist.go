package detection

import (
	"fmt"
	"io"
	"log"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/memberlist"
)

// mlCluster is N memberlist members in this process, each with its own
// UDP and TCP sockets on loopback.
type mlCluster struct {
	f       *faults
	members []*mlMember
	byAddr  map[string]int
	log     eventLog
	started time.Time
}

type mlMember struct {
	idx     int
	addr    string
	ml      *memberlist.Memberlist
	mu      sync.Mutex
	crashed bool
}

// mlDelegate records one member's view of the others.
type mlDelegate struct {
	c        *mlCluster
	observer int
}

func memberIndex(name string) int {
	i, err := strconv.Atoi(strings.TrimPrefix(name, "m"))
	if err != nil {
		return -1
	}
	return i
}

func (d *mlDelegate) NotifyJoin(n *memberlist.Node) {
	if i := memberIndex(n.Name); i >= 0 && i != d.observer {
		d.c.log.add(event{At: time.Now(), Observer: d.observer, Subject: i, To: "alive"})
	}
}

func (d *mlDelegate) NotifyLeave(n *memberlist.Node) {
	if i := memberIndex(n.Name); i >= 0 && i != d.observer {
		d.c.log.add(event{At: time.Now(), Observer: d.observer, Subject: i, To: "dead"})
	}
}

func (d *mlDelegate) NotifyUpdate(*memberlist.Node) {}

func newMLCluster(n int, seed uint64) (*mlCluster, error) {
	c := &mlCluster{f: newFaults(), byAddr: map[string]int{}, started: time.Now()}
	quiet := log.New(io.Discard, "", 0)
	for i := range n {
		// Port 0 binds TCP first and then UDP on the same number, which
		// another socket may hold: retry, as memberlist itself does.
		var nt *memberlist.NetTransport
		var err error
		for range 20 {
			nt, err = memberlist.NewNetTransport(&memberlist.NetTransportConfig{BindAddrs: []string{"127.0.0.1"}, BindPort: 0, Logger: quiet})
			if err == nil || !strings.Contains(err.Error(), "address already in use") {
				break
			}
		}
		if err != nil {
			c.close()
			return nil, fmt.Errorf("memberlist transport %d: %w", i, err)
		}
		port := nt.GetAutoBindPort()
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		// DefaultLANConfig as its documentation recommends for a LAN; only
		// identity, addresses, transport, logging and events are set.
		cfg := memberlist.DefaultLANConfig()
		cfg.Name = fmt.Sprintf("m%03d", i)
		cfg.BindAddr, cfg.AdvertiseAddr = "127.0.0.1", "127.0.0.1"
		cfg.BindPort, cfg.AdvertisePort = port, port
		cfg.Transport = newFaultTransport(nt, addr, c.f, seed+uint64(i)*7919)
		cfg.LogOutput = io.Discard
		cfg.Events = &mlDelegate{c: c, observer: i}
		ml, err := memberlist.Create(cfg)
		if err != nil {
			nt.Shutdown()
			c.close()
			return nil, fmt.Errorf("memberlist member %d: %w", i, err)
		}
		c.members = append(c.members, &mlMember{idx: i, addr: addr, ml: ml})
		c.byAddr[addr] = i
		if i > 0 {
			// Join through a few existing members, as a deployment would
			// through its seed list.
			seeds := []string{c.members[0].addr}
			if i > 1 {
				seeds = append(seeds, c.members[i/2].addr)
			}
			if _, err := ml.Join(seeds); err != nil {
				c.close()
				return nil, fmt.Errorf("memberlist member %d join: %w", i, err)
			}
		}
	}
	return c, nil
}

// converged waits until every member sees all n members alive.
func (c *mlCluster) converged(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		ok := true
		for _, m := range c.members {
			if m.ml.NumMembers() != len(c.members) {
				ok = false
				break
			}
		}
		if ok {
			return true
		}
		time.Sleep(200 * time.Millisecond)
	}
	return false
}

// crash stops a member without leaving: its sockets close and it answers
// nothing, as a killed process.
func (c *mlCluster) crash(i int) {
	m := c.members[i]
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.crashed {
		m.crashed = true
		_ = m.ml.Shutdown()
	}
}

func (c *mlCluster) setLoss(p float64) { c.f.setLoss(p) }

func (c *mlCluster) setCut(i int, on bool) {
	if on {
		c.f.setCut(c.members[i].addr)
	} else {
		c.f.setCut()
	}
}

func (c *mlCluster) bytes() int64 { return c.f.bytes.Load() }

func (c *mlCluster) faultStats() (int64, int64, int64, int64) {
	return c.f.udpSent.Load(), c.f.udpLost.Load(), c.f.dials.Load(), c.f.dialsLost.Load()
}

func (c *mlCluster) events() []event   { return c.log.snapshot() }
func (c *mlCluster) observers() int    { return len(c.members) }
func (c *mlCluster) deadState() string { return "dead" }

func (c *mlCluster) close() {
	var wg sync.WaitGroup
	for i := range c.members {
		wg.Add(1)
		go func() { defer wg.Done(); c.crash(i) }()
	}
	wg.Wait()
}
