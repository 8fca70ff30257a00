package identity

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"net"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const domain = "weft.internal"

func TestParseID(t *testing.T) {
	long := strings.Repeat("a", 63)
	tests := []struct {
		in   string
		want ID
		err  error
	}{
		{"spiffe://weft.internal/node/web-1", ID{domain, KindNode, "web-1"}, nil},
		{"spiffe://weft.internal/server/s1", ID{domain, KindServer, "s1"}, nil},
		{"spiffe://weft.internal/service/db", ID{domain, KindService, "db"}, nil},
		{"spiffe://example/node/" + long, ID{"example", KindNode, long}, nil},
		{"", ID{}, ErrBadID},
		{"spiffe://weft.internal", ID{}, ErrBadID},
		{"spiffe://weft.internal/", ID{}, ErrBadID},
		{"spiffe://weft.internal/node", ID{}, ErrBadID},
		{"spiffe://weft.internal/node/", ID{}, ErrBadID},
		{"spiffe://weft.internal/node/a/", ID{}, ErrBadID},
		{"spiffe://weft.internal/node/a/b", ID{}, ErrBadID},
		{"spiffe://weft.internal//node/a", ID{}, ErrBadID},
		{"spiffe://weft.internal/host/a", ID{}, ErrBadID},
		{"spiffe://weft.internal/Node/a", ID{}, ErrBadID},
		{"spiffe://weft.internal/node/A", ID{}, ErrBadID},
		{"spiffe://weft.internal/node/-a", ID{}, ErrBadID},
		{"spiffe://weft.internal/node/a-", ID{}, ErrBadID},
		{"spiffe://weft.internal/node/a_b", ID{}, ErrBadID},
		{"spiffe://weft.internal/node/a.b", ID{}, ErrBadID},
		{"spiffe://weft.internal/node/" + long + "a", ID{}, ErrBadID},
		{"spiffe://weft.internal/node/%61", ID{}, ErrBadID},
		{"spiffe://weft.internal/node/a?x=1", ID{}, ErrBadID},
		{"spiffe://weft.internal/node/a#x", ID{}, ErrBadID},
		{"spiffe://Weft.internal/node/a", ID{}, ErrBadID},
		{"spiffe://weft.internal:443/node/a", ID{}, ErrBadID},
		{"spiffe://user@weft.internal/node/a", ID{}, ErrBadID},
		{"spiffe://weft..internal/node/a", ID{}, ErrBadID},
		{"spiffe://.weft.internal/node/a", ID{}, ErrBadID},
		{"spiffe:///node/a", ID{}, ErrBadID},
		{"SPIFFE://weft.internal/node/a", ID{}, ErrBadID},
		{"https://weft.internal/node/a", ID{}, ErrBadID},
		{" spiffe://weft.internal/node/a", ID{}, ErrBadID},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseID(tt.in)
			checkErr(t, err, tt.err)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("ParseID (-want +got):\n%s", diff)
			}
			if err == nil {
				if got.String() != tt.in {
					t.Errorf("String() = %q, want %q", got.String(), tt.in)
				}
				if got.URL().String() != tt.in {
					t.Errorf("URL() = %q, want %q", got.URL(), tt.in)
				}
			}
		})
	}
}

