package policy

import (
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// Limits on a segment's prefix length: a segment needs room for at least
// two hosts besides its network (and, for IPv4, broadcast) address.
const (
	MaxBitsIPv4 = 30
	MaxBitsIPv6 = 126
)

// maxInterfaceName is IFNAMSIZ-1, the longest Linux interface name.
const maxInterfaceName = 15

var segmentNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

var rootSchema = &hcl.BodySchema{
	Blocks: []hcl.BlockHeaderSchema{
		{Type: "segment", LabelNames: []string{"name"}},
		{Type: "rule", LabelNames: []string{"name"}},
	},
}

var segmentSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "cidr", Required: true},
		{Name: "port", Required: true},
		{Name: "members", Required: true},
		{Name: "intra"},
	},
}

var ruleSchema = &hcl.BodySchema{
	Attributes: []hcl.AttributeSchema{
		{Name: "action", Required: true},
		{Name: "from", Required: true},
		{Name: "to", Required: true},
		{Name: "ports", Required: true},
	},
}

// Parse parses and validates a policy document. The error, when not nil,
// is a *Diagnostics listing every problem found, each with the
// file:line:col it is at. Problems that depend on the fleet (a segment too
// small for its hosts) are found by Document.Check.
func Parse(filename string, src []byte) (*Document, error) {
	file, hdiags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if hdiags.HasErrors() {
		// What follows a syntax error is not what was meant: validating it
		// would only report noise.
		return nil, fromHCL(hdiags).err()
	}
	content, hdiags := file.Body.Content(rootSchema)
	p := &parser{
		diags:    fromHCL(hdiags),
		segments: map[string]*parsedSegment{},
		rules:    map[string]hcl.Range{},
	}
	for _, b := range content.Blocks {
		switch b.Type {
		case "segment":
			p.segment(b)
		case "rule":
			p.rule(b)
		}
	}
	p.crossCheck()
	if len(p.diags) > 0 {
		return nil, p.diags.err()
	}
	d := &Document{Rules: p.doc.Rules}
	for _, s := range p.order {
		d.Segments = append(d.Segments, s.Segment)
	}
	slices.SortFunc(d.Segments, func(a, b Segment) int { return strings.Compare(a.Name, b.Name) })
	return d, nil
}

type parser struct {
	diags    Diagnostics
	doc      Document
	segments map[string]*parsedSegment // by name, the first definition
	order    []*parsedSegment          // in file order
	rules    map[string]hcl.Range      // where each rule name was defined
	refs     []segmentRef              // segment: selectors of rules, checked once all segments are known
}

type parsedSegment struct {
	Segment
	nameRange hcl.Range
	cidrRange *hcl.Range // nil when the cidr is missing or invalid
	portRange *hcl.Range // nil when the port is missing or invalid
}

type segmentRef struct {
	name string
	rng  hcl.Range
}

func (p *parser) add(rng hcl.Range, summary, detail string) {
	p.diags = append(p.diags, newDiagnostic(rng, summary, detail))
}

func (p *parser) segment(b *hcl.Block) {
	content, hdiags := b.Body.Content(segmentSchema)
	p.diags = append(p.diags, fromHCL(hdiags)...)

	s := &parsedSegment{Segment: Segment{Name: b.Labels[0], Intra: Allow}, nameRange: b.LabelRanges[0]}
	p.segmentName(s)
	if prev, dup := p.segments[s.Name]; dup {
		p.add(s.nameRange, "Duplicate segment", fmt.Sprintf("segment %q is already defined at %s", s.Name, pos(prev.nameRange)))
	} else {
		// Registered even when invalid, so that rules naming it are not
		// reported a second time as naming an unknown segment.
		p.segments[s.Name] = s
		p.order = append(p.order, s)
	}

	if a := content.Attributes["cidr"]; a != nil {
		if v, ok := p.decodeString(a); ok {
			if prefix, ok := p.cidr(v, a.Expr.Range()); ok {
				s.CIDR = prefix
				s.cidrRange = a.Expr.Range().Ptr()
			}
		}
	}
	if a := content.Attributes["port"]; a != nil {
		var port int
		if ok := p.decode(a, &port); ok {
			if port < 1 || port > 65535 {
				p.add(a.Expr.Range(), "Invalid port", fmt.Sprintf("port %d is out of range; a port is a number from 1 to 65535", port))
			} else {
				s.Port = port
				s.portRange = a.Expr.Range().Ptr()
			}
		}
	}
	if a := content.Attributes["members"]; a != nil {
		for _, e := range p.decodeList(a, "members", "select at least one host") {
			sel, err := parseSelector(e.value, false)
			if err != nil {
				p.add(e.rng, "Invalid selector", err.Error())
				continue
			}
			s.Members = append(s.Members, sel)
		}
	}
	if a := content.Attributes["intra"]; a != nil {
		if v, ok := p.decodeString(a); ok {
			if act, ok := p.action(v, "intra", a.Expr.Range()); ok {
				s.Intra = act
			}
		}
	}
}

