package wire

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"sync"
)

// MinKeyLen is the shortest secret NewKey accepts (128 bits).
const MinKeyLen = 16

// ErrNoKey is returned when a packet is to be signed without a key.
var ErrNoKey = errors.New("wire: no signing key configured (give the sender a key: id:hex-secret)")

// Key is one HMAC-SHA256 secret with its id. Several keys with distinct ids
// may be live for a service at once, so a new key can be rolled out to
// receivers before senders switch to it. A Key is safe for concurrent use.
type Key struct {
	id     uint16
	secret []byte
	// Each hmac state (with its sum buffer) is reused so that signing and
	// verifying do not allocate per packet.
	pool sync.Pool
}

type macState struct {
	h   hash.Hash
	sum [sha256.Size]byte
}

// NewKey returns a key with the given id and secret (at least MinKeyLen
// bytes; the secret is copied).
func NewKey(id uint16, secret []byte) (*Key, error) {
	if len(secret) < MinKeyLen {
		return nil, fmt.Errorf("wire: key %d: secret is %d bytes, need at least %d (generate one with: head -c 32 /dev/urandom | xxd -p -c 64)", id, len(secret), MinKeyLen)
	}
	k := &Key{id: id, secret: append([]byte(nil), secret...)}
	k.pool.New = func() any { return &macState{h: hmac.New(sha256.New, k.secret)} }
	return k, nil
}

// ParseKey parses "ID:SECRET" (the format of a key file line), for
// example "1:9f86d081884c7d659a2feaa0c55ad015". The secret is used as
// written, byte for byte, exactly as the same string in pulse.yaml
// (`keys: [{id: 1, secret: {value: ...}}]`), so one string configures both
// ends; `openssl rand -hex 32` makes a good one. Surrounding space is
// ignored.
func ParseKey(s string) (*Key, error) {
	s = strings.TrimSpace(s)
	idText, secret, ok := strings.Cut(s, ":")
	if !ok {
		return nil, errors.New(`wire: key must look like "ID:SECRET", e.g. "1:9f86d081884c7d659a2feaa0c55ad015"`)
	}
	id, err := strconv.ParseUint(strings.TrimSpace(idText), 10, 16)
	if err != nil {
		return nil, fmt.Errorf("wire: key id %q: want a number 0..65535: %w", idText, err)
	}
	return NewKey(uint16(id), []byte(strings.TrimSpace(secret)))
}

// ParseKeyFile reads keys from a key file: one "ID:SECRET" per line,
// blank lines and lines starting with '#' ignored. A sender signs with the
// first key; a receiver accepts all of them.
func ParseKeyFile(data []byte) ([]*Key, error) {
	var keys []*Key
	seen := map[uint16]bool{}
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, err := ParseKey(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", i+1, err)
		}
		if seen[k.id] {
			return nil, fmt.Errorf("line %d: key id %d appears twice", i+1, k.id)
		}
		seen[k.id] = true
		keys = append(keys, k)
	}
	if len(keys) == 0 {
		return nil, errors.New(`wire: key file has no key (want lines "ID:SECRET")`)
	}
	return keys, nil
}

// ID returns the key id carried in packets signed with k.
func (k *Key) ID() uint16 { return k.id }

// String never shows the secret.
func (k *Key) String() string { return "wire.Key(" + strconv.Itoa(int(k.id)) + ")" }

// Equal reports whether k and o have the same id and secret.
func (k *Key) Equal(o *Key) bool {
	return k != nil && o != nil && k.id == o.id && subtle.ConstantTimeCompare(k.secret, o.secret) == 1
}

// mac computes HMAC(secret, msg || [svc 0x00 inst]) into the pooled state
// and returns it; the caller must put it back.
func (k *Key) mac(msg, svc, inst []byte) *macState {
	m := k.pool.Get().(*macState)
	m.h.Reset()
	m.h.Write(msg)
	if svc != nil || inst != nil {
		m.h.Write(svc)
		m.h.Write(zero[:])
		m.h.Write(inst)
	}
	m.h.Sum(m.sum[:0])
	return m
}

var zero = [1]byte{0}

func (k *Key) appendTag(dst, msg, svc, inst []byte) []byte {
	m := k.mac(msg, svc, inst)
	dst = append(dst, m.sum[:TagLen]...)
	k.pool.Put(m)
	return dst
}

func (k *Key) verify(msg, svc, inst, tag []byte) bool {
	m := k.mac(msg, svc, inst)
	ok := subtle.ConstantTimeCompare(m.sum[:TagLen], tag) == 1
	k.pool.Put(m)
	return ok
}

// Keyring maps each service to its live keys. It is immutable once built;
// to rotate, build a new one and swap it in atomically.
type Keyring struct {
	m map[string][]*Key
}

// NewKeyring builds a keyring. Every service needs at least one key and no
// two keys of a service may share an id.
func NewKeyring(keys map[string][]*Key) (*Keyring, error) {
	r := &Keyring{m: make(map[string][]*Key, len(keys))}
	var errs []error
	for svc, ks := range keys {
		if err := ValidID(svc); err != nil {
			errs = append(errs, fmt.Errorf("keyring: service %q: %w", svc, err))
			continue
		}
		if len(ks) == 0 {
			errs = append(errs, fmt.Errorf("keyring: service %q has no key", svc))
			continue
		}
		ids := map[uint16]bool{}
		for _, k := range ks {
			if k == nil {
				errs = append(errs, fmt.Errorf("keyring: service %q: nil key", svc))
				continue
			}
			if ids[k.id] {
				errs = append(errs, fmt.Errorf("keyring: service %q: key id %d appears twice", svc, k.id))
			}
			ids[k.id] = true
		}
		r.m[svc] = append([]*Key(nil), ks...)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return r, nil
}

// Lookup returns the key of service with the given id, or nil. It does not
// allocate.
func (r *Keyring) Lookup(service []byte, id uint16) *Key {
	if r == nil {
		return nil
	}
	for _, k := range r.m[string(service)] {
		if k.id == id {
			return k
		}
	}
	return nil
}

// HasService reports whether the keyring knows service.
func (r *Keyring) HasService(service []byte) bool {
	if r == nil {
		return false
	}
	_, ok := r.m[string(service)]
	return ok
}
