package cluster

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/fb4b1dcc/pulse/store"
)

// The key layout in etcd (docs/cluster.md).
const (
	Prefix       = "/pulse/v1/"
	MembersKey   = Prefix + "members/"
	StateKey     = Prefix + "state/"
	ConfigKey    = Prefix + "config"
	ConfigStatus = Prefix + "config-status/"
)

// stateKey names an instance's published state. Names are path-escaped:
// an instance that registered by its beats may carry a slash.
func stateKey(service, instance string) string {
	return StateKey + url.PathEscape(service) + "/" + url.PathEscape(instance)
}

// parseStateKey is the reverse of stateKey.
func parseStateKey(k string) (store.Key, bool) {
	rest, ok := strings.CutPrefix(k, StateKey)
	if !ok {
		return store.Key{}, false
	}
	svc, inst, ok := strings.Cut(rest, "/")
	if !ok {
		return store.Key{}, false
	}
	s, err1 := url.PathUnescape(svc)
	i, err2 := url.PathUnescape(inst)
	if err1 != nil || err2 != nil || s == "" || i == "" {
		return store.Key{}, false
	}
	return store.Key{Service: s, Instance: i}, true
}

// stateRecord is the value of a state key: one instance's current state
// as its owner judged it, with the detector estimates a takeover seeds
// from. JSON, so `etcdctl get --prefix /pulse/v1/state/` is readable.
type stateRecord struct {
	Owner        string            `json:"owner"`
	Service      string            `json:"service"`
	Instance     string            `json:"instance"`
	Zone         string            `json:"zone,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
	State        string            `json:"state"`
	Since        time.Time         `json:"since,omitzero"`
	Reason       string            `json:"reason,omitempty"`
	LastBeat     time.Time         `json:"last_beat,omitzero"`
	LastProbe    time.Time         `json:"last_probe,omitzero"`
	MeanInterval time.Duration     `json:"mean_interval_ns,omitempty"`
	DevInterval  time.Duration     `json:"dev_interval_ns,omitempty"`
	RTT          time.Duration     `json:"rtt_ns,omitempty"`
	UpdatedAt    time.Time         `json:"updated_at,omitzero"`
}

func recordOf(owner string, si store.Instance) stateRecord {
	return stateRecord{Owner: owner, Service: si.Service, Instance: si.Instance, Zone: si.Zone, Labels: si.Labels,
		State: si.State, Since: si.Since, Reason: si.Reason, LastBeat: si.LastBeat, LastProbe: si.LastProbe,
		MeanInterval: si.MeanInterval, DevInterval: si.DevInterval, RTT: si.RTT, UpdatedAt: si.UpdatedAt}
}

func (r *stateRecord) instance() store.Instance {
	return store.Instance{Service: r.Service, Instance: r.Instance, Zone: r.Zone, Labels: r.Labels, State: r.State,
		Since: r.Since, Reason: r.Reason, LastBeat: r.LastBeat, LastProbe: r.LastProbe, MeanInterval: r.MeanInterval,
		DevInterval: r.DevInterval, RTT: r.RTT, UpdatedAt: r.UpdatedAt}
}

func decodeRecord(key string, v []byte) (store.Key, stateRecord, error) {
	k, ok := parseStateKey(key)
	if !ok {
		return k, stateRecord{}, fmt.Errorf("cluster: malformed state key %q", key)
	}
	var r stateRecord
	if err := json.Unmarshal(v, &r); err != nil {
		return k, r, fmt.Errorf("cluster: state %s: %w", key, err)
	}
	if r.Owner == "" {
		return k, r, fmt.Errorf("cluster: state %s has no owner", key)
	}
	r.Service, r.Instance = k.Service, k.Instance
	return k, r, nil
}

// ConfigStatusRecord is what each node reports under
// /pulse/v1/config-status/<node-id> after a configuration arrives from
// etcd: the hash it runs, and the hash and errors of the last one it
// rejected.
type ConfigStatusRecord struct {
	Node     string    `json:"node"`
	Applied  string    `json:"applied"`
	Rejected string    `json:"rejected,omitempty"`
	Errors   []string  `json:"errors,omitempty"`
	At       time.Time `json:"at"`
}