func TestNewCA(t *testing.T) {
	ttl := 10 * 365 * 24 * time.Hour
	ca, err := NewCA(domain, t0, ttl)
	if err != nil {
		t.Fatal(err)
	}
	c := ca.Cert
	type props struct {
		IsCA, BasicConstraintsValid, MaxPathLenZero bool
		MaxPathLen                                  int
		KeyUsage                                    x509.KeyUsage
		URIs                                        []string
		Org                                         []string
		CN                                          string
		NotBefore, NotAfter                         time.Time
		PublicKeyAlgorithm                          x509.PublicKeyAlgorithm
		SelfSigned                                  bool
	}
	got := props{
		IsCA: c.IsCA, BasicConstraintsValid: c.BasicConstraintsValid, MaxPathLenZero: c.MaxPathLenZero,
		MaxPathLen: c.MaxPathLen, KeyUsage: c.KeyUsage, Org: c.Subject.Organization, CN: c.Subject.CommonName,
		NotBefore: c.NotBefore, NotAfter: c.NotAfter, PublicKeyAlgorithm: c.PublicKeyAlgorithm,
		SelfSigned: c.CheckSignatureFrom(c) == nil,
	}
	for _, u := range c.URIs {
		got.URIs = append(got.URIs, u.String())
	}
	want := props{
		IsCA: true, BasicConstraintsValid: true, MaxPathLenZero: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		URIs:     []string{"spiffe://weft.internal"}, Org: []string{"weft"}, CN: "weft CA weft.internal",
		NotBefore: t0.Add(-time.Minute), NotAfter: t0.Add(ttl), PublicKeyAlgorithm: x509.ECDSA,
		SelfSigned: true,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("CA certificate (-want +got):\n%s", diff)
	}
	if n := c.SerialNumber.BitLen(); n > 128 || n < 64 {
		t.Errorf("serial has %d bits, want a random 128-bit number", n)
	}
	if other := newCA(t, domain); other.Cert.SerialNumber.Cmp(c.SerialNumber) == 0 {
		t.Error("two CAs have the same serial")
	}
	if len(c.SubjectKeyId) == 0 {
		t.Error("no SubjectKeyId")
	}
	if ca.Domain() != domain {
		t.Errorf("Domain() = %q, want %q", ca.Domain(), domain)
	}
	if fp := Fingerprint(c); !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(fp) {
		t.Errorf("Fingerprint = %q, want 64 lowercase hex characters", fp)
	}

	// Round trip through PEM.
	again, err := ParseCA(ca.CertPEM, ca.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Cert.Equal(c) || !bytes.Equal(again.KeyPEM, ca.KeyPEM) {
		t.Error("ParseCA(NewCA) differs from the original")
	}
	l := issue(t, again, ID{domain, KindNode, "n1"}, time.Hour, t0)
	if err := l.cert.CheckSignatureFrom(c); err != nil {
		t.Errorf("certificate signed by the parsed CA: %v", err)
	}
}

func TestNewCARefuses(t *testing.T) {
	tests := []struct {
		name   string
		domain string
		ttl    time.Duration
	}{
		{"empty domain", "", time.Hour},
		{"uppercase domain", "Weft.internal", time.Hour},
		{"domain with path", "weft.internal/x", time.Hour},
		{"zero ttl", domain, 0},
		{"negative ttl", domain, -time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewCA(tt.domain, t0, tt.ttl); err == nil {
				t.Error("NewCA succeeded, want an error")
			}
		})
	}
}

func TestParseCARefuses(t *testing.T) {
	ca := newCA(t, domain)
	other := newCA(t, domain)
	l := issue(t, ca, ID{domain, KindServer, "s1"}, time.Hour, t0)
	noDomain := forge(t, ca, &x509.Certificate{
		NotBefore: t0, NotAfter: t0.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	})
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(p384)
	if err != nil {
		t.Fatal(err)
	}
	p384PEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})

	tests := []struct {
		name          string
		certPEM, keyP []byte
	}{
		{"key of another CA", ca.CertPEM, other.KeyPEM},
		{"leaf certificate", l.certPEM, l.keyPEM},
		{"CA without trust domain ID", EncodeCertPEM(noDomain), ca.KeyPEM},
		{"P-384 key", ca.CertPEM, p384PEM},
		{"garbage certificate", []byte("garbage"), ca.KeyPEM},
		{"garbage key", ca.CertPEM, []byte("garbage")},
		{"key and certificate swapped", ca.KeyPEM, ca.CertPEM},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseCA(tt.certPEM, tt.keyP); err == nil {
				t.Error("ParseCA succeeded, want an error")
			}
		})
	}
}