func (p *parser) segmentName(s *parsedSegment) {
	switch {
	case !segmentNameRe.MatchString(s.Name):
		p.add(s.nameRange, "Invalid segment name", fmt.Sprintf("%q must be lowercase letters, digits and dashes, starting with a letter or digit", s.Name))
	case len(s.Interface()) > maxInterfaceName:
		p.add(s.nameRange, "Invalid segment name", fmt.Sprintf("%q makes the interface name %q of %d bytes; an interface name has at most %d, so a segment name at most %d",
			s.Name, s.Interface(), len(s.Interface()), maxInterfaceName, maxInterfaceName-len(InterfacePrefix)))
	}
}

func (p *parser) cidr(v string, rng hcl.Range) (netip.Prefix, bool) {
	prefix, err := netip.ParsePrefix(v)
	switch {
	case err != nil:
		p.add(rng, "Invalid cidr", fmt.Sprintf("%q is not a CIDR prefix such as 10.90.1.0/24", v))
	case prefix.Addr().Is4In6():
		p.add(rng, "Invalid cidr", fmt.Sprintf("%q is an IPv4-mapped IPv6 prefix; write it as IPv4", v))
	case prefix != prefix.Masked():
		p.add(rng, "Invalid cidr", fmt.Sprintf("%q has host bits set; did you mean %q?", v, prefix.Masked().String()))
	case prefix.Addr().Is4() && prefix.Bits() > MaxBitsIPv4:
		p.add(rng, "Invalid cidr", fmt.Sprintf("%q is too small: an IPv4 segment is at most a /%d", v, MaxBitsIPv4))
	case prefix.Addr().Is6() && prefix.Bits() > MaxBitsIPv6:
		p.add(rng, "Invalid cidr", fmt.Sprintf("%q is too small: an IPv6 segment is at most a /%d", v, MaxBitsIPv6))
	default:
		return prefix, true
	}
	return netip.Prefix{}, false
}

func (p *parser) action(v, key string, rng hcl.Range) (Action, bool) {
	switch a := Action(v); a {
	case Allow, Deny:
		return a, true
	}
	p.add(rng, "Invalid "+key, fmt.Sprintf("%q is neither %q nor %q", v, Allow, Deny))
	return "", false
}

func (p *parser) rule(b *hcl.Block) {
	content, hdiags := b.Body.Content(ruleSchema)
	p.diags = append(p.diags, fromHCL(hdiags)...)

	r := Rule{Name: b.Labels[0]}
	nameRange := b.LabelRanges[0]
	if r.Name == "" || strings.IndexFunc(r.Name, func(c rune) bool { return c <= ' ' || c == 0x7f }) >= 0 {
		p.add(nameRange, "Invalid rule name", fmt.Sprintf("%q: a rule name is not empty and has no spaces or control characters", r.Name))
	}
	if prev, dup := p.rules[r.Name]; dup {
		p.add(nameRange, "Duplicate rule", fmt.Sprintf("rule %q is already defined at %s", r.Name, pos(prev)))
	} else {
		p.rules[r.Name] = nameRange
	}

	if a := content.Attributes["action"]; a != nil {
		if v, ok := p.decodeString(a); ok {
			r.Action, _ = p.action(v, "action", a.Expr.Range())
		}
	}
	for _, side := range []struct {
		key string
		dst *[]Selector
	}{{"from", &r.From}, {"to", &r.To}} {
		a := content.Attributes[side.key]
		if a == nil {
			continue
		}
		for _, e := range p.decodeList(a, side.key, "select at least one host") {
			sel, err := parseSelector(e.value, true)
			if err != nil {
				p.add(e.rng, "Invalid selector", err.Error())
				continue
			}
			if sel.Kind == KindSegment {
				p.refs = append(p.refs, segmentRef{sel.Value, e.rng})
			}
			*side.dst = append(*side.dst, sel)
		}
	}
	if a := content.Attributes["ports"]; a != nil {
		for _, e := range p.decodeList(a, "ports", "name at least one port spec") {
			ps, err := parsePortSpec(e.value)
			if err != nil {
				p.add(e.rng, "Invalid port spec", err.Error())
				continue
			}
			r.Ports = append(r.Ports, ps)
		}
	}
	p.doc.Rules = append(p.doc.Rules, r)
}

