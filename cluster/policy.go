package cluster

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"time"

	"github.com/weft-mesh/weft/policy"
)

// ErrBadPolicy wraps every reason a policy document is refused.
var ErrBadPolicy = errors.New("policy refused")

// The policy commands.
const (
	OpPolicy     Op = "policy"
	OpSegmentKey Op = "segment_key"
)

// PolicyCmd replaces the policy document.
type PolicyCmd struct {
	Filename string `json:"filename"`
	Source   string `json:"source"`
	By       string `json:"by"`
}

// SegmentKeyCmd registers a node's WireGuard public key in a segment.
type SegmentKeyCmd struct {
	Name      string `json:"name"`
	Segment   string `json:"segment"`
	PublicKey string `json:"public_key"`
}

// Document returns the parsed policy of st, or nil when none is applied.
// A stored document always parses: it was validated before it was
// committed, and parsing is deterministic.
func (s *State) Document() (*policy.Document, error) {
	if s.Policy == nil {
		return nil, nil
	}
	return policy.Parse(s.Policy.Filename, []byte(s.Policy.Source))
}

// PolicyHosts returns the registry as the policy compiler sees it, sorted
// by name.
func (s *State) PolicyHosts() []policy.Host {
	nodes := s.SortedNodes()
	hosts := make([]policy.Host, 0, len(nodes))
	for _, n := range nodes {
		h := policy.Host{Name: n.Name, Tags: n.Tags, Segments: map[string]policy.HostSegment{}}
		for _, svc := range n.Services {
			h.Services = append(h.Services, svc.Name)
		}
		h.Underlay, _ = netip.ParseAddr(n.Addr)
		for seg, ns := range n.Segments {
			hs := policy.HostSegment{PublicKey: ns.PublicKey}
			hs.Addr, _ = netip.ParseAddr(ns.Addr)
			h.Segments[seg] = hs
		}
		hosts = append(hosts, h)
	}
	return hosts
}

// applyPolicy validates and installs a new document and reallocates
// addresses. Nothing changes when the document is refused.
func applyPolicy(st *State, c *PolicyCmd, now time.Time) error {
	doc, err := policy.Parse(c.Filename, []byte(c.Source))
	if err != nil {
		return fmt.Errorf("%w: %w", ErrBadPolicy, err)
	}
	if err := doc.Check(st.PolicyHosts()); err != nil {
		return fmt.Errorf("%w: %w", ErrBadPolicy, err)
	}
	if err := reallocate(st, doc); err != nil {
		return fmt.Errorf("%w: %w", ErrBadPolicy, err)
	}
	version := uint64(1)
	if st.Policy != nil {
		version = st.Policy.Version + 1
	}
	st.Policy = &PolicyState{Version: version, Filename: c.Filename, Source: c.Source, AppliedAt: now.UTC(), AppliedBy: c.By}
	return nil
}

// reallocate runs IPAM over the registry: addresses stay stable, hosts no
// longer in a segment release theirs, new ones get the lowest free one.
// Keys of segments a host is no longer in are dropped with the address.
func reallocate(st *State, doc *policy.Document) error {
	if doc == nil {
		return nil
	}
	hosts := st.PolicyHosts()
	current := map[string]map[string]netip.Addr{}
	for _, h := range hosts {
		for seg, hs := range h.Segments {
			if !hs.Addr.IsValid() {
				continue
			}
			if current[seg] == nil {
				current[seg] = map[string]netip.Addr{}
			}
			current[seg][h.Name] = hs.Addr
		}
	}
	next, err := policy.Allocate(doc, hosts, current)
	if err != nil {
		return err
	}
	for name, n := range st.Nodes {
		segs := map[string]NodeSegment{}
		for seg, byHost := range next {
			addr, ok := byHost[name]
			if !ok {
				continue
			}
			ns := n.Segments[seg] // keeps a registered key
			ns.Addr = addr.String()
			segs[seg] = ns
		}
		// A key registered before IPAM reached the host is kept for a
		// segment it is assigned to.
		for seg, ns := range n.Segments {
			if _, ok := segs[seg]; !ok && ns.PublicKey != "" && ns.Addr == "" && hasSegment(doc, seg) {
				segs[seg] = ns
			}
		}
		if !maps.Equal(segs, n.Segments) {
			nc := *n
			nc.Segments = segs
			st.Nodes[name] = &nc
		}
	}
	return nil
}