func TestSign(t *testing.T) {
	caTTL := 30 * 24 * time.Hour
	ca, err := NewCA(domain, t0, caTTL)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name         string
		id           ID
		now          time.Time
		ttl          time.Duration
		wantNotAfter time.Time
	}{
		{"node", ID{domain, KindNode, "web-1"}, t0, 24 * time.Hour, t0.Add(24 * time.Hour)},
		{"server later", ID{domain, KindServer, "s1"}, t0.Add(time.Hour), time.Hour, t0.Add(2 * time.Hour)},
		{"service capped by CA", ID{domain, KindService, "db"}, t0.Add(29 * 24 * time.Hour), 7 * 24 * time.Hour, ca.Cert.NotAfter},
		{"ttl beyond CA", ID{domain, KindNode, "n2"}, t0, 2 * caTTL, ca.Cert.NotAfter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := issue(t, ca, tt.id, tt.ttl, tt.now)
			c := l.cert

			type props struct {
				URIs                        []string
				IsCA, BasicConstraintsValid bool
				KeyUsage                    x509.KeyUsage
				ExtKeyUsage                 []x509.ExtKeyUsage
				DNSNames                    []string
				NotBefore, NotAfter         time.Time
				AuthorityKeyId              []byte
			}
			got := props{
				IsCA: c.IsCA, BasicConstraintsValid: c.BasicConstraintsValid, KeyUsage: c.KeyUsage,
				ExtKeyUsage: c.ExtKeyUsage, DNSNames: c.DNSNames, NotBefore: c.NotBefore, NotAfter: c.NotAfter,
				AuthorityKeyId: c.AuthorityKeyId,
			}
			for _, u := range c.URIs {
				got.URIs = append(got.URIs, u.String())
			}
			want := props{
				URIs:                  []string{tt.id.String()},
				BasicConstraintsValid: true,
				KeyUsage:              x509.KeyUsageDigitalSignature,
				ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
				NotBefore:             tt.now.Add(-time.Minute),
				NotAfter:              tt.wantNotAfter,
				AuthorityKeyId:        ca.Cert.SubjectKeyId,
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("leaf (-want +got):\n%s", diff)
			}
			if n := c.SerialNumber.BitLen(); n > 128 || n < 64 {
				t.Errorf("serial has %d bits, want a random 128-bit number", n)
			}
			if !l.key.PublicKey.Equal(c.PublicKey) {
				t.Error("leaf does not carry the CSR's key")
			}
			id, err := IDFromCert(c)
			if err != nil || id != tt.id {
				t.Errorf("IDFromCert = %v, %v; want %v", id, err, tt.id)
			}
			parsed, err := ParseCertPEM(l.certPEM)
			if err != nil || !parsed.Equal(c) {
				t.Errorf("ParseCertPEM(certPEM) = %v; does not match the returned certificate", err)
			}
			v := &Verifier{Domain: domain, Roots: ca.Pool, Kinds: []Kind{tt.id.Kind}, Now: func() time.Time { return tt.now }}
			if _, _, err := v.Verify(raws(c)); err != nil {
				t.Errorf("Verify(issued leaf): %v", err)
			}
		})
	}
}

