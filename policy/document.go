package policy

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// Document is a parsed and validated policy document.
type Document struct {
	Segments []Segment // sorted by Name
	Rules    []Rule    // in file order
}

// Segment is one WireGuard overlay: the hosts its members select, an
// address range and a listen port.
type Segment struct {
	Name    string
	CIDR    netip.Prefix // canonical (masked)
	Port    int          // the WireGuard listen port of the segment on every host
	Members []Selector   // never of kind "segment"
	Intra   Action       // whether members reach each other without a rule
}

// Interface is the name of the segment's WireGuard interface on a host.
func (s Segment) Interface() string { return InterfacePrefix + s.Name }

// InterfacePrefix starts the name of every weft interface.
const InterfacePrefix = "wf-"

// Selector kinds.
const (
	KindSegment = "segment" // the members of a segment; only in from and to
	KindTag     = "tag"     // the hosts with a tag
	KindNode    = "node"    // the host with a name
	KindService = "service" // the hosts that declare a service
)

// Selector selects hosts, written "kind:value".
type Selector struct {
	Kind  string
	Value string
}

func (s Selector) String() string { return s.Kind + ":" + s.Value }

// Rule allows or denies traffic from some hosts to others on some ports.
type Rule struct {
	Name     string
	Action   Action
	From, To []Selector
	Ports    []PortSpec
}

// PortSpec is a protocol and, for tcp and udp, port ranges.
type PortSpec struct {
	Proto  string      // "tcp", "udp", "icmp" or "any"
	Ranges []PortRange // empty means every port; always empty for icmp and any
}

// String is the spec as written in a document: "tcp/8000-8100",
// "udp/53", "tcp/80,443", "tcp" (every port), "icmp", "any".
func (p PortSpec) String() string {
	if len(p.Ranges) == 0 {
		return p.Proto
	}
	return p.Proto + "/" + formatRanges(p.Ranges)
}

func formatRanges(rs []PortRange) string {
	parts := make([]string, len(rs))
	for i, r := range rs {
		parts[i] = r.String()
	}
	return strings.Join(parts, ",")
}

func (r PortRange) String() string {
	if r.Lo == r.Hi {
		return strconv.Itoa(int(r.Lo))
	}
	return strconv.Itoa(int(r.Lo)) + "-" + strconv.Itoa(int(r.Hi))
}

// The protocols of a PortSpec and a FirewallRule.
const (
	ProtoTCP  = "tcp"
	ProtoUDP  = "udp"
	ProtoICMP = "icmp"
	ProtoAny  = "any"
)

// parseSelector parses "kind:value". segmentOK says whether the segment
// kind is accepted (from and to) or not (members).
func parseSelector(s string, segmentOK bool) (Selector, error) {
	kind, value, ok := strings.Cut(s, ":")
	if !ok {
		return Selector{}, fmt.Errorf("%q is not kind:value (kinds: %s)", s, kindList(segmentOK))
	}
	switch kind {
	case KindTag, KindNode, KindService:
	case KindSegment:
		if !segmentOK {
			return Selector{}, fmt.Errorf("%q: members cannot name a segment (kinds: %s)", s, kindList(false))
		}
	default:
		return Selector{}, fmt.Errorf("%q: unknown kind %q (kinds: %s)", s, kind, kindList(segmentOK))
	}
	if value == "" {
		return Selector{}, fmt.Errorf("%q has an empty %s name", s, kind)
	}
	if i := strings.IndexFunc(value, func(r rune) bool { return r <= ' ' || r == 0x7f }); i >= 0 {
		return Selector{}, fmt.Errorf("%q: a %s name must not contain spaces or control characters", s, kind)
	}
	return Selector{Kind: kind, Value: value}, nil
}

func kindList(segmentOK bool) string {
	if segmentOK {
		return "segment:, tag:, node:, service:"
	}
	return "tag:, node:, service:"
}

// parsePortSpec parses "tcp/N", "tcp/LO-HI", a comma list of those
// ("tcp/80,443"), "tcp" (every port), the same for udp, "icmp" and "any".
func parsePortSpec(s string) (PortSpec, error) {
	proto, ports, hasPorts := strings.Cut(s, "/")
	switch proto {
	case ProtoTCP, ProtoUDP:
	case ProtoICMP, ProtoAny:
		if hasPorts {
			return PortSpec{}, fmt.Errorf("%q: %s has no ports; write %q", s, proto, proto)
		}
		return PortSpec{Proto: proto}, nil
	default:
		return PortSpec{}, fmt.Errorf("%q is not a port spec (tcp/N, tcp/LO-HI, udp/N, udp/LO-HI, icmp, any)", s)
	}
	if !hasPorts {
		return PortSpec{Proto: proto}, nil
	}
	var rs []PortRange
	for part := range strings.SplitSeq(ports, ",") {
		r, err := parsePortRange(part)
		if err != nil {
			return PortSpec{}, fmt.Errorf("%q: %w", s, err)
		}
		rs = append(rs, r)
	}
	return PortSpec{Proto: proto, Ranges: rs}, nil
}

func parsePortRange(s string) (PortRange, error) {
	lo, hi, isRange := strings.Cut(s, "-")
	l, err := parsePort(lo)
	if err != nil {
		return PortRange{}, err
	}
	if !isRange {
		return PortRange{l, l}, nil
	}
	h, err := parsePort(hi)
	if err != nil {
		return PortRange{}, err
	}
	if h < l {
		return PortRange{}, fmt.Errorf("range %d-%d ends before it starts", l, h)
	}
	return PortRange{l, h}, nil
}

func parsePort(s string) (uint16, error) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("%q is not a port number", s)
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %s is out of range (1-65535)", s)
	}
	return uint16(n), nil
}
