package probe

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/fb4b1dcc/pulse/condition"
)

// TLSClientConfig is the client side of TLS for a module. Verification is
// on unless InsecureSkipVerify is set explicitly.
type TLSClientConfig struct {
	// CAFile or CAPEM replace the system roots with these PEM certificates.
	CAFile string `yaml:"ca_file,omitempty" json:"ca_file,omitempty"`
	CAPEM  []byte `yaml:"ca_pem,omitempty" json:"ca_pem,omitempty"`
	// CertFile/KeyFile or CertPEM/KeyPEM are the client certificate for
	// mutual TLS.
	CertFile string `yaml:"cert_file,omitempty" json:"cert_file,omitempty"`
	KeyFile  string `yaml:"key_file,omitempty" json:"key_file,omitempty"`
	CertPEM  []byte `yaml:"cert_pem,omitempty" json:"cert_pem,omitempty"`
	KeyPEM   []byte `yaml:"key_pem,omitempty" json:"key_pem,omitempty"`
	// ServerName overrides the name sent in SNI and verified against the
	// certificate (default: the target's host).
	ServerName string `yaml:"server_name,omitempty" json:"server_name,omitempty"`
	// InsecureSkipVerify accepts any certificate. Only for explicit opt-in.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify,omitempty" json:"insecure_skip_verify,omitempty"`
}

// build returns the *tls.Config; nextProtos sets ALPN.
func (c TLSClientConfig) build(nextProtos ...string) (*tls.Config, error) {
	cfg := &tls.Config{
		MinVersion:         tls.VersionTLS12,
		ServerName:         c.ServerName,
		InsecureSkipVerify: c.InsecureSkipVerify, //nolint:gosec // explicit opt-in only
		NextProtos:         nextProtos,
		// One session cache per prober: a fresh connection after a dead
		// one resumes instead of paying a full handshake.
		ClientSessionCache: tls.NewLRUClientSessionCache(0),
	}
	ca := c.CAPEM
	if c.CAFile != "" {
		if len(ca) > 0 {
			return nil, errors.New("tls: set ca_file or ca_pem, not both")
		}
		b, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("tls: read ca_file: %w", err)
		}
		ca = b
	}
	if len(ca) > 0 {
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(ca) {
			return nil, errors.New("tls: no PEM certificates found in the CA; check the file holds -----BEGIN CERTIFICATE----- blocks")
		}
		cfg.RootCAs = pool
	}
	certPEM, keyPEM := c.CertPEM, c.KeyPEM
	if c.CertFile != "" || c.KeyFile != "" {
		if c.CertFile == "" || c.KeyFile == "" {
			return nil, errors.New("tls: cert_file and key_file go together")
		}
		var err error
		if certPEM, err = os.ReadFile(c.CertFile); err != nil {
			return nil, fmt.Errorf("tls: read cert_file: %w", err)
		}
		if keyPEM, err = os.ReadFile(c.KeyFile); err != nil {
			return nil, fmt.Errorf("tls: read key_file: %w", err)
		}
	}
	if len(certPEM) > 0 || len(keyPEM) > 0 {
		pair, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, fmt.Errorf("tls: client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{pair}
	}
	return cfg, nil
}

// forHost returns cfg with ServerName defaulted to host. cfg is shared, so a
// clone is made only when the name must change.
func forHost(cfg *tls.Config, host string) *tls.Config {
	if cfg.ServerName != "" {
		return cfg
	}
	c := cfg.Clone()
	c.ServerName = host
	return c
}

// tlsInfo extracts what conditions and the dashboard need from a handshake.
func tlsInfo(cs *tls.ConnectionState) *condition.TLS {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return nil
	}
	leaf := cs.PeerCertificates[0]
	return &condition.TLS{
		NotAfter:   leaf.NotAfter,
		NotBefore:  leaf.NotBefore,
		Subject:    leaf.Subject.String(),
		Issuer:     leaf.Issuer.String(),
		Version:    tls.VersionName(cs.Version),
		ServerName: cs.ServerName,
	}
}

// expiry judges certificate expiry: an expired certificate is unhealthy,
// one closer than warn to expiry is degraded.
func expiry(info *condition.TLS, now time.Time, warn time.Duration) (degraded, expired bool, reason string) {
	if info == nil || info.NotAfter.IsZero() {
		return false, false, ""
	}
	left := info.NotAfter.Sub(now)
	switch {
	case left <= 0:
		return false, true, fmt.Sprintf("certificate %s expired %s ago (not after %s)",
			info.Subject, (-left).Round(time.Second), info.NotAfter.UTC().Format(time.RFC3339))
	case warn > 0 && left < warn:
		return true, false, fmt.Sprintf("certificate %s expires in %s (not after %s), under the %s warning",
			info.Subject, left.Round(time.Minute), info.NotAfter.UTC().Format(time.RFC3339), warn)
	}
	return false, false, ""
}
