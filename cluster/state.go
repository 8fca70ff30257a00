package cluster

import (
	"maps"
	"slices"
	"strings"
	"time"
)

// Role is what a node is in the cluster.
type Role string

// The roles.
const (
	RoleServer Role = "server"
	RoleClient Role = "client"
)

// State is the replicated intent held in Raft. Values reachable from a
// *State are never mutated after the state is published: every command
// builds a new State that shares what it did not change.
type State struct {
	// Index is the Raft log index of the last command applied.
	Index  uint64 `json:"index"`
	Domain string `json:"domain"`
	// CACert is the PEM trust bundle (one or more CA certificates).
	CACert string `json:"ca_cert"`
	// CAKey is the CA's private key. Servers only: Public drops it.
	CAKey string `json:"ca_key,omitempty"`
	// GossipKeys is the memberlist keyring, base64, primary first.
	// Servers only: clients receive it once, at join.
	GossipKeys []string `json:"gossip_keys,omitempty"`
	// Nodes is the registry, by name.
	Nodes map[string]*Node `json:"nodes"`
	// Tokens are join tokens by ID, holding only a hash of the secret.
	// Servers only.
	Tokens map[string]*Token `json:"tokens,omitempty"`
	// Revoked maps certificate serials to the time the certificate
	// expires anyway (after which the entry is pruned).
	Revoked map[string]time.Time `json:"revoked"`
	// Tombstones remember removed nodes so that stale gossip about them is
	// ignored, by name.
	Tombstones map[string]Tombstone `json:"tombstones"`
	// Policy is the applied policy document, nil before the first apply.
	Policy *PolicyState `json:"policy,omitempty"`
}

// PolicyState is the policy document as applied.
type PolicyState struct {
	Version   uint64    `json:"version"`
	Filename  string    `json:"filename"`
	Source    string    `json:"source"`
	AppliedAt time.Time `json:"applied_at"`
	AppliedBy string    `json:"applied_by"`
}

// Node is one host in the registry.
type Node struct {
	Name       string   `json:"name"`
	Role       Role     `json:"role"`
	Addr       string   `json:"addr"` // underlay IP
	GossipPort int      `json:"gossip_port"`
	RPCPort    int      `json:"rpc_port"`
	RaftPort   int      `json:"raft_port"`
	Tags       []string `json:"tags"`
	// Certs are the certificates issued at registration (node SVID and,
	// for servers, the server SVID).
	Certs           []CertRef `json:"certs"`
	RegisteredIndex uint64    `json:"registered_index"`
	RegisteredAt    time.Time `json:"registered_at"`
	// Services are the services the host declares (its agent config).
	Services []Service `json:"services,omitempty"`
	// Segments holds, per segment, the host's WireGuard public key (which
	// only the host itself registers, over its authenticated RPC) and the
	// overlay address IPAM gave it.
	Segments map[string]NodeSegment `json:"segments,omitempty"`
}

// Service is one service a node declares.
type Service struct {
	Name string   `json:"name"`
	Port int      `json:"port"`
	Tags []string `json:"tags,omitempty"`
}

// NodeSegment is a node's key and address in one segment.
type NodeSegment struct {
	PublicKey string `json:"public_key,omitempty"`
	Addr      string `json:"addr,omitempty"`
}

// CertRef names an issued certificate.
type CertRef struct {
	Serial   string    `json:"serial"`
	NotAfter time.Time `json:"not_after"`
}

// Token is a stored join token. The secret itself is never stored.
type Token struct {
	ID         string    `json:"id"`
	SecretHash string    `json:"secret_hash"` // hex sha256 of the secret
	Server     bool      `json:"server"`
	Expires    time.Time `json:"expires"`
	UsesLeft   int       `json:"uses_left"`
	CreatedAt  time.Time `json:"created_at"`
}

// Tombstone records a removed node.
type Tombstone struct {
	Reason    string    `json:"reason"` // "left" or "removed"
	Index     uint64    `json:"index"`
	RemovedAt time.Time `json:"removed_at"`
}

// emptyState is the state before bootstrap.
func emptyState() *State {
	return &State{
		Nodes:      map[string]*Node{},
		Tokens:     map[string]*Token{},
		Revoked:    map[string]time.Time{},
		Tombstones: map[string]Tombstone{},
	}
}

// clone returns a shallow copy whose maps may be changed freely; the values
// they hold are shared and must be replaced, not mutated.
func (s *State) clone() *State {
	c := *s
	c.GossipKeys = slices.Clone(s.GossipKeys)
	c.Nodes = maps.Clone(s.Nodes)
	c.Tokens = maps.Clone(s.Tokens)
	c.Revoked = maps.Clone(s.Revoked)
	c.Tombstones = maps.Clone(s.Tombstones)
	c.normalize()
	return &c
}

// normalize replaces nil maps, so that decoded states are safe to use.
func (s *State) normalize() {
	if s.Nodes == nil {
		s.Nodes = map[string]*Node{}
	}
	if s.Tokens == nil {
		s.Tokens = map[string]*Token{}
	}
	if s.Revoked == nil {
		s.Revoked = map[string]time.Time{}
	}
	if s.Tombstones == nil {
		s.Tombstones = map[string]Tombstone{}
	}
}

// Public is the state as clients may see it: no CA key, no gossip keys, no
// tokens.
func (s *State) Public() *State {
	c := s.clone()
	c.CAKey = ""
	c.GossipKeys = nil
	c.Tokens = map[string]*Token{}
	return c
}

// Servers returns the registered servers, sorted by name.
func (s *State) Servers() []*Node {
	var out []*Node
	for _, n := range s.Nodes {
		if n.Role == RoleServer {
			out = append(out, n)
		}
	}
	slices.SortFunc(out, func(a, b *Node) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// SortedNodes returns every registered node, sorted by name.
func (s *State) SortedNodes() []*Node {
	out := slices.Collect(maps.Values(s.Nodes))
	slices.SortFunc(out, func(a, b *Node) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// IsRevoked reports whether a certificate serial has been revoked.
func (s *State) IsRevoked(serial string) bool {
	_, ok := s.Revoked[serial]
	return ok
}
