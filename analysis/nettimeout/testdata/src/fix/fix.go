package fix

import (
	"crypto/tls"
	"net/http"
)

func dialTLS(addr string) (*tls.Conn, error) {
	return tls.Dial("tcp", addr, &tls.Config{}) // want `tls.Dial has no timeout`
}

func probe(url string) (*http.Response, error) {
	c := &http.Client{
		Transport: http.DefaultTransport,
	}
	return c.Get(url) // want `on a client without Timeout`
}

func probeShort(url string) (*http.Response, error) {
	return (&http.Client{}).Get(url) // want `on a client without Timeout`
}
