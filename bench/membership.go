package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// Host c joins the cluster and leaves it again, a few times, after the
// throughput runs. Each time it is a new node (c1, c2, ...) with a fresh
// data dir and a fresh single-use token, tagged bench, so the policy
// already applied (v2) makes it a member of the segment.
const (
	joinTimeout  = 60 * time.Second
	purgeTimeout = 60 * time.Second
	// leaveTimeout bounds `weft leave`, which waits for Raft and gossip;
	// the CLI's own limit is 90 s.
	leaveTimeout = 90 * time.Second
	// joinPing is the limit of each ping to the new host: the first one
	// also makes the WireGuard handshake.
	joinPing = 200 * time.Millisecond
)

// membershipResult is what the joins and leaves of host c measured.
type membershipResult struct {
	Joins  []enforceTiming // agent started → a's ping answered over the segment
	Leaves []enforceTiming // `weft leave` returned → purged
}

// addHostC makes host c: a namespace with a veth pair to a, on its own
// subnet, a routing between c and b. It is added after the throughput
// runs, so that the forwarding it turns on in a changes nothing they
// measure.
func (b *bed) addHostC(ctx context.Context) (*host, error) {
	pid := os.Getpid()
	c := &host{name: "c", ns: fmt.Sprintf("%s%d-c", nsPrefix, pid), ip: underlayC, iface: fmt.Sprintf("wfb%xc", pid)}
	aEnd := fmt.Sprintf("wfb%xac", pid)
	b.mu.Lock()
	b.namespaces = append(b.namespaces, c.ns)
	b.mu.Unlock()
	steps := [][]string{
		{"netns", "add", c.ns},
		{"link", "add", aEnd, "netns", b.a.ns, "type", "veth", "peer", "name", c.iface, "netns", c.ns},
		{"-n", b.a.ns, "addr", "add", netip.PrefixFrom(underlayAC, 24).String(), "dev", aEnd},
		{"-n", b.a.ns, "link", "set", aEnd, "up"},
		{"-n", c.ns, "link", "set", "lo", "up"},
		{"-n", c.ns, "addr", "add", netip.PrefixFrom(c.ip, 24).String(), "dev", c.iface},
		{"-n", c.ns, "link", "set", c.iface, "up"},
		{"-n", c.ns, "route", "add", "default", "via", underlayAC.String()},
		{"-n", b.b.ns, "route", "add", netip.PrefixFrom(underlayAC, 24).Masked().String(), "via", b.a.ip.String()},
	}
	for _, args := range steps {
		if err := ipCmd(ctx, args...); err != nil {
			return nil, err
		}
	}
	if _, err := b.a.exec(ctx, nil, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1"); err != nil {
		return nil, err
	}
	return c, nil
}

// measureMembership joins and removes host c n times and times each.
func (w *weftBed) measureMembership(ctx context.Context, c *host, n int) (membershipResult, error) {
	var r membershipResult
	for i := range n {
		ag, jt, err := w.join(ctx, c, fmt.Sprintf("c%d", i+1))
		if err != nil {
			return r, err
		}
		r.Joins = append(r.Joins, jt)
		lt, err := w.leave(ctx, ag)
		if err != nil {
			return r, err
		}
		r.Leaves = append(r.Leaves, lt)
	}
	return r, nil
}

// The parts of a join.
const (
	joinListed   = "a lists it as a peer"
	joinAnswered = "a's ping answered"
)

// join starts a new client agent on host c and times, from starting it,
// until a lists it as a peer of the segment and until a ping from a to
// its segment address gets an answer (the Total). Each poll asks a's agent
// for the new peer, then pings it.
func (w *weftBed) join(ctx context.Context, c *host, node string) (*weftAgent, enforceTiming, error) {
	jt := enforceTiming{What: "join " + node}
	var tok struct {
		Token string `json:"token"`
	}
	if err := w.cliJSON(ctx, w.a, &tok, "token", "create", "-ttl", "10m"); err != nil {
		return nil, jt, err
	}
	ag, err := w.newAgent(c, node)
	if err != nil {
		return nil, jt, err
	}
	if err := ag.write(agentHCL(ag, false, tok.Token)); err != nil {
		return nil, jt, err
	}
	t0 := time.Now()
	if err := w.start(ag); err != nil {
		return nil, jt, err
	}
	var listed time.Duration
	err = w.b.poll(ctx, enforcePoll, joinTimeout, node+" to join and answer a's ping over the segment", func() (bool, string) {
		s, err := w.segment(ctx, w.a, weftSegment)
		if err != nil {
			return false, err.Error()
		}
		addr, ok := peerAddr(s, node)
		if !ok {
			return false, fmt.Sprintf("a's segment %s has no peer %s with an address", weftSegment, node)
		}
		if listed == 0 {
			listed = time.Since(t0)
		}
		if !w.b.a.ping(ctx, addr, joinPing) {
			return false, "no answer from " + node + "'s " + addr.String()
		}
		jt.Total = time.Since(t0)
		return true, ""
	})
	jt.Parts = []timingPart{{joinListed, listed}, {joinAnswered, jt.Total}}
	return ag, jt, err
}

// peerAddr is the segment address of the peer named node.
func peerAddr(s *segment, node string) (netip.Addr, bool) {
	if s == nil {
		return netip.Addr{}, false
	}
	for _, p := range s.Peers {
		if p.Name != node || len(p.AllowedIPs) == 0 {
			continue
		}
		pfx, err := netip.ParsePrefix(p.AllowedIPs[0])
		if err != nil {
			return netip.Addr{}, false
		}
		return pfx.Addr(), true
	}
	return netip.Addr{}, false
}

