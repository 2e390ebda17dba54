package ingest

import (
	"sync"
	"sync/atomic"

	"github.com/fb4b1dcc/pulse/wire"
)

const tableShards = 64

// table interns instances: the first authenticated beat of an instance
// creates its entry (the only allocation on the UDP path), later beats find
// it with a non-allocating map lookup. The table is bounded; entries idle
// longer than the TTL are swept.
type table struct {
	shards [tableShards]tshard
	count  atomic.Int64
	max    int64
}

type tshard struct {
	mu sync.RWMutex
	m  map[string]*instState
}

// instState is one instance's replay window and intern strings.
type instState struct {
	service, instance string
	mu                sync.Mutex
	win               wire.Window
	lastSeen          atomic.Int64 // receiver-relative monotonic ns
}

func newTable(max int) *table {
	t := &table{max: int64(max)}
	for i := range t.shards {
		t.shards[i].m = map[string]*instState{}
	}
	return t
}

// instKey writes the table key of (service, instance) into buf.
func instKey(buf, svc, inst []byte) []byte {
	buf = append(buf[:0], svc...)
	buf = append(buf, 0)
	return append(buf, inst...)
}

func shardOf(key []byte) int {
	// FNV-1a, inline so that hashing does not allocate.
	h := uint32(2166136261)
	for _, c := range key {
		h ^= uint32(c)
		h *= 16777619
	}
	return int(h % tableShards)
}

// get returns the entry for key, creating it from svc and inst if there is
// room; nil means the table is full.
func (t *table) get(key, svc, inst []byte) *instState {
	if st := t.find(key); st != nil {
		return st
	}
	return t.create(key, string(svc), string(inst))
}

// getString is get for ids that are strings already (HTTP, gRPC).
func (t *table) getString(key []byte, svc, inst string) *instState {
	if st := t.find(key); st != nil {
		return st
	}
	return t.create(key, svc, inst)
}

func (t *table) find(key []byte) *instState {
	sh := &t.shards[shardOf(key)]
	sh.mu.RLock()
	st := sh.m[string(key)]
	sh.mu.RUnlock()
	return st
}

func (t *table) create(key []byte, svc, inst string) *instState {
	sh := &t.shards[shardOf(key)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if st := sh.m[string(key)]; st != nil {
		return st
	}
	if t.count.Add(1) > t.max {
		t.count.Add(-1)
		return nil
	}
	st := &instState{service: svc, instance: inst}
	sh.m[string(key)] = st
	return st
}

// sweep removes entries not seen since cutoff and returns how many.
func (t *table) sweep(cutoff int64) int {
	n := 0
	for i := range t.shards {
		sh := &t.shards[i]
		sh.mu.Lock()
		for k, st := range sh.m {
			if st.lastSeen.Load() < cutoff {
				delete(sh.m, k)
				n++
			}
		}
		sh.mu.Unlock()
	}
	t.count.Add(int64(-n))
	return n
}

func (t *table) len() int { return int(t.count.Load()) }
