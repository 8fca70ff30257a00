package policy

import "net/netip"

// Action is what a rule or a segment's intra setting does.
type Action string

// The actions.
const (
	Allow Action = "allow"
	Deny  Action = "deny"
)

// Host is what the compiler knows about one host: its registry entry as
// far as policy is concerned. Keys and overlay addresses come from the
// registry (written by authenticated joins and by IPAM in Raft), never from
// gossip.
type Host struct {
	Name     string
	Tags     []string
	Services []string   // services the host declares
	Underlay netip.Addr // underlay IP; the endpoint is Underlay:segment port
	// Segments holds, per segment name, the host's WireGuard public key
	// (base64, "" until the host has registered one) and its overlay
	// address (invalid until IPAM has allocated one).
	Segments map[string]HostSegment
}

// HostSegment is a host's key and address in one segment.
type HostSegment struct {
	PublicKey string
	Addr      netip.Addr
}

// Plan is everything one host must apply: its interfaces with their
// peers, and its firewall rules. It is a pure value: two plans compare
// with go-cmp, and an unchanged plan means nothing to do.
type Plan struct {
	Self          string
	PolicyVersion uint64
	Segments      []SegmentPlan  // sorted by Name
	Firewall      []FirewallRule // in evaluation order; what no rule accepts is dropped
	// Reach lists the hosts self may send something to, each with its
	// address in the segment self reaches it through, sorted by name.
	// Mesh DNS answers from it: a host learns only what it may reach.
	Reach []Reach
}

// Reach is one host self may reach, and where.
type Reach struct {
	Name    string
	Segment string
	Addr    netip.Addr
}

// Role says why a host has an interface in a segment.
type Role string

// The roles of a host in a segment.
const (
	Member Role = "member" // selected by the segment's members
	Guest  Role = "guest"  // may reach some members through a rule
)

// SegmentPlan is one WireGuard interface of this host.
type SegmentPlan struct {
	Name       string
	Interface  string // "wf-" + name, at most 15 bytes
	Role       Role
	CIDR       netip.Prefix // the segment's CIDR
	Address    netip.Prefix // this host's address: members get the segment's prefix length, guests a /32
	ListenPort int
	Peers      []Peer // sorted by Name
}

// Peer is one WireGuard peer of an interface.
type Peer struct {
	Name       string
	PublicKey  string         // base64
	Endpoint   netip.AddrPort // underlay address and the segment's port
	AllowedIPs []netip.Prefix // exactly the peer's /32 in this segment
}

// FirewallRule is one nftables rule on this host's input path from its
// weft interfaces. Rules are evaluated in order; established and related
// packets of allowed flows pass before any of them.
type FirewallRule struct {
	// Counter names the rule's counter: "rule/<name>" for policy rules,
	// "intra/<segment>" for a segment's intra allow.
	Counter   string
	Action    Action
	Interface string         // the weft interface the packets arrive on
	Sources   []netip.Prefix // the peers' overlay addresses (/32), sorted
	Proto     string         // "tcp", "udp", "icmp" or "any"
	Ports     []PortRange    // for tcp and udp; empty means every port
}

// PortRange is an inclusive range of ports.
type PortRange struct {
	Lo, Hi uint16
}