// leave makes the agent leave with `weft leave` and times, from its
// return, until neither a nor b lists the agent's public key as a peer and
// its host has no wf- interface left. It first waits until both list the
// key, so that the purge is what is timed.
func (w *weftBed) leave(ctx context.Context, ag *weftAgent) (enforceTiming, error) {
	node := ag.node
	var key string
	err := w.b.waitFor(ctx, joinTimeout, "a and b to list "+node+"'s key", func() (bool, string) {
		s, err := w.segment(ctx, ag, weftSegment)
		if err != nil {
			return false, err.Error()
		}
		if s == nil || s.PublicKey == "" {
			return false, node + " has no key in segment " + weftSegment
		}
		key = s.PublicKey
		for _, other := range []*weftAgent{w.a, w.c} {
			listed, seen, err := w.listsKey(ctx, other, key)
			if err != nil || !listed {
				return false, fmt.Sprintf("%s: %s %v", other.h.name, seen, err)
			}
		}
		return true, ""
	})
	if err != nil {
		return enforceTiming{}, err
	}

	ag.proc.mayExit.Store(true)
	if _, err := w.cliFor(ctx, leaveTimeout, ag, "leave"); err != nil {
		return enforceTiming{}, err
	}
	gone := namedCheck{"a and b list no peer with its key", func(uint64) (bool, string) {
		for _, other := range []*weftAgent{w.a, w.c} {
			listed, seen, err := w.listsKey(ctx, other, key)
			if err != nil {
				return false, err.Error()
			}
			if listed {
				return false, other.h.name + " still lists it: " + seen
			}
		}
		return true, ""
	}}
	noIface := namedCheck{"no wf- interface on its host", func(uint64) (bool, string) {
		names, err := wfLinks(ctx, ag.h)
		if err != nil {
			return false, err.Error()
		}
		return len(names) == 0, strings.Join(names, ", ")
	}}
	lt, err := w.b.timeChecks(ctx, "leave "+node, 0, []namedCheck{gone, noIface})
	if err != nil {
		return lt, err
	}
	// The agent exits 0 after a leave: wait for that, so that the next
	// join starts on a host with nothing of this one left.
	select {
	case <-ag.proc.done:
		if ag.proc.err != nil {
			return lt, fmt.Errorf("%s exited after weft leave: %v; its log ends with:\n%s", node, ag.proc.err, ag.proc.logTail(10))
		}
	case <-time.After(stopTimeout):
		return lt, fmt.Errorf("%s still runs %v after weft leave returned", node, stopTimeout)
	case <-ctx.Done():
		return lt, ctx.Err()
	}
	return lt, nil
}

// listsKey says whether ag's segment has a peer with that public key, and
// which peers it has.
func (w *weftBed) listsKey(ctx context.Context, ag *weftAgent, key string) (bool, string, error) {
	s, err := w.segment(ctx, ag, weftSegment)
	if err != nil || s == nil {
		return false, "no segment", err
	}
	var names []string
	listed := false
	for _, p := range s.Peers {
		names = append(names, p.Name)
		listed = listed || p.PublicKey == key
	}
	return listed, "peers " + strings.Join(names, ", "), nil
}

// wfLinks lists the host's interfaces whose name starts with "wf-".
func wfLinks(ctx context.Context, h *host) ([]string, error) {
	out, err := h.exec(ctx, nil, "ip", "-j", "link", "show")
	if err != nil {
		return nil, err
	}
	var links []struct {
		Name string `json:"ifname"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil {
		return nil, fmt.Errorf("%s: ip -j link show: %w", h.name, err)
	}
	var names []string
	for _, l := range links {
		if strings.HasPrefix(l.Name, "wf-") {
			names = append(names, l.Name)
		}
	}
	return names, nil
}

// timeChecks polls every check at once, every enforcePoll, and times each
// from now; Total is the longest.
func (b *bed) timeChecks(ctx context.Context, what string, version uint64, checks []namedCheck) (enforceTiming, error) {
	t0 := time.Now()
	et := enforceTiming{What: what, Version: version, Parts: make([]timingPart, len(checks))}
	errs := make([]error, len(checks))
	var wg sync.WaitGroup
	for i, c := range checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = b.poll(ctx, enforcePoll, enforceTimeout, what+": "+c.name, func() (bool, string) { return c.cond(version) })
			et.Parts[i] = timingPart{Name: c.name, Took: time.Since(t0)}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return et, err
	}
	for _, p := range et.Parts {
		et.Total = max(et.Total, p.Took)
	}
	return et, nil
}

// medianParts is, per part name, the median of that part over timings,
// in the order of the first timing's parts.
func medianParts(ts []enforceTiming) []timingPart {
	if len(ts) == 0 {
		return nil
	}
	var out []timingPart
	for i, p := range ts[0].Parts {
		var ds []time.Duration
		for _, t := range ts {
			if i < len(t.Parts) {
				ds = append(ds, t.Parts[i].Took)
			}
		}
		out = append(out, timingPart{Name: p.Name, Took: medianDur(ds)})
	}
	return out
}

// medianDur is the median (the lower middle one of an even count, so
// that it is a measured value).
func medianDur(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}