func TestSignRefuses(t *testing.T) {
	ca := newCA(t, domain)
	want := ID{domain, KindNode, "web-1"}
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	good, err := NewCSR(k, want)
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	bc := func(isCA bool) pkix.Extension {
		v, err := asn1.Marshal(struct{ IsCA bool }{isCA})
		if err != nil {
			t.Fatal(err)
		}
		return pkix.Extension{Id: oidBasicConstraints, Critical: true, Value: v}
	}
	u := want.URL()

	// Tamper: flip a bit of the subject's CN inside the signed part.
	blk, _ := pem.Decode(good)
	tampered := bytes.Replace(blk.Bytes, []byte("web-1"), []byte("web-2"), 1)
	if bytes.Equal(tampered, blk.Bytes) {
		t.Fatal("tampering found nothing to change")
	}
	tamperedPEM := pem.EncodeToMemory(&pem.Block{Type: pemCSR, Bytes: tampered})

	tests := []struct {
		name string
		csr  []byte
		want ID
		ttl  time.Duration
		err  error
	}{
		{"CSR for another ID", good, ID{domain, KindNode, "web-2"}, time.Hour, ErrCSRMismatch},
		{"CSR for another kind", good, ID{domain, KindServer, "web-1"}, time.Hour, ErrCSRMismatch},
		{"want of another domain", good, ID{"other.internal", KindNode, "web-1"}, time.Hour, ErrWrongDomain},
		{"invalid want", good, ID{domain, "root", "web-1"}, time.Hour, ErrBadID},
		{"two URI SANs", csrPEM(t, k, &x509.CertificateRequest{
			URIs: []*url.URL{u, mustURL(t, "spiffe://weft.internal/server/web-1")}}), want, time.Hour, ErrCSRMismatch},
		{"same URI twice", csrPEM(t, k, &x509.CertificateRequest{URIs: []*url.URL{u, u}}), want, time.Hour, ErrCSRMismatch},
		{"no URI SAN", csrPEM(t, k, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "web-1"}}), want, time.Hour, ErrCSRMismatch},
		{"URI not canonical", csrPEM(t, k, &x509.CertificateRequest{
			URIs: []*url.URL{mustURL(t, "spiffe://weft.internal/node/web-1/")}}), want, time.Hour, ErrCSRMismatch},
		{"DNS SAN", csrPEM(t, k, &x509.CertificateRequest{
			URIs: []*url.URL{u}, DNSNames: []string{"web-1.weft.internal"}}), want, time.Hour, ErrBadCSR},
		{"IP SAN", csrPEM(t, k, &x509.CertificateRequest{
			URIs: []*url.URL{u}, IPAddresses: []net.IP{net.IPv4(10, 0, 0, 1)}}), want, time.Hour, ErrBadCSR},
		{"email SAN", csrPEM(t, k, &x509.CertificateRequest{
			URIs: []*url.URL{u}, EmailAddresses: []string{"a@b.c"}}), want, time.Hour, ErrBadCSR},
		{"CA basic constraints", csrPEM(t, k, &x509.CertificateRequest{
			URIs: []*url.URL{u}, ExtraExtensions: []pkix.Extension{bc(true)}}), want, time.Hour, ErrBadCSR},
		{"malformed basic constraints", csrPEM(t, k, &x509.CertificateRequest{
			URIs: []*url.URL{u}, ExtraExtensions: []pkix.Extension{{Id: oidBasicConstraints, Value: []byte{0xff}}}}), want, time.Hour, ErrBadCSR},
		{"P-384 key", csrPEM(t, p384, &x509.CertificateRequest{URIs: []*url.URL{u}}), want, time.Hour, ErrBadCSR},
		{"bad signature", tamperedPEM, want, time.Hour, ErrBadCSR},
		{"garbage PEM", []byte("-----BEGIN CERTIFICATE REQUEST-----\nnot base64!\n-----END CERTIFICATE REQUEST-----\n"), want, time.Hour, ErrBadCSR},
		{"garbage DER", pem.EncodeToMemory(&pem.Block{Type: pemCSR, Bytes: []byte("garbage")}), want, time.Hour, ErrBadCSR},
		{"not PEM", []byte("hello"), want, time.Hour, ErrBadCSR},
		{"empty", nil, want, time.Hour, ErrBadCSR},
		{"certificate instead of CSR", ca.CertPEM, want, time.Hour, ErrBadCSR},
		{"zero ttl", good, want, 0, errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			certPEM, cert, err := ca.Sign(tt.csr, tt.want, tt.ttl, t0)
			checkErr(t, err, tt.err)
			if certPEM != nil || cert != nil {
				t.Error("Sign returned a certificate along with an error")
			}
		})
	}

	t.Run("expired CA", func(t *testing.T) {
		_, _, err := ca.Sign(good, want, time.Hour, ca.Cert.NotAfter.Add(time.Second))
		checkErr(t, err, errAny)
	})
	t.Run("CA:false basic constraints is a plain leaf", func(t *testing.T) {
		csr := csrPEM(t, k, &x509.CertificateRequest{URIs: []*url.URL{u}, ExtraExtensions: []pkix.Extension{bc(false)}})
		_, cert, err := ca.Sign(csr, want, time.Hour, t0)
		if err != nil {
			t.Fatal(err)
		}
		if cert.IsCA {
			t.Error("issued a CA")
		}
	})
}

