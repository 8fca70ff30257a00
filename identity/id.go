package identity

import (
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Errors callers branch on with errors.Is.
var (
	// ErrBadID: a SPIFFE ID, or a certificate's URI SAN, is malformed.
	ErrBadID = errors.New("bad SPIFFE ID")
	// ErrCSRMismatch: a CSR does not carry exactly the ID it was to be
	// signed for.
	ErrCSRMismatch = errors.New("CSR does not match the requested identity")
	// ErrBadCSR: a CSR is unparseable, badly signed, or asks for more than a
	// leaf with one URI SAN.
	ErrBadCSR = errors.New("bad CSR")
	// ErrUntrusted: a peer's certificate does not chain to the trust bundle
	// (or pinned CA) at the verification time, or is not a leaf.
	ErrUntrusted = errors.New("untrusted certificate")
	// ErrWrongDomain: an ID is of another trust domain.
	ErrWrongDomain = errors.New("wrong trust domain")
	// ErrWrongKind: a peer's ID is of a kind that is not accepted here.
	ErrWrongKind = errors.New("wrong identity kind")
	// ErrRevoked: a peer's certificate serial is revoked.
	ErrRevoked = errors.New("certificate revoked")
)

// Kind is the second-to-last path segment of a weft SPIFFE ID.
type Kind string

// The kinds of identity weft issues.
const (
	KindNode    Kind = "node"    // every host
	KindServer  Kind = "server"  // hosts that are Raft voters; only they speak Raft
	KindService Kind = "service" // a workload declared by a host
)

// Valid reports whether k is one of the known kinds.
func (k Kind) Valid() bool {
	switch k {
	case KindNode, KindServer, KindService:
		return true
	}
	return false
}

// ID is a weft SPIFFE ID, spiffe://<Domain>/<Kind>/<Name>.
type ID struct {
	Domain string
	Kind   Kind
	Name   string
}

const spiffeScheme = "spiffe://"

// String returns the ID as a URI. It does not validate.
func (id ID) String() string {
	return spiffeScheme + id.Domain + "/" + string(id.Kind) + "/" + id.Name
}

// URL returns the ID as a URL, as it goes into a certificate's URI SANs.
func (id ID) URL() *url.URL {
	return &url.URL{Scheme: "spiffe", Host: id.Domain, Path: "/" + string(id.Kind) + "/" + id.Name}
}

// Validate reports whether id is well formed; the error wraps ErrBadID.
func (id ID) Validate() error {
	if err := ValidateDomain(id.Domain); err != nil {
		return err
	}
	if !id.Kind.Valid() {
		return fmt.Errorf("identity: %w: unknown kind %q", ErrBadID, id.Kind)
	}
	if !isLabel(id.Name) {
		return fmt.Errorf("identity: %w: name %q is not a lowercase DNS label", ErrBadID, id.Name)
	}
	return nil
}

// ParseID parses s strictly: scheme spiffe, a trust domain of lowercase DNS
// labels as host (no port, user or percent-encoding), and a path of exactly
// /<kind>/<name> with a known kind and a lowercase DNS label as name; no
// query, fragment or trailing slash. Errors wrap ErrBadID.
//
// It parses by hand rather than with net/url, whose leniency (case folding,
// escapes, empty segments) would let two different strings name one ID.
func ParseID(s string) (ID, error) {
	rest, ok := strings.CutPrefix(s, spiffeScheme)
	if !ok {
		return ID{}, fmt.Errorf("identity: %w: %q does not start with %s", ErrBadID, s, spiffeScheme)
	}
	parts := strings.Split(rest, "/")
	if len(parts) != 3 {
		return ID{}, fmt.Errorf("identity: %w: %q is not spiffe://<domain>/<kind>/<name>", ErrBadID, s)
	}
	id := ID{Domain: parts[0], Kind: Kind(parts[1]), Name: parts[2]}
	if err := id.Validate(); err != nil {
		return ID{}, err
	}
	return id, nil
}

// TrustDomainID returns the SPIFFE ID of the trust domain itself,
// spiffe://<domain>, which the CA certificate carries.
func TrustDomainID(domain string) *url.URL {
	return &url.URL{Scheme: "spiffe", Host: domain}
}

// ValidateDomain reports whether domain is a usable trust domain: lowercase
// DNS labels separated by dots, at most 253 characters. The error wraps
// ErrBadID.
func ValidateDomain(domain string) error {
	if domain == "" || len(domain) > 253 {
		return fmt.Errorf("identity: %w: trust domain %q: length must be 1 to 253", ErrBadID, domain)
	}
	for _, l := range strings.Split(domain, ".") {
		if !isLabel(l) {
			return fmt.Errorf("identity: %w: trust domain %q: %q is not a lowercase DNS label", ErrBadID, domain, l)
		}
	}
	return nil
}

// isLabel reports whether s is a lowercase DNS label (RFC 1123): 1 to 63 of
// a-z, 0-9 and '-', not starting or ending with '-'.
func isLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

// IDFromCert returns the SPIFFE ID of c, which must have exactly one URI SAN.
// Errors wrap ErrBadID.
func IDFromCert(c *x509.Certificate) (ID, error) {
	if c == nil {
		return ID{}, fmt.Errorf("identity: %w: no certificate", ErrBadID)
	}
	if len(c.URIs) != 1 {
		return ID{}, fmt.Errorf("identity: %w: certificate has %d URI SANs, want 1", ErrBadID, len(c.URIs))
	}
	return ParseID(c.URIs[0].String())
}
