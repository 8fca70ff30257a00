package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net/url"
)

// PEM block types.
const (
	pemCertificate = "CERTIFICATE"
	pemCSR         = "CERTIFICATE REQUEST"
	pemPKCS8       = "PRIVATE KEY"
	pemSEC1        = "EC PRIVATE KEY"
)

// NewKey generates an ECDSA P-256 private key.
func NewKey() (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("identity: generating key: %w", err)
	}
	return k, nil
}

// MarshalKey encodes k as a PKCS#8 "PRIVATE KEY" PEM block, for its owner to
// persist (mode 0600).
func MarshalKey(k *ecdsa.PrivateKey) ([]byte, error) {
	if k == nil {
		return nil, errors.New("identity: marshal key: nil key")
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("identity: marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPKCS8, Bytes: der}), nil
}

// ParseKey decodes the first private key PEM block of pemBytes: PKCS#8
// ("PRIVATE KEY") or, for keys made with other tools, SEC 1 ("EC PRIVATE
// KEY"). The key must be ECDSA P-256. Errors never quote the input.
func ParseKey(pemBytes []byte) (*ecdsa.PrivateKey, error) {
	for rest := pemBytes; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, errors.New("identity: parse key: no PRIVATE KEY PEM block")
		}
		var k any
		var err error
		switch b.Type {
		case pemPKCS8:
			k, err = x509.ParsePKCS8PrivateKey(b.Bytes)
		case pemSEC1:
			k, err = x509.ParseECPrivateKey(b.Bytes)
		default:
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("identity: parse key: %w", err)
		}
		ek, ok := k.(*ecdsa.PrivateKey)
		if !ok || ek.Curve != elliptic.P256() {
			return nil, errors.New("identity: parse key: not an ECDSA P-256 key")
		}
		return ek, nil
	}
}

// NewCSR returns a PEM certificate request for id, signed with k, whose only
// SAN is id's URI.
func NewCSR(k *ecdsa.PrivateKey, id ID) ([]byte, error) {
	if k == nil {
		return nil, errors.New("identity: new CSR: nil key")
	}
	if err := id.Validate(); err != nil {
		return nil, err
	}
	tmpl := &x509.CertificateRequest{
		Subject: pkix.Name{Organization: []string{"weft"}, CommonName: id.Name},
		URIs:    []*url.URL{id.URL()},
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, k)
	if err != nil {
		return nil, fmt.Errorf("identity: new CSR for %s: %w", id, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemCSR, Bytes: der}), nil
}

// ParseCertPEM returns the certificate in the first CERTIFICATE block of b,
// skipping blocks of other types.
func ParseCertPEM(b []byte) (*x509.Certificate, error) {
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			return nil, errors.New("identity: no CERTIFICATE PEM block")
		}
		if blk.Type != pemCertificate {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("identity: parse certificate: %w", err)
		}
		return c, nil
	}
}

// ParseBundle returns the certificates of every CERTIFICATE block of b, in
// order. There must be at least one, and every one must parse.
func ParseBundle(b []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for rest := b; ; {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != pemCertificate {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("identity: parse bundle: certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("identity: parse bundle: no CERTIFICATE PEM block")
	}
	return certs, nil
}

// EncodeCertPEM returns c as a CERTIFICATE PEM block.
func EncodeCertPEM(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: c.Raw})
}

// Fingerprint returns the lowercase hex SHA-256 of c's DER encoding, 64
// characters; join tokens carry the CA's.
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	return hex.EncodeToString(sum[:])
}

// SerialString returns c's serial number in lowercase hex, the form
// revocation lists use.
func SerialString(c *x509.Certificate) string {
	if c == nil || c.SerialNumber == nil {
		return ""
	}
	return c.SerialNumber.Text(16)
}

// randomSerial returns a random, positive, non-zero 128-bit serial number.
func randomSerial() (*big.Int, error) {
	var b [16]byte
	for {
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("identity: serial: %w", err)
		}
		if n := new(big.Int).SetBytes(b[:]); n.Sign() > 0 {
			return n, nil
		}
	}
}

// keyID computes a subject key identifier the RFC 7093 way (the leftmost 160
// bits of the SHA-256 of the public key bits), so that the CA's and leaves'
// key IDs do not depend on the Go version's default.
func keyID(pub *ecdsa.PublicKey) ([]byte, error) {
	ek, err := pub.ECDH()
	if err != nil {
		return nil, fmt.Errorf("identity: key id: %w", err)
	}
	sum := sha256.Sum256(ek.Bytes())
	return sum[:20], nil
}
