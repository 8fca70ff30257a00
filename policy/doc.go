// Package policy owns weft's network policy: the policy document (HCL),
// its validation, the reachability it defines, IP address management of
// the segments, and the compiler from (document, hosts, self) to the Plan
// that one host applies.
//
// It is pure: no I/O, no logging, no goroutines, no clock. Callers (the
// Raft state machine, the agent, the CLI) hand it values and get values
// back; the same arguments always give the same result, whatever the order
// of the hosts.
//
// # The document
//
//	segment "web" {
//	  cidr    = "10.90.1.0/24"
//	  port    = 51821              # WireGuard listen port of this segment on every host
//	  members = ["tag:web"]        # selectors: tag:, node:, service:
//	  intra   = "deny"             # optional, default "allow"
//	}
//	rule "web-to-postgres" {
//	  action = "allow"             # allow | deny
//	  from   = ["segment:web"]     # selectors: segment:, tag:, node:, service:
//	  to     = ["service:postgres"]
//	  ports  = ["tcp/5432"]        # tcp/N, tcp/LO-HI, udp/N, udp/LO-HI, icmp, any
//	}
//
// Parse reports every problem at once, each at its file:line:col. Beyond
// the forms above, a port spec may list ranges ("tcp/80,443,8000-8100")
// and a bare "tcp" or "udp" means every port of that protocol. A segment
// name makes the interface name "wf-"+name, so it is at most 12 bytes of
// [a-z0-9-]. An IPv4 segment is at most a /30 and an IPv6 one a /126.
// Document.Check finds what depends on the fleet: a CIDR with fewer
// usable addresses than hosts that need one.
//
// # Membership and selectors
//
// A host is a member of segment S when any selector of S's members matches
// it: tag:x when x is one of its tags, node:x when its name is x,
// service:x when it declares service x. A rule's from and to match hosts
// the same way, and segment:S matches the members of S.
//
// # Reachability
//
// What host h may send to another host t is a set of (protocol, port):
//
//   - if h and t are both members of some segment whose intra is allow:
//     everything;
//   - else the union of the ports of the allow rules whose from matches h
//     and whose to matches t;
//   - minus, in both cases, the ports of the deny rules whose from matches
//     h and whose to matches t. Deny beats allow.
//
// "any" covers every protocol and port (also protocols other than tcp,
// udp and icmp), "icmp" covers icmp, tcp and udp ranges their ports. A host
// that is a member of no segment reaches nothing and nothing reaches it.
// Replies of an allowed flow pass (the firewall is stateful); reachability
// is about who may open a flow.
//
// # Path segments and guests
//
// The traffic from h to t goes through one segment, its path segment:
//
//   - the first segment (by name) that both are members of;
//   - else h is a guest: the segment is the one named by a segment:X
//     selector in the to of the first allow rule (file order) that grants
//     h something toward t after the denies are subtracted, if t is a
//     member of X (the first such selector of the rule); else the first
//     segment (by name) that t is a member of.
//
// A rule whose every port is taken back by denies grants nothing, so it
// never makes h a guest anywhere. h is a guest of S when it may send
// something (after denies) to some member t of S with path S and is not a
// member of S itself. Assignments lists, per segment, its members and its
// guests: the hosts that need an address (Allocate) and an interface in
// it. A host with no right to reach a segment gets no address, key or
// interface there: isolation is cryptographic first, firewall second.
//
// # Plans
//
// Compile builds the Plan of one host, self. Self has an interface in each
// segment it is a member or a guest of, once IPAM has given it an address
// there (an address outside the segment's CIDR counts as none). Members get
// the address with the CIDR's prefix length, guests a /32 (IPv6: /128).
//
// The peers of self in S are the hosts p such that self→p or p→self is
// allowed (a non-empty set) with path S. For a member self that is the
// other members with at least one allowed direction (all of them when
// intra is allow) and the guests that may reach self through S; for a
// guest self, the members it may reach through S. So guests never peer
// with each other. A peer is listed only once the registry has both its
// public key and its address in S; its AllowedIPs are exactly that address
// (/32 or /128) and its endpoint is its underlay address and S's port (no
// endpoint when its underlay address is unknown).
//
// The firewall filters what arrives on self's weft interfaces. The
// sources of a firewall rule on the interface of S are always listed peers
// of S whose traffic to self has path S; a guest interface therefore gets
// no rules and passes replies only. Rules come in this order:
//
//  1. per deny rule whose to matches self (file order), per interface (by
//     segment name), per port spec: deny from the peers its from matches;
//  2. per segment S with intra allow that self is a member of, per
//     interface: allow everything from the members of S (a peer that
//     shares several intra-allow segments with self is counted under the
//     first of them);
//  3. per allow rule, like the deny rules.
//
// A rule without sources is left out. What no rule accepts is dropped.
//
// # IPAM
//
// Allocate is deterministic: a host keeps its address while it is assigned
// to the segment and the address is usable (in the CIDR, not its network
// address and, for IPv4 shorter than /31, not its broadcast address) and
// not kept by a host before it in name order; new hosts get the lowest
// free usable address in name order; hosts no longer assigned lose theirs.
// No two hosts of a segment ever share an address.
//
// # Hosts
//
// A name given to more than one host is an error for Compile and Allocate;
// Assignments and Explain leave such hosts out, since which is meant cannot
// be told.
package policy
