package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Diff returns what changes between two plans of a host, one line for a
// person each: "+ segment db (member, 10.90.2.3/24)", "- peer web-2 from
// wf-web", "~ address of wf-db: 10.90.2.3/24 -> 10.90.2.4/24", "+ rule
// rule/web-to-postgres on wf-db: allow tcp/5432 from 2 sources". It is
// empty when the plans are equal but for their policy version. old may be
// nil (nothing applied yet).
func Diff(old, new *Plan) []string {
	if old == nil {
		old = &Plan{}
	}
	if new == nil {
		new = &Plan{}
	}
	var out []string
	add := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }

	oldSegs := map[string]*SegmentPlan{}
	for i := range old.Segments {
		oldSegs[old.Segments[i].Name] = &old.Segments[i]
	}
	newSegs := map[string]*SegmentPlan{}
	for i := range new.Segments {
		newSegs[new.Segments[i].Name] = &new.Segments[i]
	}
	var names []string
	for n := range oldSegs {
		names = append(names, n)
	}
	for n := range newSegs {
		if oldSegs[n] == nil {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	for _, n := range names {
		o, w := oldSegs[n], newSegs[n]
		switch {
		case o == nil:
			add("+ segment %s (%s, %s)", n, w.Role, w.Address)
			for _, p := range w.Peers {
				add("+ peer %s on %s", p.Name, w.Interface)
			}
		case w == nil:
			add("- segment %s (%s, %s)", n, o.Role, o.Address)
			for _, p := range o.Peers {
				add("- peer %s from %s", p.Name, o.Interface)
			}
		default:
			diffSegment(o, w, add)
		}
	}
	diffFirewall(old.Firewall, new.Firewall, add)
	return out
}

func diffSegment(o, w *SegmentPlan, add func(string, ...any)) {
	if o.Role != w.Role {
		add("~ role in %s: %s -> %s", w.Name, o.Role, w.Role)
	}
	if o.Interface != w.Interface {
		add("~ interface of %s: %s -> %s", w.Name, o.Interface, w.Interface)
	}
	if o.CIDR != w.CIDR {
		add("~ cidr of %s: %s -> %s", w.Name, o.CIDR, w.CIDR)
	}
	if o.Address != w.Address {
		add("~ address of %s: %s -> %s", w.Interface, o.Address, w.Address)
	}
	if o.ListenPort != w.ListenPort {
		add("~ listen port of %s: %d -> %d", w.Interface, o.ListenPort, w.ListenPort)
	}
	oldPeers := map[string]*Peer{}
	for i := range o.Peers {
		oldPeers[o.Peers[i].Name] = &o.Peers[i]
	}
	newPeers := map[string]bool{}
	for i := range w.Peers {
		p := &w.Peers[i]
		newPeers[p.Name] = true
		op := oldPeers[p.Name]
		if op == nil {
			add("+ peer %s on %s", p.Name, w.Interface)
			continue
		}
		if op.PublicKey != p.PublicKey {
			add("~ peer %s on %s: new public key", p.Name, w.Interface)
		}
		if op.Endpoint != p.Endpoint {
			add("~ peer %s on %s: endpoint %s -> %s", p.Name, w.Interface, op.Endpoint, p.Endpoint)
		}
		if !slices.Equal(op.AllowedIPs, p.AllowedIPs) {
			add("~ peer %s on %s: allowed ips %s -> %s", p.Name, w.Interface, prefixes(op.AllowedIPs), prefixes(p.AllowedIPs))
		}
	}
	for _, p := range o.Peers {
		if !newPeers[p.Name] {
			add("- peer %s from %s", p.Name, o.Interface)
		}
	}
}

// diffFirewall matches rules by what they are (counter, interface,
// protocol, ports) and reports those added, removed and whose sources
// changed; when only the order changed it says so, since order is meaning
// in a firewall.
func diffFirewall(o, w []FirewallRule, add func(string, ...any)) {
	type keyed struct {
		key string
		r   *FirewallRule
	}
	index := func(rules []FirewallRule) ([]keyed, map[string]*FirewallRule) {
		seen := map[string]int{}
		list := make([]keyed, len(rules))
		byKey := make(map[string]*FirewallRule, len(rules))
		for i := range rules {
			r := &rules[i]
			k := fmt.Sprintf("%s|%s|%s|%s|%s", r.Counter, r.Action, r.Interface, r.Proto, formatRanges(r.Ports))
			seen[k]++
			k = fmt.Sprintf("%s|%d", k, seen[k]) // the same rule twice is two rules
			list[i] = keyed{k, r}
			byKey[k] = r
		}
		return list, byKey
	}
	oldList, oldBy := index(o)
	newList, newBy := index(w)
	changed := false
	for _, k := range newList {
		or := oldBy[k.key]
		switch {
		case or == nil:
			add("+ rule %s", describeRule(k.r))
			changed = true
		case !slices.Equal(or.Sources, k.r.Sources):
			add("~ rule %s (was %d)", describeRule(k.r), len(or.Sources))
			changed = true
		}
	}
	for _, k := range oldList {
		if newBy[k.key] == nil {
			add("- rule %s", describeRule(k.r))
			changed = true
		}
	}
	if !changed && len(oldList) == len(newList) {
		for i := range oldList {
			if oldList[i].key != newList[i].key {
				add("~ firewall rules reordered")
				break
			}
		}
	}
}

func describeRule(r *FirewallRule) string {
	ps := PortSpec{Proto: r.Proto, Ranges: r.Ports}
	n := len(r.Sources)
	plural := "s"
	if n == 1 {
		plural = ""
	}
	return fmt.Sprintf("%s on %s: %s %s from %d source%s", r.Counter, r.Interface, r.Action, ps, n, plural)
}

func prefixes(ps []netip.Prefix) string {
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ",")
}
