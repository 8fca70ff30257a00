package identity

import (
	"crypto/tls"
	"fmt"
)

// TLSCertificate builds a tls.Certificate from a PEM certificate and its PEM
// key, and appends the certificates of each chain PEM (typically the CA) to
// the chain the certificate's holder presents, so that a peer that pins the
// CA by fingerprint (VerifyPinned) can see it. It checks that the key matches
// the certificate.
func TLSCertificate(certPEM, keyPEM []byte, chain ...[]byte) (tls.Certificate, error) {
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		// X509KeyPair's errors describe the input's structure, never the key.
		return tls.Certificate{}, fmt.Errorf("identity: TLS certificate: %w", err)
	}
	for i, b := range chain {
		certs, err := ParseBundle(b)
		if err != nil {
			return tls.Certificate{}, fmt.Errorf("identity: TLS certificate: chain %d: %w", i, err)
		}
		for _, c := range certs {
			cert.Certificate = append(cert.Certificate, c.Raw)
		}
	}
	return cert, nil
}
