package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Compile returns the Plan of host self: its interfaces, their peers and
// its firewall. It fails when self is not among hosts or when a name is
// given to more than one host. See the package doc for the rules.
func Compile(d *Document, hosts []Host, self string, version uint64) (*Plan, error) {
	f := newFleet(d, hosts)
	if len(f.dupes) > 0 {
		return nil, fmt.Errorf("policy: compile for %q: more than one host is named %s", self, quoteList(f.dupes))
	}
	me, ok := f.byName[self]
	if !ok {
		return nil, fmt.Errorf("policy: compile for %q: no such host", self)
	}

	// One pass over the fleet finds every peer of self in every segment:
	// the hosts self may send something to, and those that may send
	// something to self, each through its path segment.
	nseg := len(d.Segments)
	peers := make([][]int, nseg)          // candidates, in name order
	inbound := make([]int, len(f.hosts))  // the path of h→self, or -1
	outbound := make([]int, len(f.hosts)) // the path of self→h, or -1
	guestOf := make([]bool, nseg)
	for h := range f.hosts {
		inbound[h], outbound[h] = -1, -1
		if h == me {
			continue
		}
		out, in := f.pair(me, h), f.pair(h, me)
		outbound[h] = out.path
		if out.path >= 0 {
			peers[out.path] = append(peers[out.path], h)
			guestOf[out.path] = guestOf[out.path] || out.guest
		}
		if in.path >= 0 {
			inbound[h] = in.path
			if in.path != out.path {
				peers[in.path] = append(peers[in.path], h)
			}
		}
	}

	plan := &Plan{Self: self, PolicyVersion: version}
	meHost := f.hosts[me]
	var ifaces []int // the segments self has an interface in, by name
	listed := make([]map[int]netip.Addr, nseg)
	for s, seg := range d.Segments {
		role := Member
		switch {
		case f.isMember(me, s):
		case guestOf[s]:
			role = Guest
		default:
			continue
		}
		addr, ok := addrIn(meHost, seg)
		if !ok {
			continue // IPAM has not given self an address here yet
		}
		sp := SegmentPlan{
			Name:       seg.Name,
			Interface:  seg.Interface(),
			Role:       role,
			CIDR:       seg.CIDR,
			Address:    netip.PrefixFrom(addr, seg.CIDR.Bits()),
			ListenPort: seg.Port,
		}
		if role == Guest {
			sp.Address = hostPrefix(addr)
		}
		listed[s] = map[int]netip.Addr{}
		for _, h := range peers[s] {
			host := f.hosts[h]
			a, ok := addrIn(host, seg)
			key := host.Segments[seg.Name].PublicKey
			if !ok || key == "" {
				continue // not registered here yet: it cannot be a peer
			}
			p := Peer{Name: host.Name, PublicKey: key, AllowedIPs: []netip.Prefix{hostPrefix(a)}}
			if host.Underlay.IsValid() {
				p.Endpoint = netip.AddrPortFrom(host.Underlay, uint16(seg.Port))
			}
			sp.Peers = append(sp.Peers, p)
			listed[s][h] = a
			if outbound[h] == s {
				plan.Reach = append(plan.Reach, Reach{Name: host.Name, Segment: seg.Name, Addr: a})
			}
		}
		slices.SortFunc(sp.Peers, func(a, b Peer) int { return strings.Compare(a.Name, b.Name) })
		plan.Segments = append(plan.Segments, sp)
		ifaces = append(ifaces, s)
	}

	// sources returns, for the interface of segment s, the addresses of
	// the listed peers whose traffic to self goes through s and that keep
	// says yes to.
	sources := func(s int, keep func(h int) bool) []netip.Prefix {
		var out []netip.Prefix
		for h, a := range listed[s] {
			if inbound[h] == s && keep(h) {
				out = append(out, hostPrefix(a))
			}
		}
		slices.SortFunc(out, comparePrefixes)
		return out
	}
	ruleRules := func(action Action) {
		for r := range d.Rules {
			rule := &d.Rules[r]
			if rule.Action != action || !hasBit(f.toOf(me), r) {
				continue
			}
			for _, s := range ifaces {
				src := sources(s, func(h int) bool { return hasBit(f.fromOf(h), r) })
				if len(src) == 0 {
					continue
				}
				for _, ps := range rule.Ports {
					plan.Firewall = append(plan.Firewall, FirewallRule{
						Counter:   CounterRule + rule.Name,
						Action:    action,
						Interface: d.Segments[s].Interface(),
						Sources:   src,
						Proto:     ps.Proto,
						Ports:     slices.Clone(ps.Ranges),
					})
				}
			}
		}
	}

	ruleRules(Deny)
	for s, seg := range d.Segments {
		if seg.Intra == Deny || !f.isMember(me, s) {
			continue
		}
		for _, p := range ifaces {
			// A member of several intra-allow segments with self is
			// counted under the first of them: the one it would be
			// reached through if it were alone.
			src := sources(p, func(h int) bool { return firstCommon(f.segOf(me), f.segOf(h), f.intra) == s })
			if len(src) == 0 {
				continue
			}
			plan.Firewall = append(plan.Firewall, FirewallRule{
				Counter:   CounterIntra + seg.Name,
				Action:    Allow,
				Interface: d.Segments[p].Interface(),
				Sources:   src,
				Proto:     ProtoAny,
			})
		}
	}
	ruleRules(Allow)
	slices.SortFunc(plan.Reach, func(a, b Reach) int { return strings.Compare(a.Name, b.Name) })
	return plan, nil
}

// Counter name prefixes of firewall rules.
const (
	CounterRule  = "rule/"
	CounterIntra = "intra/"
)

// addrIn returns h's address in seg when it has a valid one.
func addrIn(h *Host, seg Segment) (netip.Addr, bool) {
	a := h.Segments[seg.Name].Addr
	return a, a.IsValid() && seg.CIDR.Contains(a)
}

func hostPrefix(a netip.Addr) netip.Prefix { return netip.PrefixFrom(a, a.BitLen()) }

func comparePrefixes(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}
