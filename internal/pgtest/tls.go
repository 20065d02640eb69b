package pgtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// StartTLSServer is StartServer with TLS on (ssl = on), its certificate
// for 127.0.0.1 signed by a certificate authority made for the test. It
// returns the server and the authority's PEM file, a DSN's sslrootcert
// for sslmode=verify-full. The server also takes connections without TLS
// (initdb's trust entries match both), so a test can tell which a
// client used (pg_stat_ssl).
func StartTLSServer(t testing.TB) (*Server, string) {
	t.Helper()
	var ca string
	s := newServer(t, func(c *cluster) error {
		var err error
		if ca, err = writeServerCert(c.dir, c.asUser); err != nil {
			return err
		}
		return c.initAndStart(fmt.Sprintf("-c ssl=on -c ssl_cert_file=%s -c ssl_key_file=%s",
			filepath.Join(c.dir, "server.crt"), filepath.Join(c.dir, "server.key")))
	})
	return s, ca
}

// NewCA writes, in dir, the PEM certificate of a certificate authority
// that signed nothing, and returns its path: the wrong sslrootcert.
func NewCA(t testing.TB, dir string) string {
	t.Helper()
	_, cert, err := newCert(nil, nil, true)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "other-ca.crt")
	if err := writePEM(path, "CERTIFICATE", cert.Raw, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// writeServerCert writes ca.crt, server.crt and server.key into dir, the
// key readable by owner alone, as PostgreSQL requires of it, and owned by
// owner when set (the server's user when we run as root).
func writeServerCert(dir, owner string) (string, error) {
	caKey, ca, err := newCert(nil, nil, true)
	if err != nil {
		return "", err
	}
	key, cert, err := newCert(ca, caKey, false)
	if err != nil {
		return "", err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return "", err
	}
	caPath := filepath.Join(dir, "ca.crt")
	for _, f := range []struct {
		name, kind string
		der        []byte
		mode       os.FileMode
	}{{"ca.crt", "CERTIFICATE", ca.Raw, 0o644}, {"server.crt", "CERTIFICATE", cert.Raw, 0o644},
		{"server.key", "EC PRIVATE KEY", der, 0o600}} {
		if err := writePEM(filepath.Join(dir, f.name), f.kind, f.der, f.mode); err != nil {
			return "", err
		}
	}
	if owner != "" {
		if _, err := giveTo(dir, owner); err != nil {
			return "", err
		}
	}
	return caPath, nil
}

// newCert makes a P-256 key and its certificate: a certificate authority
// (isCA, self-signed), or a server certificate for 127.0.0.1 and
// localhost signed by parent.
func newCert(parent *x509.Certificate, parentKey *ecdsa.PrivateKey, isCA bool) (*ecdsa.PrivateKey, *x509.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "mxpolicyd test server"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	if isCA {
		tmpl.Subject.CommonName = "mxpolicyd test CA"
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage = x509.KeyUsageCertSign
		tmpl.ExtKeyUsage, tmpl.IPAddresses, tmpl.DNSNames = nil, nil, nil
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return key, cert, err
}

func writePEM(path, kind string, der []byte, mode os.FileMode) error {
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), mode)
}
