package identity

import (
	"errors"
	"testing"
	"time"
)

func FuzzParseID(f *testing.F) {
	for _, s := range []string{
		"spiffe://weft.internal/node/web-1",
		"spiffe://weft.internal/server/s1",
		"spiffe://a/service/b",
		"spiffe://weft.internal",
		"spiffe://weft.internal/node/a/b",
		"spiffe://weft.internal/node/%00",
		"spiffe://[::1]:80/node/a",
		"spiffe://weft.internal/node/a?b#c",
		"",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseID(s)
		if err != nil {
			if !errors.Is(err, ErrBadID) {
				t.Fatalf("ParseID(%q) error %v does not wrap ErrBadID", s, err)
			}
			return
		}
		if id.String() != s || id.URL().String() != s {
			t.Fatalf("ParseID(%q) = %#v, which prints as %q / %q", s, id, id.String(), id.URL())
		}
		if err := id.Validate(); err != nil {
			t.Fatalf("ParseID(%q) accepted an ID that does not validate: %v", s, err)
		}
	})
}

func FuzzSign(f *testing.F) {
	ca := newCA(f, domain)
	want := ID{domain, KindNode, "web-1"}
	k, err := NewKey()
	if err != nil {
		f.Fatal(err)
	}
	for _, id := range []ID{want, {domain, KindNode, "web-2"}, {domain, KindServer, "web-1"}} {
		csr, err := NewCSR(k, id)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(csr)
	}
	f.Add(ca.CertPEM)
	f.Add([]byte("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"))
	f.Add([]byte("garbage"))
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, csr []byte) {
		_, cert, err := ca.Sign(csr, want, time.Hour, t0)
		if err != nil {
			return
		}
		id, err := IDFromCert(cert)
		if err != nil || id != want {
			t.Fatalf("signed a certificate for %v (%v), want %v", id, err, want)
		}
		if cert.IsCA || len(cert.DNSNames)+len(cert.IPAddresses)+len(cert.EmailAddresses) > 0 {
			t.Fatalf("signed more than a leaf with one URI SAN: CA=%v DNS=%v IP=%v email=%v",
				cert.IsCA, cert.DNSNames, cert.IPAddresses, cert.EmailAddresses)
		}
	})
}

// FuzzParsePEM feeds the same bytes to every parser and verifier; none may
// panic.
func FuzzParsePEM(f *testing.F) {
	ca := newCA(f, domain)
	l := issue(f, ca, ID{domain, KindServer, "s1"}, time.Hour, t0)
	f.Add(ca.CertPEM)
	f.Add(ca.KeyPEM)
	f.Add(l.certPEM)
	f.Add(l.cert.Raw)
	f.Add(append(append([]byte{}, l.certPEM...), ca.CertPEM...))
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte("garbage"))

	v := &Verifier{Domain: domain, Roots: ca.Pool, Kinds: []Kind{KindServer}, Now: func() time.Time { return t0 }}
	f.Fuzz(func(t *testing.T, b []byte) {
		ParseCertPEM(b)
		ParseBundle(b)
		ParseKey(b)
		ParseCA(b, b)
		ParseCA(b, ca.KeyPEM)
		TLSCertificate(b, b, b)
		v.Verify([][]byte{b})
		v.Verify([][]byte{l.cert.Raw, b})
		VerifyPinned([][]byte{b, ca.Cert.Raw}, Fingerprint(ca.Cert), domain, []Kind{KindServer}, t0)
	})
}
