package egress

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"strings"
	"sync"
	"time"
)

// CA is a run's interception CA, PEM-encoded. The sandbox trusts Cert; Key
// goes to the proxy alone, with the other secrets.
type CA struct {
	Cert string `json:"cert"`
	Key  string `json:"key"`
}

// NewCA makes a run's interception CA: ECDSA P-256, valid from an hour
// ago (clocks differ) until notAfter, for server authentication only, and
// name-constrained to the injection hosts' patterns, so that even a stolen
// key signs nothing another client would accept for any other name or for
// an IP address.
func NewCA(name string, patterns []string, notAfter time.Time) (CA, error) {
	var dns []string
	for _, p := range patterns {
		r, err := ParseRule(p, "")
		if err != nil {
			return CA{}, err
		}
		if r.isIP() {
			return CA{}, fmt.Errorf("interception CA: %s is an IP address; only host names can be intercepted", p)
		}
		dns = append(dns, strings.TrimPrefix(r.Pattern, "*."))
	}
	if len(dns) == 0 {
		return CA{}, errors.New("interception CA: no host names")
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return CA{}, fmt.Errorf("interception CA: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return CA{}, fmt.Errorf("interception CA: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:                serial,
		Subject:                     pkix.Name{CommonName: name, Organization: []string{"airlock"}},
		NotBefore:                   now.Add(-time.Hour),
		NotAfter:                    notAfter,
		IsCA:                        true,
		BasicConstraintsValid:       true,
		MaxPathLenZero:              true,
		KeyUsage:                    x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		ExtKeyUsage:                 []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		PermittedDNSDomainsCritical: true,
		PermittedDNSDomains:         dns,
		ExcludedIPRanges: []*net.IPNet{
			{IP: net.IPv4zero, Mask: net.CIDRMask(0, 32)},
			{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)},
		},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return CA{}, fmt.Errorf("interception CA: %w", err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return CA{}, fmt.Errorf("interception CA: %w", err)
	}
	return CA{
		Cert: string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})),
		Key:  string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})),
	}, nil
}

// LeafIssuer signs a certificate per intercepted host with the run's CA,
// once per host; every leaf shares one key.
type LeafIssuer struct {
	ca      *x509.Certificate
	caKey   *ecdsa.PrivateKey
	leafKey *ecdsa.PrivateKey

	mu    sync.Mutex
	cache map[string]*tls.Certificate
}

func NewLeafIssuer(ca CA) (*LeafIssuer, error) {
	cb, _ := pem.Decode([]byte(ca.Cert))
	kb, _ := pem.Decode([]byte(ca.Key))
	if cb == nil || kb == nil {
		return nil, errors.New("interception CA: certificate or key is not PEM")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("interception CA: %w", err)
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("interception CA: %w", err)
	}
	leafKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("interception CA: %w", err)
	}
	return &LeafIssuer{ca: cert, caKey: key, leafKey: leafKey, cache: map[string]*tls.Certificate{}}, nil
}

// Leaf returns the certificate shown for host, made once.
func (li *LeafIssuer) Leaf(host string) (*tls.Certificate, error) {
	li.mu.Lock()
	defer li.mu.Unlock()
	if c, ok := li.cache[host]; ok {
		return c, nil
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: host},
		DNSNames:     []string{host},
		NotBefore:    li.ca.NotBefore,
		NotAfter:     li.ca.NotAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, li.ca, &li.leafKey.PublicKey, li.caKey)
	if err != nil {
		return nil, fmt.Errorf("certificate for %s: %w", host, err)
	}
	c := &tls.Certificate{Certificate: [][]byte{der, li.ca.Raw}, PrivateKey: li.leafKey}
	li.cache[host] = c
	return c, nil
}
