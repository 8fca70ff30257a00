package policy

import "fmt"

// Explanation says whether a flow is allowed and why.
type Explanation struct {
	Allowed bool
	// Segment is the segment the two hosts' traffic goes through (the
	// path segment), empty when nothing at all is allowed between them.
	Segment string
	// Rule is the rule that decided: the deny rule that drops the flow or
	// the allow rule that lets it through; empty for intra-segment traffic
	// and for the default deny.
	Rule   string
	Reason string
}

// Explain says whether host from may open a flow to host to on proto
// ("tcp", "udp" or "icmp") and port (ignored for icmp), and why.
func Explain(d *Document, hosts []Host, from, to, proto string, port uint16) Explanation {
	f := newFleet(d, hosts)
	for _, n := range f.dupes {
		if n == from || n == to {
			return Explanation{Reason: fmt.Sprintf("more than one host is named %q", n)}
		}
	}
	h, ok := f.byName[from]
	if !ok {
		return Explanation{Reason: fmt.Sprintf("unknown host %q", from)}
	}
	t, ok := f.byName[to]
	if !ok {
		return Explanation{Reason: fmt.Sprintf("unknown host %q", to)}
	}
	switch proto {
	case ProtoTCP, ProtoUDP:
		if port == 0 {
			return Explanation{Reason: fmt.Sprintf("port 0 is not a %s port", proto)}
		}
	case ProtoICMP:
		port = 0
	default:
		return Explanation{Reason: fmt.Sprintf("unknown protocol %q (tcp, udp or icmp)", proto)}
	}
	if h == t {
		return Explanation{Allowed: true, Reason: "a host's traffic to itself does not cross the mesh"}
	}
	if isZero(f.segOf(h)) {
		return Explanation{Reason: fmt.Sprintf("%s is a member of no segment, so it reaches nothing", from)}
	}
	if isZero(f.segOf(t)) {
		return Explanation{Reason: fmt.Sprintf("%s is a member of no segment, so nothing reaches it", to)}
	}

	e := Explanation{}
	if r := f.pair(h, t); r.path >= 0 {
		e.Segment = d.Segments[r.path].Name
	}
	both := make([]uint64, f.ruleWords)
	for i := range both {
		both[i] = f.fromOf(h)[i] & f.toOf(t)[i]
	}
	firstRule := func(action Action) int {
		found := -1
		forBits(both, func(r int) {
			if found < 0 && d.Rules[r].Action == action && f.ports[r].contains(proto, port) {
				found = r
			}
		})
		return found
	}
	if r := firstRule(Deny); r >= 0 {
		e.Rule = d.Rules[r].Name
		e.Reason = fmt.Sprintf("denied by rule %s", e.Rule)
		return e
	}
	if s := firstCommon(f.segOf(h), f.segOf(t), f.intra); s >= 0 {
		e.Allowed = true
		e.Reason = fmt.Sprintf("allowed by intra-segment traffic in %s", d.Segments[s].Name)
		return e
	}
	if r := firstRule(Allow); r >= 0 {
		e.Allowed = true
		e.Rule = d.Rules[r].Name
		e.Reason = fmt.Sprintf("allowed by rule %s", e.Rule)
		return e
	}
	e.Reason = "no rule allows it (default deny)"
	return e
}
