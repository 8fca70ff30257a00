package identity

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"time"
)

// Backdate is how far before "now" a certificate's NotBefore is set, so that
// hosts whose clocks lag a little behind the CA's accept it at once.
const Backdate = time.Minute

// CA is the mesh certificate authority. The whole value, key included, lives
// in Raft; only servers hold it.
type CA struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte
	KeyPEM  []byte
}

// NewCA creates a self-signed CA for the trust domain, valid from now-Backdate
// to now+ttl.
func NewCA(domain string, now time.Time, ttl time.Duration) (*CA, error) {
	if err := ValidateDomain(domain); err != nil {
		return nil, err
	}
	if ttl <= 0 {
		return nil, fmt.Errorf("identity: new CA: ttl %v is not positive", ttl)
	}
	key, err := NewKey()
	if err != nil {
		return nil, err
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, err
	}
	skid, err := keyID(&key.PublicKey)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"weft"}, CommonName: "weft CA " + domain},
		NotBefore:             now.Add(-Backdate),
		NotAfter:              now.Add(ttl),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            0,
		MaxPathLenZero:        true, // leaves only, never intermediates
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		SubjectKeyId:          skid,
		URIs:                  []*url.URL{TrustDomainID(domain)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("identity: new CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("identity: new CA: %w", err)
	}
	keyPEM, err := MarshalKey(key)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, CertPEM: EncodeCertPEM(cert), KeyPEM: keyPEM}, nil
}

// ParseCA rebuilds a CA from its PEM certificate and key, checking that the
// certificate is a weft CA (a CA certificate allowed to sign certificates,
// carrying a trust domain ID) and that the key is its key.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := ParseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("identity: parse CA: %w", err)
	}
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return nil, errors.New("identity: parse CA: certificate is not a CA")
	}
	if cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, errors.New("identity: parse CA: certificate may not sign certificates")
	}
	if _, err := caDomain(cert); err != nil {
		return nil, fmt.Errorf("identity: parse CA: %w", err)
	}
	key, err := ParseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("identity: parse CA: %w", err)
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		return nil, errors.New("identity: parse CA: key does not match certificate")
	}
	keyPEM, err = MarshalKey(key)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, CertPEM: EncodeCertPEM(cert), KeyPEM: keyPEM}, nil
}

// caDomain returns the trust domain named by a CA certificate's only URI SAN,
// spiffe://<domain>.
func caDomain(c *x509.Certificate) (string, error) {
	if len(c.URIs) != 1 {
		return "", fmt.Errorf("%w: CA certificate has %d URI SANs, want 1", ErrBadID, len(c.URIs))
	}
	u := c.URIs[0]
	if want := TrustDomainID(u.Host); u.String() != want.String() {
		return "", fmt.Errorf("%w: CA URI SAN %q is not a trust domain ID", ErrBadID, u)
	}
	if err := ValidateDomain(u.Host); err != nil {
		return "", err
	}
	return u.Host, nil
}

// Domain returns the trust domain of the CA, or "" if its certificate names
// none (ParseCA and NewCA never return such a CA).
func (ca *CA) Domain() string {
	d, _ := caDomain(ca.Cert)
	return d
}

// Pool returns a pool holding only the CA certificate, for a Verifier's Roots.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// oidBasicConstraints is id-ce-basicConstraints (RFC 5280, 4.2.1.9).
var oidBasicConstraints = asn1.ObjectIdentifier{2, 5, 29, 19}

