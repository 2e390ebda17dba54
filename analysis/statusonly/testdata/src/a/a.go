package a

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"time"
)

var client = &http.Client{Timeout: 2 * time.Second}

// isHealthy is the seed's INC-2021-155 check, in Go.
func isHealthy(url string) bool {
	resp, err := client.Get(url + "/health")
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	return resp.StatusCode == http.StatusOK // want `isHealthy judges its target by the HTTP status alone and never reads the body`
}

type Prober struct{ c *http.Client }

// Check belongs to a probe type; it drains the body without reading it.
func (p *Prober) Check(ctx context.Context, url string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := p.c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode >= 400 { // want `Check judges its target by the HTTP status alone`
		return io.ErrUnexpectedEOF
	}
	return nil
}

func sendHeartbeat(url string) bool {
	resp, err := client.Post(url, "application/json", nil)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.Status == "200 OK" // want `sendHeartbeat judges its target by the HTTP status alone`
}

// --- must not be flagged ---

// probeBody decodes the business code, as AP-08 asks.
func probeBody(url string) (bool, error) {
	resp, err := client.Get(url)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, nil
	}
	var body struct {
		Code int `json:"code"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return false, err
	}
	return body.Code == 0, nil
}

// healthHandedOn passes the response to a function that may read it.
func healthHandedOn(url string) bool {
	resp, err := client.Get(url)
	if err != nil || resp == nil {
		return false
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false
	}
	return judge(resp)
}

func judge(resp *http.Response) bool { return resp.Header.Get("X-Degraded") == "" }

type attempt struct {
	resp *http.Response
	body []byte
}

// judgeHealth gets a response whose body another function already read.
func judgeHealth(a *attempt) bool {
	resp := a.resp
	return resp.StatusCode == http.StatusOK && len(a.body) > 0
}

// fetchOrders is not a health check: status-only handling is its business.
func fetchOrders(url string) bool {
	resp, err := client.Get(url)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// pingback only reads the body.
func pingback(url string) ([]byte, error) {
	resp, err := client.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

func readinessIgnored(url string) bool {
	resp, err := client.Get(url)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	//pulselint:ignore statusonly the target is kubelet's /readyz, whose body carries no state
	return resp.StatusCode == http.StatusOK
}
