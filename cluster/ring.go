package cluster

import (
	"slices"
	"strings"
)

// Member is one live node as it announces itself under
// /pulse/v1/members/<id>.
type Member struct {
	ID   string `json:"id"`
	Zone string `json:"zone,omitempty"`
	// GRPC is the address peers dial for Forward and Confirm.
	GRPC string `json:"grpc"`
	// HTTP and UDP are the node's API and beat addresses, for operators
	// and for senders that pick a node.
	HTTP    string `json:"http,omitempty"`
	UDP     string `json:"udp,omitempty"`
	Started string `json:"started,omitempty"` // RFC 3339, display only
}

// Ring assigns every instance to one member by rendezvous (highest random
// weight) hashing: each member scores the instance, the highest score
// owns it. Removing a member moves only the instances it owned (each to
// its second choice); adding one takes from each member only what the
// newcomer now wins. A Ring is immutable.
type Ring struct {
	members []Member // by ID
	seeds   []uint64
}

// NewRing returns the ring of the given members (duplicates by ID keep
// the first).
func NewRing(members []Member) *Ring {
	ms := slices.Clone(members)
	slices.SortStableFunc(ms, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })
	ms = slices.CompactFunc(ms, func(a, b Member) bool { return a.ID == b.ID })
	r := &Ring{members: ms, seeds: make([]uint64, len(ms))}
	for i, m := range ms {
		r.seeds[i] = fmix64(fnvString(fnvOffset, m.ID))
	}
	return r
}

// Members returns the members, by ID.
func (r *Ring) Members() []Member { return slices.Clone(r.members) }

// Len is the number of members.
func (r *Ring) Len() int { return len(r.members) }

// Has reports whether id is a member.
func (r *Ring) Has(id string) bool { return r.index(id) >= 0 }

// Member returns the member with the given ID.
func (r *Ring) Member(id string) (Member, bool) {
	if i := r.index(id); i >= 0 {
		return r.members[i], true
	}
	return Member{}, false
}

func (r *Ring) index(id string) int {
	i, ok := slices.BinarySearchFunc(r.members, id, func(m Member, id string) int { return strings.Compare(m.ID, id) })
	if !ok {
		return -1
	}
	return i
}

// Same reports whether both rings have the same members (IDs and
// addresses).
func (r *Ring) Same(o *Ring) bool {
	return o != nil && slices.Equal(r.members, o.members)
}

// keyHash hashes an instance's name; it allocates nothing (Owns runs on
// the beat path).
func keyHash(service, instance string) uint64 {
	h := fnvString(fnvOffset, service)
	h *= fnvPrime // a zero byte between the names: ("ab","c") ≠ ("a","bc")
	return fnvString(h, instance)
}

// weight is member i's score for a key.
func (r *Ring) weight(i int, kh uint64) uint64 { return fmix64(fmix64(kh) ^ r.seeds[i]) }

// ownerIndex returns the index of the owning member, or -1 for an empty
// ring.
func (r *Ring) ownerIndex(kh uint64) int {
	best, bw := -1, uint64(0)
	for i := range r.members {
		if w := r.weight(i, kh); best < 0 || w > bw {
			best, bw = i, w
		}
	}
	return best
}

// Owner returns the ID of the member that owns the instance ("" for an
// empty ring).
func (r *Ring) Owner(service, instance string) string {
	if i := r.ownerIndex(keyHash(service, instance)); i >= 0 {
		return r.members[i].ID
	}
	return ""
}

// Ranked returns the members in the instance's order of preference (the
// owner first): the stable order in which peers are chosen for it.
func (r *Ring) Ranked(service, instance string) []Member {
	kh := keyHash(service, instance)
	idx := make([]int, len(r.members))
	w := make([]uint64, len(r.members))
	for i := range idx {
		idx[i], w[i] = i, r.weight(i, kh)
	}
	slices.SortFunc(idx, func(a, b int) int {
		switch {
		case w[a] > w[b]:
			return -1
		case w[a] < w[b]:
			return 1
		}
		return a - b
	})
	out := make([]Member, len(idx))
	for i, j := range idx {
		out[i] = r.members[j]
	}
	return out
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func fnvString(h uint64, s string) uint64 {
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return h
}

// fmix64 is MurmurHash3's finaliser: FNV alone mixes the last bytes of a
// name poorly, and names like i001, i002 differ only there.
func fmix64(k uint64) uint64 {
	k ^= k >> 33
	k *= 0xff51afd7ed558ccd
	k ^= k >> 33
	k *= 0xc4ceb9fe1a85ec53
	k ^= k >> 33
	return k
}
