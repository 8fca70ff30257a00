package overlay

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/weft-mesh/weft/policy"
)

// Firewall is weft's own nftables table (family inet, name "weft").
type Firewall interface {
	// Apply replaces the whole table, in one atomic netlink batch, with
	// the rules for packets arriving on ifaces.
	Apply(rules []policy.FirewallRule, ifaces []string) error
	// Counters reads the counters, by policy counter name (rule.Counter,
	// plus DefaultDenyCounter).
	Counters() (map[string]Counter, error)
	// DeniedSources reads the sources of recently dropped packets (by a
	// deny rule or the default deny), by interface and source address,
	// most packets first. An element expires DeniedTimeout after its last
	// packet, and a new Apply starts the record afresh (the table is
	// replaced whole). No table: none.
	DeniedSources() ([]DeniedSource, error)
	// Remove deletes the table; an absent table is not an error.
	Remove() error
}

// Counter is one nftables named counter.
type Counter struct{ Packets, Bytes uint64 }

// DeniedSource is one source address whose packets the table dropped on
// one interface, with the number of packets dropped since it was first
// recorded.
type DeniedSource struct {
	Interface string
	Addr      netip.Addr
	Packets   uint64
}

// The nftables names weft owns.
const (
	TableName          = "weft"
	DefaultDenyCounter = "default-deny"
	// DenyChain is where every drop of the input chain goes: it records
	// the source in DeniedSet4 or DeniedSet6, then drops.
	DenyChain  = "deny"
	DeniedSet4 = "denied4" // type ifname . ipv4_addr
	DeniedSet6 = "denied6" // type ifname . ipv6_addr
)

// The bounds of the denied-source sets: a source is forgotten
// DeniedTimeout after its last dropped packet, and a full set records no
// new source (its packets are still dropped).
const (
	DeniedTimeout = 10 * time.Minute
	DeniedSetSize = 4096
)

// sortDenied orders denied sources by packets, most first, then by
// interface and address.
func sortDenied(ds []DeniedSource) {
	slices.SortFunc(ds, func(a, b DeniedSource) int {
		return cmp.Or(cmp.Compare(b.Packets, a.Packets), cmp.Compare(a.Interface, b.Interface), a.Addr.Compare(b.Addr))
	})
}

// The layer-4 protocols of a rule, as IANA numbers.
const (
	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
)

// ruleset is the table weft installs, as data: what Apply turns into
// nftables expressions. Building it is pure, so it is where rules are
// validated and table-tested.
type ruleset struct {
	ifaces   []string          // sorted, unique
	counters []string          // nft object names, sorted; DefaultDenyCounter among them
	names    map[string]string // nft object name → policy counter name
	input    []nftRule         // the policy rules, after the iface and ct rules
}

// nftRule is one rule of the input chain: it matches packets of one IP
// family arriving on Iface from Sources, of Proto (0: any) and, for tcp and
// udp, to Ports (none: any), counts them in Counter and accepts or drops.
type nftRule struct {
	Iface   string
	IPv6    bool
	Sources []addrRange
	Proto   uint8
	Ports   []policy.PortRange
	Counter string // nft object name
	Accept  bool
}

// addrRange is an inclusive range of addresses of one family.
type addrRange struct{ From, To netip.Addr }

