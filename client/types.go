package client

import "time"

// Member is one host of the cluster, from GET /v1/members.
type Member struct {
	Name       string `json:"name"`
	Addr       string `json:"addr"`
	GossipPort int    `json:"gossip_port"`
	RPCPort    int    `json:"rpc_port"`
	Role       string `json:"role"`
	Status     string `json:"status"` // alive, dead, unknown
	StateIndex uint64 `json:"state_index"`
	// PolicyVersion is the policy version the host's dataplane enforces.
	PolicyVersion uint64   `json:"policy_version"`
	Tags          []string `json:"tags"`
}

// Status describes one agent, from GET /v1/status.
type Status struct {
	Node       string     `json:"node"`
	Role       string     `json:"role"`
	Domain     string     `json:"domain"`
	Joined     bool       `json:"joined"`
	Leader     string     `json:"leader"`
	RaftState  string     `json:"raft_state"`
	RaftPeers  []RaftPeer `json:"raft_peers"`
	StateIndex uint64     `json:"state_index"`
	Ready      bool       `json:"ready"`
	Checks     []Check    `json:"checks"`
	Version    string     `json:"version"`
}

// RaftPeer is one server of the Raft configuration.
type RaftPeer struct {
	ID      string `json:"id"`
	Address string `json:"address"`
	Voter   bool   `json:"voter"`
}

// Check is one health condition.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Reason string `json:"reason"`
}

// Health is the answer of /v1/health and /v1/ready.
type Health struct {
	OK     bool    `json:"ok"`
	Checks []Check `json:"checks"`
}

// Node is one entry of the node registry, from GET /v1/nodes.
type Node struct {
	Name            string   `json:"name"`
	Role            string   `json:"role"`
	Addr            string   `json:"addr"`
	Tags            []string `json:"tags"`
	Serials         []string `json:"serials"`
	RegisteredIndex uint64   `json:"registered_index"`
}

// TokenRequest asks for a join token (POST /v1/tokens).
type TokenRequest struct {
	Server bool   `json:"server"`
	TTL    string `json:"ttl"` // a Go duration, e.g. "1h"
	Uses   int    `json:"uses"`
}

// Token is a new join token. This is the only time its secret is shown.
type Token struct {
	Token   string    `json:"token"`
	Expires time.Time `json:"expires"`
	Uses    int       `json:"uses"`
	Server  bool      `json:"server"`
}

// JoinRequest asks an agent to join (POST /v1/join).
type JoinRequest struct {
	Token     string   `json:"token"`
	Addresses []string `json:"addresses"`
}

// Error is the body of every failed call.
type Error struct {
	Error string `json:"error"`
}

// PolicyRequest carries a policy document (POST /v1/policy, /v1/policy/plan).
type PolicyRequest struct {
	Filename string `json:"filename"`
	Source   string `json:"source"`
	By       string `json:"by,omitempty"` // who applies it, for the record
}

// Policy is the applied policy document (GET /v1/policy).
type Policy struct {
	Version   uint64    `json:"version"`
	Filename  string    `json:"filename"`
	Source    string    `json:"source"`
	AppliedAt time.Time `json:"applied_at"`
	AppliedBy string    `json:"applied_by"`
}

// PolicyApplied is the answer of POST /v1/policy.
type PolicyApplied struct {
	Version uint64 `json:"version"`
}

// PolicyPlan is what a policy would change, per host (POST /v1/policy/plan).
type PolicyPlan struct {
	Hosts []HostChanges `json:"hosts"`
}

// HostChanges lists what would change on one host.
type HostChanges struct {
	Name    string   `json:"name"`
	Changes []string `json:"changes"`
}

// Explanation says whether a flow is allowed and why (GET /v1/policy/explain).
type Explanation struct {
	From    string `json:"from"`
	To      string `json:"to"`
	Port    string `json:"port"`
	Allowed bool   `json:"allowed"`
	Segment string `json:"segment,omitempty"`
	Rule    string `json:"rule,omitempty"`
	Reason  string `json:"reason"`
}

// Segment is one of this host's WireGuard interfaces (GET /v1/segments).
type Segment struct {
	Name       string        `json:"name"`
	Interface  string        `json:"interface"`
	Role       string        `json:"role"`
	Address    string        `json:"address"`
	ListenPort int           `json:"listen_port"`
	PublicKey  string        `json:"public_key"`
	Peers      []SegmentPeer `json:"peers"`
}

// SegmentPeer is one WireGuard peer of a segment interface.
type SegmentPeer struct {
	Name          string    `json:"name"`
	PublicKey     string    `json:"public_key"`
	Endpoint      string    `json:"endpoint"`
	AllowedIPs    []string  `json:"allowed_ips"`
	LastHandshake time.Time `json:"last_handshake"`
	RxBytes       int64     `json:"rx_bytes"`
	TxBytes       int64     `json:"tx_bytes"`
}

// DNSAnswer is what the agent's own resolver answered (GET /v1/dns/query).
type DNSAnswer struct {
	Server     string   `json:"server"`
	Rcode      string   `json:"rcode"`
	Answer     []string `json:"answer"`
	Authority  []string `json:"authority"`
	Additional []string `json:"additional"`
}

// Flows is what this host's firewall counted (GET /v1/flows).
type Flows struct {
	// Rules has one entry per firewall counter of the applied plan, in
	// evaluation order, then the default deny. Empty before a plan.
	Rules []RuleFlow `json:"rules"`
	// Denied is the sources of recently dropped packets, most packets
	// first, at most 20.
	Denied []DeniedFlow `json:"denied"`
}

// RuleFlow is one firewall counter: the packets (and their bytes) that
// opened a flow through a rule. Later packets of an allowed flow pass the
// connection-tracking rule and are not counted.
type RuleFlow struct {
	// Counter is the counter's name: "rule/<name>" for a policy rule,
	// "intra/<segment>" for a segment's intra allow, "default-deny".
	Counter string `json:"counter"`
	// Rule is the policy rule's name; "" for the others.
	Rule   string `json:"rule"`
	Action string `json:"action"` // allow or deny
	// Segments and Interfaces are where the counted packets arrive: one
	// rule may apply on several segments; the default deny covers all.
	Segments   []string `json:"segments"`
	Interfaces []string `json:"interfaces"`
	Packets    uint64   `json:"packets"`
	Bytes      uint64   `json:"bytes"`
}

// DeniedFlow is one source whose packets the firewall dropped, counted
// since it was first recorded (a source is forgotten 10 minutes after its
// last dropped packet, and when the firewall is replaced).
type DeniedFlow struct {
	Peer      string `json:"peer"` // the node with that address in the segment; "" if none
	Addr      string `json:"addr"` // the source's overlay address
	Segment   string `json:"segment"`
	Interface string `json:"interface"`
	Packets   uint64 `json:"packets"`
}
