package agent

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/weft-mesh/weft/client"
	"github.com/weft-mesh/weft/cluster"
	"github.com/weft-mesh/weft/overlay"
	"github.com/weft-mesh/weft/policy"
)

// Flow reporting: GET /v1/flows, and the log of denied traffic. Both read
// what the firewall counted (a counter per rule, and the sources of the
// packets it dropped) through the overlay, and name it with the applied
// plan (counter → action and interfaces, interface → segment) and the
// registry (a segment's overlay address → node).

const (
	// maxDeniedFlows bounds the sources GET /v1/flows lists.
	maxDeniedFlows = 20
	// deniedLogInterval is how often the denied sources are read for the
	// log; maxDeniedLogLines bounds the lines per read (one per source
	// whose count grew, most packets first), after which one summary line
	// counts the rest.
	deniedLogInterval = 10 * time.Second
	maxDeniedLogLines = 10
)

func (a *Agent) handleFlows(w http.ResponseWriter, r *http.Request) {
	if a.dataplane == nil {
		writeErr(w, http.StatusServiceUnavailable, fmt.Errorf("the dataplane is not running: %s", a.dataplaneErr))
		return
	}
	f, err := a.dataplane.flows(a.cluster.State())
	if err != nil {
		writeErr(w, http.StatusInternalServerError, err)
		return
	}
	writeJSON(w, http.StatusOK, f)
}

// appliedPlan is the plan last given to the overlay (nil before the
// first). Plans are never modified once compiled, so it may be read
// without the lock.
func (d *dataplane) appliedPlan() *policy.Plan {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.plan
}

// flows reads the firewall's counters and denied sources and names them;
// st is the state whose registry names the sources.
func (d *dataplane) flows(st *cluster.State) (client.Flows, error) {
	out := client.Flows{Rules: []client.RuleFlow{}, Denied: []client.DeniedFlow{}}
	plan := d.appliedPlan()
	counters, err := d.overlay.Counters()
	if err != nil {
		return out, fmt.Errorf("flows: %w", err)
	}
	out.Rules = ruleFlows(plan, counters)
	srcs, err := d.overlay.DeniedSources()
	if err != nil {
		return out, fmt.Errorf("flows: %w", err)
	}
	names := newPeerIndex(plan, st)
	for _, s := range srcs[:min(len(srcs), maxDeniedFlows)] {
		peer, seg := names.lookup(s.Interface, s.Addr)
		out.Denied = append(out.Denied, client.DeniedFlow{
			Peer: peer, Addr: s.Addr.String(), Segment: seg, Interface: s.Interface, Packets: s.Packets,
		})
	}
	return out, nil
}

// ruleFlows is one RuleFlow per counter of plan's firewall, in evaluation
// order (a counter shared by several rules, one per interface or family,
// is listed once, with all their interfaces), then the default deny over
// every interface of the plan. No plan: none.
func ruleFlows(plan *policy.Plan, counters map[string]overlay.Counter) []client.RuleFlow {
	out := []client.RuleFlow{}
	if plan == nil {
		return out
	}
	segOf := map[string]string{} // interface → segment
	deny := client.RuleFlow{Counter: overlay.DefaultDenyCounter, Action: string(policy.Deny), Segments: []string{}, Interfaces: []string{}}
	for _, s := range plan.Segments {
		segOf[s.Interface] = s.Name
		deny.Segments = append(deny.Segments, s.Name)
		deny.Interfaces = append(deny.Interfaces, s.Interface)
	}
	at := map[string]int{} // counter → index in out
	for _, r := range plan.Firewall {
		i, ok := at[r.Counter]
		if !ok {
			i = len(out)
			at[r.Counter] = i
			rule, isRule := strings.CutPrefix(r.Counter, policy.CounterRule)
			if !isRule {
				rule = "" // an intra allow
			}
			out = append(out, client.RuleFlow{Counter: r.Counter, Rule: rule, Action: string(r.Action), Segments: []string{}, Interfaces: []string{}})
		}
		f := &out[i]
		if !slices.Contains(f.Interfaces, r.Interface) {
			f.Interfaces = append(f.Interfaces, r.Interface)
		}
		if seg, ok := segOf[r.Interface]; ok && !slices.Contains(f.Segments, seg) {
			f.Segments = append(f.Segments, seg)
		}
	}
	out = append(out, deny)
	for i := range out {
		f := &out[i]
		slices.Sort(f.Interfaces)
		slices.Sort(f.Segments)
		c := counters[f.Counter]
		f.Packets, f.Bytes = c.Packets, c.Bytes
	}
	return out
}

