// Package identity owns weft's mTLS identities: the mesh certificate
// authority, the signing of certificate requests, SPIFFE IDs, and the
// verification of TLS peers.
//
// The trust domain is the mesh domain (for example "weft.internal"). Every
// identity is a SPIFFE ID of the form spiffe://<domain>/<kind>/<name>, where
// kind is node, server or service and name is a lowercase DNS label; callers
// normalise names (lowercase hostnames) before building an ID. Every key is
// ECDSA P-256.
//
// Decisions written down here:
//   - The CA is a self-signed root with path length zero: it signs leaves
//     only, never intermediates. Its own certificate carries the trust domain
//     ID spiffe://<domain> as its only URI SAN.
//   - Leaves are usable as TLS server and client certificates both, since
//     every mesh connection is mutual. They carry exactly one URI SAN and no
//     other names; TLS peers are identified by that ID, never by host name.
//   - NotBefore is backdated one minute so that a host whose clock is a little
//     behind the CA's accepts a certificate it was just given. NotAfter never
//     passes the CA's own NotAfter.
//   - The Sign checks on a request are the CA's last line of defence: the
//     caller decides which ID a requester may have (after checking a join
//     token or the requester's own certificate), and Sign refuses any request
//     whose content does not match that ID exactly.
//   - A Verifier with no Kinds accepts nobody: fail closed.
//
// The package is pure: it does no I/O (callers persist keys and certificates,
// with internal/atomicfile), it does not log, and it keeps no state beyond
// the values it is given. Private keys never leave the host that created
// them: the only way out of the package is MarshalKey, for the owner to
// persist its own key, and no error message includes key material.
package identity