func TestVerifier(t *testing.T) {
	ca := newCA(t, domain)
	otherCA := newCA(t, domain)
	foreignCA := newCA(t, "other.internal")

	server := issue(t, ca, ID{domain, KindServer, "s1"}, time.Hour, t0)
	node := issue(t, ca, ID{domain, KindNode, "n1"}, time.Hour, t0)
	service := issue(t, ca, ID{domain, KindService, "db"}, time.Hour, t0)
	revokedServer := issue(t, ca, ID{domain, KindServer, "s2"}, time.Hour, t0)
	untrusted := issue(t, otherCA, ID{domain, KindServer, "s1"}, time.Hour, t0)
	foreign := issue(t, foreignCA, ID{"other.internal", KindServer, "s1"}, time.Hour, t0)
	twoURIs := forge(t, ca, &x509.Certificate{
		NotBefore: t0, NotAfter: t0.Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		URIs:        []*url.URL{server.id.URL(), node.id.URL()},
	})
	badID := forge(t, ca, &x509.Certificate{
		NotBefore: t0, NotAfter: t0.Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		URIs:        []*url.URL{mustURL(t, "spiffe://weft.internal/server/s1/extra")},
	})
	codeSigning := forge(t, ca, &x509.Certificate{
		NotBefore: t0, NotAfter: t0.Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		URIs:        []*url.URL{server.id.URL()},
	})

	servers := []Kind{KindServer}
	revoked := SerialString(revokedServer.cert)
	tests := []struct {
		name  string
		chain [][]byte
		roots func() *x509.CertPool
		kinds []Kind
		now   time.Time
		want  ID
		err   error
		noNow bool // leave Verifier.Now nil
	}{
		{name: "server", chain: raws(server.cert), kinds: servers, want: server.id},
		{name: "server with CA in chain", chain: raws(server.cert, ca.Cert), kinds: servers, want: server.id},
		{name: "node where nodes and servers are accepted", chain: raws(node.cert), kinds: []Kind{KindNode, KindServer}, want: node.id},
		{name: "service", chain: raws(service.cert), kinds: []Kind{KindService}, want: service.id},
		{name: "node where only servers are accepted", chain: raws(node.cert), kinds: servers, err: ErrWrongKind},
		{name: "no kinds accepted", chain: raws(node.cert), err: ErrWrongKind},
		{name: "another CA", chain: raws(untrusted.cert), kinds: servers, err: ErrUntrusted},
		{name: "another CA, presenting it too", chain: raws(untrusted.cert, otherCA.Cert), kinds: servers, err: ErrUntrusted},
		{name: "another domain, trusted CA", chain: raws(foreign.cert), roots: pool(ca.Cert, foreignCA.Cert), kinds: servers, err: ErrWrongDomain},
		{name: "revoked", chain: raws(revokedServer.cert), kinds: servers, err: ErrRevoked},
		{name: "expired", chain: raws(node.cert), kinds: []Kind{KindNode}, now: node.cert.NotAfter.Add(time.Second), err: ErrUntrusted},
		{name: "not yet valid", chain: raws(node.cert), kinds: []Kind{KindNode}, now: t0.Add(-2 * time.Minute), err: ErrUntrusted},
		{name: "backdated: valid 59s before issue", chain: raws(node.cert), kinds: []Kind{KindNode}, now: t0.Add(-59 * time.Second), want: node.id},
		{name: "default Now is the real clock", chain: raws(node.cert), kinds: []Kind{KindNode}, noNow: true, err: ErrUntrusted},
		{name: "CA certificate as leaf", chain: raws(ca.Cert), kinds: servers, err: ErrUntrusted},
		{name: "two URI SANs", chain: raws(twoURIs), kinds: servers, err: ErrBadID},
		{name: "malformed ID", chain: raws(badID), kinds: servers, err: ErrBadID},
		{name: "neither server nor client auth", chain: raws(codeSigning), kinds: servers, err: ErrUntrusted},
		{name: "no certificate", chain: nil, kinds: servers, err: ErrUntrusted},
		{name: "garbage", chain: [][]byte{[]byte("garbage")}, kinds: servers, err: ErrUntrusted},
		{name: "garbage intermediate", chain: [][]byte{server.cert.Raw, []byte("garbage")}, kinds: servers, err: ErrUntrusted},
		{name: "no trust bundle", chain: raws(server.cert), roots: func() *x509.CertPool { return nil }, kinds: servers, err: ErrUntrusted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := tt.now
			if now.IsZero() {
				now = t0
			}
			v := &Verifier{
				Domain:  domain,
				Roots:   tt.roots,
				Kinds:   tt.kinds,
				Now:     func() time.Time { return now },
				Revoked: func(s string) bool { return s == revoked },
			}
			if v.Roots == nil {
				v.Roots = ca.Pool
			}
			if tt.noNow {
				v.Now = nil
			}
			id, cert, err := v.Verify(tt.chain)
			checkErr(t, err, tt.err)
			if id != tt.want {
				t.Errorf("ID = %v, want %v", id, tt.want)
			}
			if err == nil && !cert.Equal(mustParse(t, tt.chain[0])) {
				t.Error("returned certificate is not the leaf")
			}
			if err != nil && cert != nil {
				t.Error("returned a certificate along with an error")
			}
			if got := v.VerifyPeerCertificate(tt.chain, nil); (got == nil) != (err == nil) {
				t.Errorf("VerifyPeerCertificate = %v, Verify = %v", got, err)
			}
		})
	}

	t.Run("Roots is read on every call", func(t *testing.T) {
		bundle := x509.NewCertPool()
		v := &Verifier{Domain: domain, Roots: func() *x509.CertPool { return bundle }, Kinds: servers,
			Now: func() time.Time { return t0 }}
		if _, _, err := v.Verify(raws(untrusted.cert)); err == nil {
			t.Fatal("accepted before the bundle holds its CA")
		}
		bundle = pool(ca.Cert, otherCA.Cert)()
		if _, _, err := v.Verify(raws(untrusted.cert)); err != nil {
			t.Fatalf("refused after the bundle gained its CA: %v", err)
		}
	})
	t.Run("nil Roots func", func(t *testing.T) {
		v := &Verifier{Domain: domain, Kinds: servers, Now: func() time.Time { return t0 }}
		_, _, err := v.Verify(raws(server.cert))
		checkErr(t, err, ErrUntrusted)
	})
}