// crossCheck finds the problems between blocks: overlapping CIDRs, shared
// ports and rules naming unknown segments. Each is reported where the
// later block (in file order) says it.
func (p *parser) crossCheck() {
	for j, b := range p.order {
		for _, a := range p.order[:j] {
			if a.cidrRange != nil && b.cidrRange != nil && a.CIDR.Overlaps(b.CIDR) {
				p.add(*b.cidrRange, "Overlapping cidr", fmt.Sprintf("segment %q (%s) overlaps segment %q (%s)", b.Name, b.CIDR, a.Name, a.CIDR))
			}
			if a.portRange != nil && b.portRange != nil && a.Port == b.Port {
				p.add(*b.portRange, "Duplicate port", fmt.Sprintf("segment %q uses port %d, as does segment %q", b.Name, b.Port, a.Name))
			}
		}
	}
	for _, ref := range p.refs {
		if _, ok := p.segments[ref.name]; !ok {
			p.add(ref.rng, "Unknown segment", fmt.Sprintf("no segment is named %q%s", ref.name, p.suggestSegment(ref.name)))
		}
	}
}

// suggestSegment offers the defined segment closest to a misspelt name.
func (p *parser) suggestSegment(name string) string {
	best, bestDist := "", 3 // more than two edits is not a typo
	for _, s := range p.order {
		if d := editDistance(name, s.Name); d < bestDist {
			best, bestDist = s.Name, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf("; did you mean %q?", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func (p *parser) decode(a *hcl.Attribute, dst any) bool {
	return p.decodeExpr(a.Expr, dst)
}

// decodeExpr evaluates expr (without variables or functions: a policy
// document is literal) into dst.
func (p *parser) decodeExpr(expr hcl.Expression, dst any) bool {
	// Evaluating first keeps gohcl from adding "value must be known" to
	// "Variables not allowed".
	if _, hdiags := expr.Value(nil); hdiags.HasErrors() {
		p.diags = append(p.diags, fromHCL(hdiags)...)
		return false
	}
	hdiags := gohcl.DecodeExpression(expr, nil, dst)
	p.diags = append(p.diags, fromHCL(hdiags)...)
	return !hdiags.HasErrors()
}

func (p *parser) decodeString(a *hcl.Attribute) (string, bool) {
	var s string
	ok := p.decode(a, &s)
	return s, ok
}

type listElem struct {
	value string
	rng   hcl.Range
}

// decodeList decodes a list of strings, keeping where each element is
// written so that a bad one can be pointed at. An empty list is an error:
// it is always a mistake in a document that has no variables.
func (p *parser) decodeList(a *hcl.Attribute, key, purpose string) []listElem {
	var out []listElem
	if exprs, hdiags := hcl.ExprList(a.Expr); !hdiags.HasErrors() {
		for _, e := range exprs {
			var s string
			if !p.decodeExpr(e, &s) {
				continue
			}
			out = append(out, listElem{s, e.Range()})
		}
		if len(exprs) == 0 {
			p.add(a.Expr.Range(), "Empty list", key+" must "+purpose)
		}
		return out
	}
	// Not a list literal: let gohcl say what is wrong with it.
	var ss []string
	if !p.decode(a, &ss) {
		return nil
	}
	if len(ss) == 0 {
		p.add(a.Expr.Range(), "Empty list", key+" must "+purpose)
	}
	for _, s := range ss {
		out = append(out, listElem{s, a.Expr.Range()})
	}
	return out
}

func pos(r hcl.Range) string {
	return r.Filename + ":" + strconv.Itoa(r.Start.Line) + ":" + strconv.Itoa(r.Start.Column)
}