// peerIndex names overlay source addresses: the node that has the address
// in the segment of the interface the packet came in on.
type peerIndex struct {
	segOf map[string]string                // interface → segment, from the plan
	nodes map[string]map[netip.Addr]string // segment → address → node, from the registry
}

func newPeerIndex(plan *policy.Plan, st *cluster.State) peerIndex {
	p := peerIndex{segOf: map[string]string{}, nodes: map[string]map[netip.Addr]string{}}
	if plan != nil {
		for _, s := range plan.Segments {
			p.segOf[s.Interface] = s.Name
		}
	}
	if st == nil {
		return p
	}
	for name, n := range st.Nodes {
		for seg, ns := range n.Segments {
			a, err := netip.ParseAddr(ns.Addr)
			if err != nil {
				continue
			}
			if p.nodes[seg] == nil {
				p.nodes[seg] = map[netip.Addr]string{}
			}
			p.nodes[seg][a.Unmap()] = name
		}
	}
	return p
}

// lookup returns the node with addr in the segment of iface ("" if none)
// and that segment. An interface the plan no longer has (one being
// removed) has no segment; addr then names a node only if exactly one
// node has it, in any segment.
func (p peerIndex) lookup(iface string, addr netip.Addr) (peer, segment string) {
	addr = addr.Unmap()
	if seg, ok := p.segOf[iface]; ok {
		return p.nodes[seg][addr], seg
	}
	for _, byAddr := range p.nodes {
		if n, ok := byAddr[addr]; ok {
			if peer != "" && peer != n {
				return "", ""
			}
			peer = n
		}
	}
	return peer, ""
}

// logDenied logs, every interval until ctx ends, the sources whose
// dropped-packet count grew since the last read (see deniedLog).
func (a *Agent) logDenied(ctx context.Context, interval time.Duration) {
	if a.dataplane == nil {
		return
	}
	d := a.dataplane
	l := &deniedLog{
		read:  d.overlay.DeniedSources,
		names: func() peerIndex { return newPeerIndex(d.appliedPlan(), a.cluster.State()) },
		log:   d.log,
	}
	l.run(ctx, interval)
}

// deniedLog turns the firewall's denied sources into log lines at a
// bounded rate: per read, one line for each of the (at most
// maxDeniedLogLines) sources whose count grew the most, with the packets
// dropped since the previous read, and one line for the rest.
type deniedLog struct {
	read  func() ([]overlay.DeniedSource, error)
	names func() peerIndex
	log   *slog.Logger

	seen    map[deniedKey]uint64 // packets by source at the last read; nil before the first
	failing bool                 // the last read failed (and said so)
}

type deniedKey struct {
	iface string
	addr  netip.Addr
}

func (l *deniedLog) run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	l.tick()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			l.tick()
		}
	}
}

// tick reads the denied sources and logs their growth. The first read is
// the baseline: what was counted before (a table left by the previous
// run, say) is not logged.
func (l *deniedLog) tick() {
	srcs, err := l.read()
	if err != nil {
		if !l.failing {
			l.log.Warn("reading the denied sources failed; retrying", "err", err)
		}
		l.failing = true
		return
	}
	l.failing = false
	type growth struct {
		overlay.DeniedSource
		packets uint64 // since the last read
	}
	var grew []growth
	next := make(map[deniedKey]uint64, len(srcs))
	for _, s := range srcs {
		k := deniedKey{s.Interface, s.Addr}
		next[k] = s.Packets
		// A source not seen before, or with fewer packets than before,
		// is recorded afresh (it had expired, or the table was
		// replaced): all its packets are new.
		n := s.Packets
		if prev, ok := l.seen[k]; ok && s.Packets >= prev {
			n = s.Packets - prev
		}
		if l.seen != nil && n > 0 {
			grew = append(grew, growth{s, n})
		}
	}
	l.seen = next
	if len(grew) == 0 {
		return
	}
	slices.SortFunc(grew, func(a, b growth) int {
		return cmp.Or(cmp.Compare(b.packets, a.packets), cmp.Compare(a.Interface, b.Interface), a.Addr.Compare(b.Addr))
	})
	names := l.names()
	for _, g := range grew[:min(len(grew), maxDeniedLogLines)] {
		peer, _ := names.lookup(g.Interface, g.Addr)
		l.log.Info("denied traffic", "peer", peer, "addr", g.Addr.String(), "iface", g.Interface, "packets", g.packets)
	}
	if rest := grew[min(len(grew), maxDeniedLogLines):]; len(rest) > 0 {
		var packets uint64
		for _, g := range rest {
			packets += g.packets
		}
		l.log.Info("denied traffic: and more sources", "sources", len(rest), "packets", packets)
	}
}