func mustParse(t *testing.T, der []byte) *x509.Certificate {
	t.Helper()
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestVerifyPinned(t *testing.T) {
	ca := newCA(t, domain)
	evil := newCA(t, domain)
	server := issue(t, ca, ID{domain, KindServer, "s1"}, time.Hour, t0)
	node := issue(t, ca, ID{domain, KindNode, "n1"}, time.Hour, t0)
	impostor := issue(t, evil, ID{domain, KindServer, "s1"}, time.Hour, t0)
	fp := Fingerprint(ca.Cert)
	servers := []Kind{KindServer}

	tests := []struct {
		name   string
		chain  [][]byte
		fp     string
		domain string
		kinds  []Kind
		now    time.Time
		want   ID
		err    error
	}{
		{"right fingerprint", raws(server.cert, ca.Cert), fp, domain, servers, t0, server.id, nil},
		{"uppercase fingerprint", raws(server.cert, ca.Cert), strings.ToUpper(fp), domain, servers, t0, server.id, nil},
		{"wrong fingerprint", raws(server.cert, ca.Cert), Fingerprint(evil.Cert), domain, servers, t0, ID{}, ErrUntrusted},
		{"fingerprint of the leaf", raws(server.cert, ca.Cert), Fingerprint(server.cert), domain, servers, t0, ID{}, ErrUntrusted},
		{"malformed fingerprint", raws(server.cert, ca.Cert), "abc", domain, servers, t0, ID{}, ErrUntrusted},
		{"CA not presented", raws(server.cert), fp, domain, servers, t0, ID{}, ErrUntrusted},
		{"pinned CA presented with another CA's leaf", raws(impostor.cert, ca.Cert), fp, domain, servers, t0, ID{}, ErrUntrusted},
		{"pinned CA presented alone", raws(ca.Cert), fp, domain, servers, t0, ID{}, ErrUntrusted},
		{"node where a server is expected", raws(node.cert, ca.Cert), fp, domain, servers, t0, ID{}, ErrWrongKind},
		{"other domain", raws(server.cert, ca.Cert), fp, "other.internal", servers, t0, ID{}, ErrWrongDomain},
		{"expired", raws(server.cert, ca.Cert), fp, domain, servers, t0.Add(2 * time.Hour), ID{}, ErrUntrusted},
		{"nothing presented", nil, fp, domain, servers, t0, ID{}, ErrUntrusted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			gotCA, id, err := VerifyPinned(tt.chain, tt.fp, tt.domain, tt.kinds, tt.now)
			checkErr(t, err, tt.err)
			if id != tt.want {
				t.Errorf("ID = %v, want %v", id, tt.want)
			}
			if err == nil && !gotCA.Equal(ca.Cert) {
				t.Error("returned CA is not the pinned one")
			}
		})
	}
}

func TestKeys(t *testing.T) {
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	b, err := MarshalKey(k)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b, []byte("-----BEGIN PRIVATE KEY-----\n")) {
		t.Errorf("MarshalKey = %.40q..., want a PRIVATE KEY PEM block", b)
	}
	got, err := ParseKey(b)
	if err != nil || !got.Equal(k) {
		t.Fatalf("ParseKey(MarshalKey(k)) = %v; not k", err)
	}
	sec1, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	got, err = ParseKey(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: sec1}))
	if err != nil || !got.Equal(k) {
		t.Fatalf("ParseKey(SEC 1) = %v; not k", err)
	}
	if _, err := MarshalKey(nil); err == nil {
		t.Error("MarshalKey(nil) succeeded")
	}

	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p384DER, err := x509.MarshalPKCS8PrivateKey(p384)
	if err != nil {
		t.Fatal(err)
	}
	ca := newCA(t, domain)
	for name, in := range map[string][]byte{
		"P-384":        pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p384DER}),
		"certificate":  ca.CertPEM,
		"garbage":      []byte("garbage"),
		"empty":        nil,
		"garbage DER":  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte("secret-ish")}),
		"garbage SEC1": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: []byte("secret-ish")}),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseKey(in)
			if err == nil {
				t.Fatal("ParseKey succeeded")
			}
			if strings.Contains(err.Error(), "secret-ish") {
				t.Errorf("error quotes the key input: %v", err)
			}
		})
	}
}