// Sign issues a leaf certificate for want from a PEM CSR, valid from
// now-Backdate to now+ttl or the CA's NotAfter, whichever is earlier.
//
// The caller has already decided that the requester may be want; Sign checks
// that the request asks for exactly that and nothing more. The CSR's
// signature must verify; its key must be ECDSA P-256; its only SAN must be one
// URI equal to want (else ErrCSRMismatch); it must not carry DNS, IP or email
// SANs or request CA basic constraints (ErrBadCSR). Nothing else of the CSR
// (subject, requested extensions) is copied into the certificate.
func (ca *CA) Sign(csrPEM []byte, want ID, ttl time.Duration, now time.Time) (certPEM []byte, cert *x509.Certificate, err error) {
	if ca == nil || ca.Cert == nil || ca.Key == nil {
		return nil, nil, errors.New("identity: sign: CA has no certificate or key")
	}
	if err := want.Validate(); err != nil {
		return nil, nil, err
	}
	if d := ca.Domain(); want.Domain != d {
		return nil, nil, fmt.Errorf("identity: sign %s: %w: CA is for %q", want, ErrWrongDomain, d)
	}
	if ttl <= 0 {
		return nil, nil, fmt.Errorf("identity: sign %s: ttl %v is not positive", want, ttl)
	}
	if now.After(ca.Cert.NotAfter) {
		return nil, nil, fmt.Errorf("identity: sign %s: CA expired at %v", want, ca.Cert.NotAfter)
	}

	csr, err := parseCSR(csrPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("identity: sign %s: %w", want, err)
	}
	pub, ok := csr.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		return nil, nil, fmt.Errorf("identity: sign %s: %w: key is not ECDSA P-256", want, ErrBadCSR)
	}
	if n := len(csr.DNSNames) + len(csr.IPAddresses) + len(csr.EmailAddresses); n > 0 {
		return nil, nil, fmt.Errorf("identity: sign %s: %w: %d SANs other than URI", want, ErrBadCSR, n)
	}
	if len(csr.URIs) != 1 {
		return nil, nil, fmt.Errorf("identity: sign %s: %w: CSR has %d URI SANs, want 1", want, ErrCSRMismatch, len(csr.URIs))
	}
	if got, err := ParseID(csr.URIs[0].String()); err != nil || got != want {
		return nil, nil, fmt.Errorf("identity: sign %s: %w: CSR is for %q", want, ErrCSRMismatch, csr.URIs[0])
	}
	for _, ext := range csr.Extensions {
		if !ext.Id.Equal(oidBasicConstraints) {
			continue
		}
		var bc struct {
			IsCA       bool `asn1:"optional"`
			MaxPathLen int  `asn1:"optional,default:-1"`
		}
		// An unparseable request counts as a CA request: refuse either way.
		if rest, err := asn1.Unmarshal(ext.Value, &bc); err != nil || len(rest) > 0 || bc.IsCA {
			return nil, nil, fmt.Errorf("identity: sign %s: %w: CSR requests a CA certificate", want, ErrBadCSR)
		}
	}

	serial, err := randomSerial()
	if err != nil {
		return nil, nil, err
	}
	skid, err := keyID(pub)
	if err != nil {
		return nil, nil, err
	}
	akid := ca.Cert.SubjectKeyId
	if len(akid) == 0 {
		caPub, ok := ca.Cert.PublicKey.(*ecdsa.PublicKey)
		if !ok {
			return nil, nil, fmt.Errorf("identity: sign %s: CA key is not ECDSA", want)
		}
		if akid, err = keyID(caPub); err != nil {
			return nil, nil, err
		}
	}
	notAfter := now.Add(ttl)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{Organization: []string{"weft"}, CommonName: want.Name},
		NotBefore:             now.Add(-Backdate),
		NotAfter:              notAfter,
		BasicConstraintsValid: true,
		IsCA:                  false,
		// ECDSA keys sign; they do not encipher, so no KeyEncipherment.
		KeyUsage:       x509.KeyUsageDigitalSignature,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:           []*url.URL{want.URL()},
		SubjectKeyId:   skid,
		AuthorityKeyId: akid,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("identity: sign %s: %w", want, err)
	}
	cert, err = x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("identity: sign %s: %w", want, err)
	}
	return EncodeCertPEM(cert), cert, nil
}

// parseCSR decodes the first PEM block of b as a CSR and checks its
// signature. Errors wrap ErrBadCSR.
func parseCSR(b []byte) (*x509.CertificateRequest, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != pemCSR {
		return nil, fmt.Errorf("%w: no %s PEM block", ErrBadCSR, pemCSR)
	}
	csr, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadCSR, err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadCSR, err)
	}
	return csr, nil
}
