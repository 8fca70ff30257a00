package cluster

import (
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/raft"

	"github.com/weft-mesh/weft/identity"
)

// Member is one host as this agent sees it: its registry entry joined
// with its gossip liveness.
type Member struct {
	Name       string
	Addr       string
	GossipPort int
	RPCPort    int
	Role       Role
	Status     string
	StateIndex uint64
	// PolicyVersion is the policy version the host's dataplane enforces.
	PolicyVersion uint64
	Tags          []string
}

// Members returns every registered host and every host alive in gossip,
// sorted by name. Hosts that left or were removed are not listed.
func (c *Cluster) Members() []Member {
	st := c.fsm.State()
	view := c.gossipView()
	out := map[string]Member{}
	for _, n := range st.Nodes {
		m := Member{Name: n.Name, Addr: n.Addr, GossipPort: n.GossipPort, RPCPort: n.RPCPort, Role: n.Role, Status: StatusUnknown, Tags: n.Tags}
		if p, ok := view[n.Name]; ok {
			m.Status, m.StateIndex, m.PolicyVersion = p.Status, p.Meta.Index, p.Meta.Policy
		}
		out[n.Name] = m
	}
	for name, p := range view {
		if _, ok := out[name]; ok || p.Status != StatusAlive {
			continue
		}
		if _, removed := st.Tombstones[name]; removed {
			continue
		}
		out[name] = Member{Name: name, Addr: p.Addr, GossipPort: p.Port, Role: p.Meta.Role, Status: p.Status, StateIndex: p.Meta.Index, PolicyVersion: p.Meta.Policy}
	}
	if self, ok := out[c.opts.Name]; ok {
		self.StateIndex, self.PolicyVersion = st.Index, c.policyApplied.Load()
		out[c.opts.Name] = self
	}
	members := slices.Collect(maps.Values(out))
	slices.SortFunc(members, func(a, b Member) int { return strings.Compare(a.Name, b.Name) })
	return members
}

// RaftPeer is one server in the Raft configuration.
type RaftPeer struct {
	ID      string
	Address string
	Voter   bool
}

// Check is one health condition of this agent.
type Check struct {
	Name   string
	OK     bool
	Reason string
}

// Status describes this agent.
type Status struct {
	Node       string
	Role       Role
	Domain     string
	Joined     bool
	Leader     string
	RaftState  string
	RaftPeers  []RaftPeer
	StateIndex uint64
	Checks     []Check
}

// Ready reports whether every check passes.
func (s Status) Ready() bool {
	for _, c := range s.Checks {
		if !c.OK {
			return false
		}
	}
	return true
}

// Status returns this agent's view of itself.
func (c *Cluster) Status() Status {
	st := c.fsm.State()
	s := Status{Node: c.opts.Name, Role: c.role(), Domain: c.opts.Domain, Joined: c.Joined(), StateIndex: st.Index}
	joined := Check{Name: "joined", OK: s.Joined}
	if !s.Joined {
		joined.Reason = "not part of a cluster: run weft join"
	}
	s.Checks = append(s.Checks, joined)
	if r := c.raftNode(); r != nil {
		s.RaftState = r.State().String()
		_, id := r.LeaderWithID()
		s.Leader = string(id)
		if f := r.GetConfiguration(); f.Error() == nil {
			for _, srv := range f.Configuration().Servers {
				s.RaftPeers = append(s.RaftPeers, RaftPeer{ID: string(srv.ID), Address: string(srv.Address), Voter: srv.Suffrage == raft.Voter})
			}
		}
		rc := Check{Name: "raft", OK: s.Leader != ""}
		if !rc.OK {
			rc.Reason = "no raft leader"
		}
		s.Checks = append(s.Checks, rc)
	} else if s.Joined {
		s.Leader = c.leaderFromGossip()
		sc := Check{Name: "state", OK: st.Index > 0}
		if p := c.syncErr.Load(); p != nil && *p != "" {
			sc.Reason = "state sync: " + *p
			sc.OK = sc.OK && *p != ErrRevoked.Error()
		}
		s.Checks = append(s.Checks, sc)
	}
	return s
}

// leaderFromGossip is a client's idea of the leader: clients do not speak
// Raft, so servers announce who leads in their gossip meta.
func (c *Cluster) leaderFromGossip() string {
	votes := map[string]int{}
	for _, p := range c.gossipView() {
		if p.Status == StatusAlive && p.Meta.Leader != "" {
			votes[p.Meta.Leader]++
		}
	}
	best := ""
	for name, n := range votes {
		if n > votes[best] || (n == votes[best] && name < best) {
			best = name
		}
	}
	return best
}

// Nodes returns the registry, sorted by name.
func (c *Cluster) Nodes() []*Node { return c.fsm.State().SortedNodes() }

// PeerHealth is what gossip says of a node: whether it is alive, and
// which of its services fail their checks.
type PeerHealth struct {
	Alive   bool
	Failing []string
}

// Health returns the gossip view of every node this agent knows of, by
// name, itself included. It changes with gossip, not with Raft.
func (c *Cluster) Health() map[string]PeerHealth {
	out := map[string]PeerHealth{}
	for name, p := range c.gossipView() {
		h := PeerHealth{Alive: p.Status == StatusAlive}
		if p.Meta.Failing != "" {
			h.Failing = strings.Split(p.Meta.Failing, ",")
		}
		out[name] = h
	}
	self := PeerHealth{Alive: true}
	if f := c.failing.Load(); f != nil {
		self.Failing = *f
	}
	out[c.opts.Name] = self
	return out
}

// HealthVersion changes whenever the gossip view may have changed.
func (c *Cluster) HealthVersion() uint64 {
	c.mu.Lock()
	g := c.gossip
	c.mu.Unlock()
	v := uint64(0)
	if g != nil {
		v = g.version.Load()
	}
	return v + c.failingVersion.Load() // both only grow: so does the sum
}

// LeaderChanges counts the leader changes this server has observed.
func (c *Cluster) LeaderChanges() uint64 { return c.leaderChanges.Load() }

// Expiry returns when this host's node certificate and the CA expire
// (zero times when unknown).
func (c *Cluster) Expiry() (node, ca time.Time) {
	c.mu.Lock()
	li := c.ident
	c.mu.Unlock()
	if li != nil {
		if cert, err := identity.ParseCertPEM(li.NodeCert); err == nil {
			node = cert.NotAfter
		}
		if certs, err := identity.ParseBundle(li.CABundle); err == nil {
			ca = certs[0].NotAfter
		}
	}
	return node, ca
}
