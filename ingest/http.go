package ingest

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/fb4b1dcc/pulse/wire"
)

// Handler returns the HTTP beat endpoint. Mount it at wire.BeatPath
// ("/api/v1/beat"); it answers POST only. The Receiver's Run must be
// running for accepted beats to reach the Sink.
func (r *Receiver) Handler() http.Handler { return http.HandlerFunc(r.serveBeat) }

func (r *Receiver) newMux() http.Handler {
	mux := http.NewServeMux()
	mux.Handle(wire.BeatPath, r.Handler())
	return mux
}

func (r *Receiver) serveBeat(w http.ResponseWriter, req *http.Request) {
	defer func() {
		if p := recover(); p != nil {
			r.c.panics.Add(1)
			httpError(w, http.StatusInternalServerError, "internal", "the monitor failed to process the beat; it has been counted")
		}
	}()
	r.c.received[wire.HTTP].Add(1)
	if req.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		r.c.dropped[DropMalformed].Add(1)
		httpError(w, http.StatusMethodNotAllowed, "malformed", "POST a JSON beat to "+wire.BeatPath)
		return
	}
	var bj wire.BeatJSON
	bp := bodyPool.Get().(*[]byte)
	defer bodyPool.Put(bp)
	body, err := readBody(req.Body, (*bp)[:0], r.cfg.MaxBodyBytes)
	*bp = body[:0]
	if err != nil {
		if errors.Is(err, errTooLarge) {
			r.c.dropped[DropOversized].Add(1)
			httpError(w, http.StatusRequestEntityTooLarge, "oversized", "beat body larger than "+strconv.FormatInt(r.cfg.MaxBodyBytes, 10)+" bytes")
			return
		}
		r.c.dropped[DropMalformed].Add(1)
		httpError(w, http.StatusBadRequest, "malformed", "could not read the beat body: "+err.Error())
		return
	}
	if err := json.Unmarshal(body, &bj); err != nil {
		r.c.dropped[DropMalformed].Add(1)
		httpError(w, http.StatusBadRequest, "malformed", "beat body is not valid JSON: "+err.Error())
		return
	}
	q := beatReq{
		service: bj.Service, instance: bj.Instance, epoch: bj.Epoch, seq: bj.Seq,
		sentAt: time.Duration(bj.SentAtNS), status: bj.Status, reason: bj.Reason,
		interval: time.Duration(bj.IntervalMS) * time.Millisecond,
		rtt:      time.Duration(bj.RTTMicros) * time.Microsecond, attempt: bj.Attempt,
	}
	if msg := q.validate(); msg != "" {
		r.c.dropped[DropMalformed].Add(1)
		httpError(w, http.StatusBadRequest, "malformed", msg)
		return
	}
	if !r.authorized(q.service, bearer(req.Header.Get("Authorization"))) {
		r.c.dropped[DropAuth].Add(1)
		w.Header().Set("WWW-Authenticate", `Bearer realm="pulse"`)
		httpError(w, http.StatusUnauthorized, "auth", "missing or wrong bearer token for service "+strconv.Quote(q.service))
		return
	}
	if tp := req.Header.Get("traceparent"); tp != "" {
		q.trace, _ = wire.ParseTraceParent(tp) // a bad header loses the trace, not the beat
	}
	q.peer, _ = netip.ParseAddrPort(req.RemoteAddr)
	res := r.accept(wire.HTTP, &q)
	if !res.accepted {
		code := http.StatusServiceUnavailable
		if res.drop == DropReplay {
			code = http.StatusConflict
		} else {
			w.Header().Set("Retry-After", "1")
		}
		httpError(w, code, res.drop.String(), res.msg)
		return
	}
	ackCode := "accepted"
	if res.dup {
		ackCode = "duplicate"
	}
	// Written by hand: the answer is small and fixed, and this keeps the
	// handler's cost close to a bare 204.
	buf := append((*bp)[:0], `{"code":"`...)
	buf = append(buf, ackCode...)
	buf = append(buf, `","epoch":"`...)
	buf = strconv.AppendUint(buf, q.epoch, 10)
	buf = append(buf, `","seq":`...)
	buf = strconv.AppendUint(buf, q.seq, 10)
	buf = append(buf, `,"sent_at_ns":"`...)
	buf = strconv.AppendInt(buf, int64(q.sentAt), 10)
	buf = append(buf, '"')
	d := res.directive
	if d.Interval > 0 {
		buf = append(buf, `,"interval_ms":`...)
		buf = strconv.AppendUint(buf, uint64(wire.DurMS(d.Interval)), 10)
	}
	if d.Jitter > 0 {
		buf = append(buf, `,"jitter_ms":`...)
		buf = strconv.AppendUint(buf, uint64(wire.DurMS(d.Jitter)), 10)
	}
	if d.Timeout > 0 {
		buf = append(buf, `,"timeout_ms":`...)
		buf = strconv.AppendUint(buf, uint64(wire.DurMS(d.Timeout)), 10)
	}
	buf = append(buf, "}\n"...)
	h := w.Header()
	h["Content-Type"] = jsonType
	h["Content-Length"] = []string{strconv.Itoa(len(buf))}
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(buf)
	*bp = buf[:0]
}

// bodyPool recycles request/answer buffers across beats.
var bodyPool = sync.Pool{New: func() any { b := make([]byte, 0, 1024); return &b }}

var errTooLarge = errors.New("body too large")

// readBody reads all of rd into buf, failing with errTooLarge past limit.
func readBody(rd io.Reader, buf []byte, limit int64) ([]byte, error) {
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, err := rd.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if int64(len(buf)) > limit {
			return buf, errTooLarge
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
	}
}

var jsonType = []string{"application/json"}

func httpError(w http.ResponseWriter, code int, reason, msg string) {
	b, _ := json.Marshal(wire.ErrorJSON{Error: msg, Reason: reason})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}
