package policy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strings"
)

// ErrExhausted is matched (errors.Is) by the error of Check and Allocate
// when a segment's CIDR has fewer usable addresses than hosts that need
// one.
var ErrExhausted = errors.New("segment cidr exhausted")

// ExhaustedError says which segment is too small, and by how much.
type ExhaustedError struct {
	Segment string
	CIDR    netip.Prefix
	Need    int    // hosts assigned to the segment (members and guests)
	Usable  uint64 // usable addresses of the CIDR
}

func (e *ExhaustedError) Error() string {
	return fmt.Sprintf("policy: segment %q: cidr %s has %d usable addresses, but %d hosts need one (members and guests)", e.Segment, e.CIDR, e.Usable, e.Need)
}

// Is makes errors.Is(err, ErrExhausted) true.
func (e *ExhaustedError) Is(target error) bool { return target == ErrExhausted }

// Assignments returns, per segment name, every host that needs an
// interface in it, with its role. Segments no host needs are left out.
// Hosts whose name is not unique are left out too (Compile and Allocate
// report them).
func Assignments(d *Document, hosts []Host) map[string]map[string]Role {
	return newFleet(d, hosts).assignments()
}

func (f *fleet) assignments() map[string]map[string]Role {
	out := map[string]map[string]Role{}
	put := func(s, h int, role Role) {
		name := f.doc.Segments[s].Name
		m := out[name]
		if m == nil {
			m = map[string]Role{}
			out[name] = m
		}
		m[f.hosts[h].Name] = role
	}
	for s, members := range f.members {
		for _, h := range members {
			put(s, h, Member)
		}
	}
	for h, guestOf := range f.guestSegments() {
		forBits(guestOf, func(s int) { put(s, h, Guest) })
	}
	return out
}

// guestSegments returns, per host, the segments it is a guest of.
//
// Guests are found between classes of hosts rather than between hosts: two
// hosts with the same segments and the same rule matches are alike as a
// source (or as a target), and fleets have far fewer kinds of hosts than
// hosts, so this is not quadratic in the fleet.
func (f *fleet) guestSegments() [][]uint64 {
	type class struct {
		seg, rules []uint64 // the rules matching From (sources) or To (targets)
		hosts      []int
	}
	group := func(rulesOf func(int) []uint64) []*class {
		byKey := map[string]*class{}
		var out []*class
		var key []byte
		for h := range f.hosts {
			seg, rules := f.segOf(h), rulesOf(h)
			if isZero(seg) {
				continue // a member of no segment reaches and is reached by nothing
			}
			key = key[:0]
			for _, w := range seg {
				key = binary.LittleEndian.AppendUint64(key, w)
			}
			for _, w := range rules {
				key = binary.LittleEndian.AppendUint64(key, w)
			}
			c := byKey[string(key)]
			if c == nil {
				c = &class{seg: seg, rules: rules}
				byKey[string(key)] = c
				out = append(out, c)
			}
			c.hosts = append(c.hosts, h)
		}
		return out
	}
	sources, targets := group(f.fromOf), group(f.toOf)

	guestOf := make([][]uint64, len(f.hosts))
	for _, src := range sources {
		segs := make([]uint64, f.segWords)
		for _, dst := range targets {
			if firstCommon(src.seg, dst.seg, nil) >= 0 {
				continue // they share a segment: members, not guests
			}
			if r := f.reachBits(src.seg, src.rules, dst.seg, dst.rules); r.path >= 0 {
				setBit(segs, r.path)
			}
		}
		if isZero(segs) {
			continue
		}
		for _, h := range src.hosts {
			guestOf[h] = segs
		}
	}
	return guestOf
}

// Check validates the document against a fleet: every segment's CIDR must
// have a usable address for each of its members and guests. The error
// joins an *ExhaustedError per segment that is too small.
func (d *Document) Check(hosts []Host) error {
	return check(d, Assignments(d, hosts))
}

func check(d *Document, a map[string]map[string]Role) error {
	var errs []error
	for _, s := range d.Segments {
		if need, usable := len(a[s.Name]), usableCount(s.CIDR); uint64(need) > usable {
			errs = append(errs, &ExhaustedError{Segment: s.Name, CIDR: s.CIDR, Need: need, Usable: usable})
		}
	}
	return errors.Join(errs...)
}

// Allocate is IPAM: it returns, per segment name, the overlay address of
// every host the segment is assigned to (see Assignments). A host keeps
// its current address while it is still assigned and the address is still
// usable in the segment's CIDR and not already kept by a host earlier in
// name order; a host no longer assigned loses its address (it is left out
// of the result); a host without an address gets the lowest free usable
// one. The result depends only on the arguments. Segments without hosts
// are left out.
func Allocate(d *Document, hosts []Host, current map[string]map[string]netip.Addr) (map[string]map[string]netip.Addr, error) {
	f := newFleet(d, hosts)
	if len(f.dupes) > 0 {
		return nil, fmt.Errorf("policy: allocate: more than one host is named %s", quoteList(f.dupes))
	}
	assignments := f.assignments()
	if err := check(d, assignments); err != nil {
		return nil, err
	}
	out := map[string]map[string]netip.Addr{}
	for name, assigned := range assignments {
		seg := d.Segments[f.segIdx[name]]
		names := make([]string, 0, len(assigned))
		for h := range assigned {
			names = append(names, h)
		}
		slices.Sort(names)

		addrs := make(map[string]netip.Addr, len(names))
		taken := make(map[netip.Addr]bool, len(names))
		cur := current[name]
		for _, h := range names {
			if a, ok := cur[h]; ok && usable(seg.CIDR, a) && !taken[a] {
				addrs[h], taken[a] = a, true
			}
		}
		next := seg.CIDR.Addr().Next() // the lowest usable address
		for _, h := range names {
			if _, ok := addrs[h]; ok {
				continue
			}
			for seg.CIDR.Contains(next) && (taken[next] || !usable(seg.CIDR, next)) {
				next = next.Next()
			}
			if !seg.CIDR.Contains(next) {
				// Check counted the usable addresses; this cannot happen.
				return nil, &ExhaustedError{Segment: name, CIDR: seg.CIDR, Need: len(names), Usable: usableCount(seg.CIDR)}
			}
			addrs[h], taken[next] = next, true
		}
		out[name] = addrs
	}
	return out, nil
}

// usable reports whether a is an address a host may have in p: inside it,
// not its network address and, for IPv4 prefixes shorter than /31, not its
// broadcast address.
func usable(p netip.Prefix, a netip.Addr) bool {
	if !p.Contains(a) || a == p.Addr() {
		return false
	}
	return !(a.Is4() && p.Bits() < 31 && a == lastAddr(p))
}

func usableCount(p netip.Prefix) uint64 {
	hostBits := p.Addr().BitLen() - p.Bits()
	if hostBits >= 64 {
		return math.MaxUint64
	}
	n := uint64(1)<<hostBits - 1 // less the network address
	if p.Addr().Is4() && p.Bits() < 31 {
		n-- // less the broadcast address
	}
	return n
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

func quoteList(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}
