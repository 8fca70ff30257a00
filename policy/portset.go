package policy

import "slices"

// portSet is a set of (protocol, port) pairs: port intervals for tcp and
// udp, and a flag for icmp and for every other IP protocol, which only
// "any" covers. It is what reachability arithmetic (allow minus deny)
// works on.
type portSet struct {
	tcp, udp    []PortRange // sorted, disjoint, not adjacent
	icmp, other bool
}

var allPorts = []PortRange{{1, 65535}}

func specSet(p PortSpec) portSet {
	ranges := p.Ranges
	if len(ranges) == 0 {
		ranges = allPorts
	}
	switch p.Proto {
	case ProtoTCP:
		return portSet{tcp: normalize(ranges)}
	case ProtoUDP:
		return portSet{udp: normalize(ranges)}
	case ProtoICMP:
		return portSet{icmp: true}
	}
	return fullSet()
}

func fullSet() portSet {
	return portSet{tcp: allPorts, udp: allPorts, icmp: true, other: true}
}

func rulePorts(r *Rule) portSet {
	var s portSet
	for _, p := range r.Ports {
		s = s.union(specSet(p))
	}
	return s
}

func (s portSet) empty() bool {
	return len(s.tcp) == 0 && len(s.udp) == 0 && !s.icmp && !s.other
}

func (s portSet) union(o portSet) portSet {
	return portSet{
		tcp:   normalize(append(slices.Clip(s.tcp), o.tcp...)),
		udp:   normalize(append(slices.Clip(s.udp), o.udp...)),
		icmp:  s.icmp || o.icmp,
		other: s.other || o.other,
	}
}

func (s portSet) minus(o portSet) portSet {
	return portSet{
		tcp:   subtract(s.tcp, o.tcp),
		udp:   subtract(s.udp, o.udp),
		icmp:  s.icmp && !o.icmp,
		other: s.other && !o.other,
	}
}

// contains reports whether the set holds proto (tcp, udp or icmp) and,
// for tcp and udp, port.
func (s portSet) contains(proto string, port uint16) bool {
	switch proto {
	case ProtoTCP:
		return inRanges(s.tcp, port)
	case ProtoUDP:
		return inRanges(s.udp, port)
	case ProtoICMP:
		return s.icmp
	}
	return false
}

func inRanges(rs []PortRange, port uint16) bool {
	for _, r := range rs {
		if r.Lo <= port && port <= r.Hi {
			return true
		}
	}
	return false
}

// normalize sorts and merges overlapping and adjacent ranges. It returns
// a new slice; rs is not changed.
func normalize(rs []PortRange) []PortRange {
	if len(rs) == 0 {
		return nil
	}
	sorted := slices.Clone(rs)
	slices.SortFunc(sorted, func(a, b PortRange) int { return int(a.Lo) - int(b.Lo) })
	out := sorted[:1]
	for _, r := range sorted[1:] {
		last := &out[len(out)-1]
		if int(r.Lo) <= int(last.Hi)+1 {
			last.Hi = max(last.Hi, r.Hi)
			continue
		}
		out = append(out, r)
	}
	return out
}

// subtract returns a minus b, both normalized.
func subtract(a, b []PortRange) []PortRange {
	var out []PortRange
	for _, r := range a {
		lo := int(r.Lo)
		for _, d := range b {
			if int(d.Hi) < lo || d.Lo > r.Hi {
				continue
			}
			if int(d.Lo) > lo {
				out = append(out, PortRange{uint16(lo), d.Lo - 1})
			}
			lo = int(d.Hi) + 1
		}
		if lo <= int(r.Hi) {
			out = append(out, PortRange{uint16(lo), r.Hi})
		}
	}
	return out
}