func TestNewCSR(t *testing.T) {
	k, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	id := ID{domain, KindService, "db"}
	b, err := NewCSR(k, id)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := parseCSR(b)
	if err != nil {
		t.Fatal(err)
	}
	var uris []string
	for _, u := range csr.URIs {
		uris = append(uris, u.String())
	}
	if diff := cmp.Diff([]string{id.String()}, uris); diff != "" {
		t.Errorf("URI SANs (-want +got):\n%s", diff)
	}
	if n := len(csr.DNSNames) + len(csr.IPAddresses) + len(csr.EmailAddresses); n != 0 {
		t.Errorf("CSR has %d other SANs", n)
	}
	if _, err := NewCSR(k, ID{domain, KindService, "DB"}); err == nil {
		t.Error("NewCSR accepted an invalid ID")
	}
	if _, err := NewCSR(nil, id); err == nil {
		t.Error("NewCSR accepted a nil key")
	}
}

func TestParseCertPEMAndBundle(t *testing.T) {
	ca := newCA(t, domain)
	l := issue(t, ca, ID{domain, KindNode, "n1"}, time.Hour, t0)
	keyThenCerts := append(append(append([]byte{}, l.keyPEM...), l.certPEM...), ca.CertPEM...)

	c, err := ParseCertPEM(keyThenCerts)
	if err != nil || !c.Equal(l.cert) {
		t.Errorf("ParseCertPEM skipped to %v, %v; want the leaf", c, err)
	}
	certs, err := ParseBundle(keyThenCerts)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range certs {
		got = append(got, SerialString(c))
	}
	if diff := cmp.Diff([]string{SerialString(l.cert), SerialString(ca.Cert)}, got); diff != "" {
		t.Errorf("bundle serials (-want +got):\n%s", diff)
	}
	if s := SerialString(l.cert); s != strings.ToLower(s) || s != l.cert.SerialNumber.Text(16) {
		t.Errorf("SerialString = %q, want lowercase hex of the serial", s)
	}
	bad := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("garbage")})
	for name, in := range map[string][]byte{
		"garbage":           []byte("garbage"),
		"key only":          l.keyPEM,
		"bad certificate":   bad,
		"good, then bad":    append(append([]byte{}, ca.CertPEM...), bad...),
		"truncated PEM":     ca.CertPEM[:len(ca.CertPEM)/2],
		"empty":             nil,
		"header and no end": []byte("-----BEGIN CERTIFICATE-----\n"),
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := ParseBundle(in); err == nil {
				t.Error("ParseBundle succeeded")
			}
			if name != "good, then bad" {
				if _, err := ParseCertPEM(in); err == nil {
					t.Error("ParseCertPEM succeeded")
				}
			}
		})
	}
}

func TestTLSCertificate(t *testing.T) {
	ca := newCA(t, domain)
	l := issue(t, ca, ID{domain, KindServer, "s1"}, time.Hour, t0)
	other := issue(t, ca, ID{domain, KindServer, "s2"}, time.Hour, t0)

	c, err := TLSCertificate(l.certPEM, l.keyPEM, ca.CertPEM)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(raws(l.cert, ca.Cert), c.Certificate); diff != "" {
		t.Errorf("chain (-want +got):\n%s", diff)
	}
	if c, err := TLSCertificate(l.certPEM, l.keyPEM); err != nil || len(c.Certificate) != 1 {
		t.Errorf("without chain: %d certificates, %v; want 1", len(c.Certificate), err)
	}
	if _, err := TLSCertificate(l.certPEM, other.keyPEM, ca.CertPEM); err == nil {
		t.Error("accepted a key that does not match the certificate")
	}
	if _, err := TLSCertificate(l.certPEM, l.keyPEM, []byte("garbage")); err == nil {
		t.Error("accepted a garbage chain")
	}
}
