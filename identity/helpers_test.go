package identity

import (
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"net/url"
	"testing"
	"time"
)

// t0 is the injected "now" of most tests.
var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// errAny in a table means "some error, no particular sentinel".
var errAny = errors.New("any error")

func checkErr(t *testing.T, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want == nil:
	case err == nil:
		t.Fatalf("no error, want %v", want)
	case want != errAny && !errors.Is(err, want):
		t.Fatalf("error %q does not wrap %q", err, want)
	}
}

func newCA(t testing.TB, domain string) *CA {
	t.Helper()
	ca, err := NewCA(domain, t0, 365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

// leaf is an issued certificate with its key, as its owner holds them.
type leaf struct {
	id      ID
	cert    *x509.Certificate
	certPEM []byte
	key     *ecdsa.PrivateKey
	keyPEM  []byte
}

func issue(t testing.TB, ca *CA, id ID, ttl time.Duration, now time.Time) leaf {
	t.Helper()
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	csr, err := NewCSR(k, id)
	if err != nil {
		t.Fatal(err)
	}
	certPEM, cert, err := ca.Sign(csr, id, ttl, now)
	if err != nil {
		t.Fatalf("Sign(%s): %v", id, err)
	}
	keyPEM, err := MarshalKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return leaf{id: id, cert: cert, certPEM: certPEM, key: k, keyPEM: keyPEM}
}

// forge signs tmpl with ca's key directly, bypassing Sign's checks, to make
// certificates Sign would never issue.
func forge(t testing.TB, ca *CA, tmpl *x509.Certificate) *x509.Certificate {
	t.Helper()
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	if tmpl.SerialNumber == nil {
		if tmpl.SerialNumber, err = randomSerial(); err != nil {
			t.Fatal(err)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &k.PublicKey, ca.Key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// csrPEM builds a CSR from tmpl, signed by k, bypassing NewCSR.
func csrPEM(t testing.TB, k any, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemCSR, Bytes: der})
}

func mustURL(t testing.TB, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func pool(certs ...*x509.Certificate) func() *x509.CertPool {
	p := x509.NewCertPool()
	for _, c := range certs {
		p.AddCert(c)
	}
	return func() *x509.CertPool { return p }
}

func raws(certs ...*x509.Certificate) [][]byte {
	var out [][]byte
	for _, c := range certs {
		out = append(out, c.Raw)
	}
	return out
}