// buildRuleset validates rules and ifaces and turns them into a ruleset.
// A rule with sources of both families becomes two nftRules sharing one
// counter; a rule without sources matches nothing and only keeps its
// counter.
func buildRuleset(rules []policy.FirewallRule, ifaces []string) (*ruleset, error) {
	rs := &ruleset{names: map[string]string{}}
	for _, ifc := range ifaces {
		if err := checkIfaceName(ifc); err != nil {
			return nil, err
		}
	}
	rs.ifaces = slices.Compact(slices.Sorted(slices.Values(ifaces)))

	objOf := map[string]string{} // policy counter name → nft object name
	addCounter := func(name string) string {
		if o, ok := objOf[name]; ok {
			return o
		}
		o := objectName(name, rs.names)
		objOf[name] = o
		rs.names[o] = name
		return o
	}
	addCounter(DefaultDenyCounter)

	for i, r := range rules {
		where := fmt.Sprintf("rule %d (counter %q)", i, r.Counter)
		if r.Counter == "" {
			return nil, fmt.Errorf("%s: no counter name", where)
		}
		if err := checkIfaceName(r.Interface); err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		var accept bool
		switch r.Action {
		case policy.Allow:
			accept = true
		case policy.Deny:
		default:
			return nil, fmt.Errorf("%s: unknown action %q", where, r.Action)
		}
		var l4 uint8
		switch r.Proto {
		case "tcp":
			l4 = protoTCP
		case "udp":
			l4 = protoUDP
		case "icmp", "any":
			if len(r.Ports) > 0 {
				return nil, fmt.Errorf("%s: ports need tcp or udp, not %q", where, r.Proto)
			}
			if r.Proto == "icmp" {
				l4 = protoICMP
			}
		default:
			return nil, fmt.Errorf("%s: unknown protocol %q", where, r.Proto)
		}
		ports, err := mergePorts(r.Ports)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		v4, v6, err := mergeSources(r.Sources)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", where, err)
		}
		obj := addCounter(r.Counter)
		for _, fam := range []struct {
			v6  bool
			src []addrRange
		}{{false, v4}, {true, v6}} {
			if len(fam.src) == 0 {
				continue
			}
			proto := l4
			if proto == protoICMP && fam.v6 {
				proto = protoICMPv6
			}
			rs.input = append(rs.input, nftRule{
				Iface: r.Interface, IPv6: fam.v6, Sources: fam.src,
				Proto: proto, Ports: ports, Counter: obj, Accept: accept,
			})
		}
	}
	for o := range rs.names {
		rs.counters = append(rs.counters, o)
	}
	slices.Sort(rs.counters)
	return rs, nil
}

func checkIfaceName(name string) error {
	if name == "" || len(name) > 15 || strings.ContainsAny(name, "/ \x00") {
		return fmt.Errorf("bad interface name %q", name)
	}
	return nil
}

// mergePorts sorts ranges and merges overlapping and adjacent ones: the
// kernel refuses overlapping intervals in one set.
func mergePorts(in []policy.PortRange) ([]policy.PortRange, error) {
	rs := slices.Clone(in)
	for _, r := range rs {
		if r.Lo == 0 || r.Hi < r.Lo {
			return nil, fmt.Errorf("bad port range %d-%d", r.Lo, r.Hi)
		}
	}
	slices.SortFunc(rs, func(a, b policy.PortRange) int { return cmp.Compare(a.Lo, b.Lo) })
	var out []policy.PortRange
	for _, r := range rs {
		if n := len(out); n > 0 && uint32(r.Lo) <= uint32(out[n-1].Hi)+1 {
			out[n-1].Hi = max(out[n-1].Hi, r.Hi)
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

// mergeSources splits prefixes by family and merges them into disjoint,
// non-adjacent ranges.
func mergeSources(in []netip.Prefix) (v4, v6 []addrRange, err error) {
	var all []addrRange
	for _, p := range in {
		if !p.IsValid() {
			return nil, nil, errors.New("invalid source prefix")
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		p = p.Masked()
		all = append(all, addrRange{From: p.Addr(), To: lastAddr(p)})
	}
	slices.SortFunc(all, func(a, b addrRange) int { return a.From.Compare(b.From) })
	for _, r := range all {
		out := &v4
		if r.From.Is6() {
			out = &v6
		}
		if n := len(*out); n > 0 {
			last := &(*out)[n-1]
			next := last.To.Next()
			if !next.IsValid() || r.From.Compare(next) <= 0 {
				if r.To.Compare(last.To) > 0 {
					last.To = r.To
				}
				continue
			}
		}
		*out = append(*out, r)
	}
	return v4, v6, nil
}

// lastAddr is the highest address of a masked prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}

// objectName turns a policy counter name ("rule/web-to-postgres") into an
// nftables object name ("rule_web-to-postgres"): letters, digits, '_',
// '-' and '.', starting with a letter, at most 64 bytes. Names already
// taken (in taken) get a suffix, so the mapping stays one to one.
func objectName(counter string, taken map[string]string) string {
	var b strings.Builder
	for i, r := range counter {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case r >= '0' && r <= '9', r == '_', r == '-', r == '.':
			if i == 0 {
				b.WriteString("c_")
			}
		default:
			r = '_'
			if i == 0 {
				b.WriteString("c")
			}
		}
		b.WriteRune(r)
	}
	name := b.String()
	if name == "" {
		name = "c_"
	}
	if len(name) > 64 {
		sum := sha256.Sum256([]byte(counter))
		name = name[:55] + "_" + hex.EncodeToString(sum[:4])
	}
	if _, ok := taken[name]; !ok {
		return name
	}
	for i := 2; ; i++ {
		n := fmt.Sprintf("%s_%d", name, i)
		if _, ok := taken[n]; !ok {
			return n
		}
	}
}