// applySegmentKey records a node's public key in a segment.
func applySegmentKey(st *State, c *SegmentKeyCmd) error {
	n, ok := st.Nodes[c.Name]
	if !ok {
		return fmt.Errorf("%w: %q", ErrNodeUnknown, c.Name)
	}
	if err := validWireGuardKey(c.PublicKey); err != nil {
		return fmt.Errorf("%w: %v", ErrBadCommand, err)
	}
	doc, err := st.Document()
	if err != nil || doc == nil || !hasSegment(doc, c.Segment) {
		return fmt.Errorf("%w: no segment %q in the policy", ErrBadCommand, c.Segment)
	}
	nc := *n
	nc.Segments = maps.Clone(n.Segments)
	if nc.Segments == nil {
		nc.Segments = map[string]NodeSegment{}
	}
	ns := nc.Segments[c.Segment]
	ns.PublicKey = c.PublicKey
	nc.Segments[c.Segment] = ns
	st.Nodes[c.Name] = &nc
	return nil
}

func hasSegment(doc *policy.Document, name string) bool {
	for _, s := range doc.Segments {
		if s.Name == name {
			return true
		}
	}
	return false
}

// reallocateAfter runs IPAM after a registry change. A refused
// allocation (a full CIDR) keeps the old addresses: the change itself
// stands, and the new host simply gets no address in that segment.
func reallocateAfter(st *State) {
	doc, err := st.Document()
	if err != nil || doc == nil {
		return
	}
	snapshot := maps.Clone(st.Nodes)
	if reallocate(st, doc) != nil {
		st.Nodes = snapshot
	}
}

func validWireGuardKey(s string) error {
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(b) != 32 {
		return errors.New("a WireGuard public key is 32 bytes of base64")
	}
	return nil
}

// ApplyPolicy validates a policy document and commits it (servers).
// It returns the new version.
func (c *Cluster) ApplyPolicy(ctx context.Context, filename, source, by string) (uint64, error) {
	if !c.opts.Server {
		return 0, ErrNotServer
	}
	if !c.Joined() {
		return 0, ErrNotJoined
	}
	st := c.fsm.State()
	doc, err := policy.Parse(filename, []byte(source))
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrBadPolicy, err)
	}
	if err := doc.Check(st.PolicyHosts()); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrBadPolicy, err)
	}
	idx, err := c.apply(ctx, &Command{Op: OpPolicy, Policy: &PolicyCmd{Filename: filename, Source: source, By: by}})
	if err != nil {
		return 0, err
	}
	// A write forwarded to the leader is committed before this server has
	// applied it: read the version only once the local state has caught up.
	wctx, cancel := context.WithTimeout(ctx, applyTimeout)
	st = c.fsm.Wait(wctx, idx-1)
	cancel()
	if st.Index < idx || st.Policy == nil {
		return 0, fmt.Errorf("cluster: policy committed at index %d, but this server has not applied it yet", idx)
	}
	c.log.Info("policy applied", "version", st.Policy.Version, "by", by)
	return st.Policy.Version, nil
}

// RegisterSegmentKey makes this host's public key in a segment known to
// the cluster. Only the host itself can do this: servers apply it for
// their own name, clients send it over their authenticated RPC.
func (c *Cluster) RegisterSegmentKey(ctx context.Context, segment, publicKey string) error {
	cmd := &Command{Op: OpSegmentKey, SegmentKey: &SegmentKeyCmd{Name: c.opts.Name, Segment: segment, PublicKey: publicKey}}
	if c.opts.Server {
		_, err := c.apply(ctx, cmd)
		return err
	}
	servers := c.fsm.State().Servers()
	if len(servers) == 0 {
		return ErrNoServerReached
	}
	var errs []error
	k := rand.IntN(len(servers))
	for i := range servers {
		s := servers[(k+i)%len(servers)]
		err := c.rpc.do(ctx, "POST", joinAddr(s.Addr, s.RPCPort), rpcSegmentKey, cmd.SegmentKey, nil)
		if err == nil {
			return nil
		}
		var re *RemoteError
		if errors.As(err, &re) && re.Status != 503 {
			return err
		}
		errs = append(errs, err)
	}
	return fmt.Errorf("%w: %w", ErrNoServerReached, errors.Join(errs...))
}
