package identity

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Verifier checks the certificate chain a TLS peer presents. It replaces the
// standard verification, which checks host names that weft certificates do
// not have: use it from tls.Config.VerifyPeerCertificate, with
// InsecureSkipVerify on the client side or ClientAuth RequireAnyClientCert on
// the server side (see Config). A resumed TLS session skips that callback, so
// a config built by hand should set SessionTicketsDisabled, as Config does.
type Verifier struct {
	// Domain is the trust domain peers must belong to. Required.
	Domain string
	// Roots returns the current trust bundle; it is called on every
	// verification, so a rotated bundle takes effect for the next handshake.
	// Required: a nil func or nil pool rejects every peer.
	Roots func() *x509.CertPool
	// Kinds are the accepted peer kinds, e.g. {KindServer} for Raft. Required:
	// an empty list rejects every peer.
	Kinds []Kind
	// Revoked reports whether a serial (SerialString form) is revoked.
	// Optional.
	Revoked func(serial string) bool
	// Now is the verification time. Optional; time.Now by default.
	Now func() time.Time
}

// Verify checks a peer's chain: rawCerts[0] is the leaf, the rest are
// intermediates. The leaf must not be a CA, must chain to Roots at Now for
// client or server authentication, and must carry exactly one URI SAN, an ID
// of Domain whose kind is in Kinds, and a serial that is not revoked. Errors
// wrap ErrUntrusted, ErrBadID, ErrWrongDomain, ErrWrongKind or ErrRevoked.
func (v *Verifier) Verify(rawCerts [][]byte) (ID, *x509.Certificate, error) {
	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	var roots *x509.CertPool
	if v.Roots != nil {
		roots = v.Roots()
	}
	return verify(rawCerts, roots, v.Domain, v.Kinds, v.Revoked, now())
}

// VerifyPeerCertificate adapts Verify to tls.Config.VerifyPeerCertificate.
func (v *Verifier) VerifyPeerCertificate(rawCerts [][]byte, _ [][]*x509.Certificate) error {
	_, _, err := v.Verify(rawCerts)
	return err
}

// Config returns a TLS 1.3 config that presents cert and verifies the peer
// with v, as a server (requiring a client certificate) or as a client. The
// caller may adjust it, e.g. set NextProtos.
func (v *Verifier) Config(cert tls.Certificate, server bool) *tls.Config {
	c := &tls.Config{
		Certificates:          []tls.Certificate{cert},
		MinVersion:            tls.VersionTLS13,
		VerifyPeerCertificate: v.VerifyPeerCertificate,
		// The standard verification would check host names; Verify replaces
		// it, and runs in both cases.
		InsecureSkipVerify: !server,
		// A resumed session skips VerifyPeerCertificate, so it would outlive
		// a revocation or a trust bundle rotation. Handshakes between weft
		// hosts are few and long-lived; full ones cost little.
		SessionTicketsDisabled: true,
	}
	if server {
		c.ClientAuth = tls.RequireAnyClientCert
	}
	return c
}

// VerifyPinned verifies a peer that a joining host knows only by its CA's
// fingerprint (from a join token): one of rawCerts must be a CA certificate
// whose Fingerprint equals caFingerprint (compared case-insensitively) and
// whose trust domain is domain, and the leaf rawCerts[0] must pass the same
// checks as Verifier.Verify with that CA as the only root. It returns the
// pinned CA, which the joining host can then trust.
func VerifyPinned(rawCerts [][]byte, caFingerprint, domain string, kinds []Kind, now time.Time) (ca *x509.Certificate, id ID, err error) {
	want := strings.ToLower(caFingerprint)
	if len(want) != 64 {
		return nil, ID{}, fmt.Errorf("identity: %w: pinned fingerprint is not 64 hex characters", ErrUntrusted)
	}
	for _, raw := range rawCerts {
		c, err := x509.ParseCertificate(raw)
		if err != nil {
			continue // verify reports unparseable certificates
		}
		if Fingerprint(c) == want && c.BasicConstraintsValid && c.IsCA {
			ca = c
			break
		}
	}
	if ca == nil {
		return nil, ID{}, fmt.Errorf("identity: %w: peer did not present the CA with fingerprint %s", ErrUntrusted, want)
	}
	d, err := caDomain(ca)
	if err != nil {
		return nil, ID{}, fmt.Errorf("identity: pinned CA: %w", err)
	}
	if d != domain {
		return nil, ID{}, fmt.Errorf("identity: %w: pinned CA is for %q, want %q", ErrWrongDomain, d, domain)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	id, _, err = verify(rawCerts, roots, domain, kinds, nil, now)
	if err != nil {
		return nil, ID{}, err
	}
	return ca, id, nil
}

func verify(rawCerts [][]byte, roots *x509.CertPool, domain string, kinds []Kind, revoked func(string) bool, now time.Time) (ID, *x509.Certificate, error) {
	if len(rawCerts) == 0 {
		return ID{}, nil, fmt.Errorf("identity: %w: no certificate", ErrUntrusted)
	}
	if roots == nil {
		return ID{}, nil, fmt.Errorf("identity: %w: no trust bundle", ErrUntrusted)
	}
	certs := make([]*x509.Certificate, len(rawCerts))
	for i, raw := range rawCerts {
		c, err := x509.ParseCertificate(raw)
		if err != nil {
			return ID{}, nil, fmt.Errorf("identity: %w: certificate %d: %w", ErrUntrusted, i, err)
		}
		certs[i] = c
	}
	leaf := certs[0]
	if leaf.IsCA || leaf.KeyUsage&x509.KeyUsageCertSign != 0 {
		return ID{}, nil, fmt.Errorf("identity: %w: peer presented a CA certificate as its leaf", ErrUntrusted)
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		// Either: every weft leaf has both, and a chain is accepted if it
		// allows any one of these.
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return ID{}, nil, fmt.Errorf("identity: %w: %w", ErrUntrusted, err)
	}
	id, err := IDFromCert(leaf)
	if err != nil {
		return ID{}, nil, err
	}
	if id.Domain != domain {
		return ID{}, nil, fmt.Errorf("identity: %w: peer %s is not of %q", ErrWrongDomain, id, domain)
	}
	if !slices.Contains(kinds, id.Kind) {
		return ID{}, nil, fmt.Errorf("identity: %w: peer %s is a %s, want one of %v", ErrWrongKind, id, id.Kind, kinds)
	}
	if revoked != nil && revoked(SerialString(leaf)) {
		return ID{}, nil, fmt.Errorf("identity: %w: peer %s, serial %s", ErrRevoked, id, SerialString(leaf))
	}
	return id, leaf, nil
}
