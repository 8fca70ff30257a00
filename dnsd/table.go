package dnsd

import (
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// DefaultDomain is the mesh domain of a table built with an empty domain.
const DefaultDomain = "weft.internal"

// maxNegativeTTL caps how long resolvers cache "no such name": a node that
// joins, or a service that turns healthy, must show up within seconds.
const maxNegativeTTL = 5 * time.Second

// Table is what one host may see of the mesh, as DNS answers it. The agent
// builds a new one (with [NewTable]) whenever state, health or policy change
// and swaps it in with [Server.SetTable]; a Table is never modified after
// that, so the server reads it without locks.
//
// The exported fields keep what the table was built from. Answers come from
// a normalized copy taken once (in NewTable, or on first use for a Table
// written as a literal), so changing the maps afterwards changes nothing.
type Table struct {
	Domain   string                  // mesh domain, e.g. "weft.internal" (no trailing dot)
	Nodes    map[string][]netip.Addr // node name -> the addresses this host reaches it at
	Services map[string][]Instance   // service name -> healthy instances this host may reach
	TTL      time.Duration           // of A, AAAA, SRV and PTR answers

	once sync.Once
	ix   *index
}

// Instance is one healthy instance of a service.
type Instance struct {
	Node string     // node the instance runs on; the SRV target is <node>.node.<domain>.
	Addr netip.Addr // address this host reaches the instance at
	Port int        // port of the SRV record
	Tags []string   // matched, case-insensitively, by <tag>.<service>.service.<domain>
}

// NewTable builds a table and its indexes.
//
// Names are case-insensitive. A node or service name, or an instance's node,
// that is not a single DNS label of a-z, 0-9, '-' and '_' (at most 63 bytes)
// cannot be asked for and is left out, as are invalid addresses and ports
// outside 0-65535. A service present with no instances is a name that exists
// with no records (NODATA): the agent leaves out services this host may not
// know about at all. An empty domain means [DefaultDomain]; a TTL below zero
// means zero.
func NewTable(domain string, ttl time.Duration, nodes map[string][]netip.Addr, services map[string][]Instance) *Table {
	t := &Table{Domain: domain, Nodes: nodes, Services: services, TTL: ttl}
	t.index()
	return t
}

// Serial is the SOA serial of the table: it grows with every table built in
// this process, so a resolver that looks can tell that the zone changed.
func (t *Table) Serial() uint32 { return t.index().serial }

// Owns reports whether name is one [Answer] answers: the mesh domain and the
// names below it, and the reverse (PTR) names of the table's addresses. The
// server forwards every other name, or refuses it.
func (t *Table) Owns(name string) bool {
	labels, ok := splitName(name)
	if !ok {
		return false
	}
	ix := t.index()
	if _, ok := ix.relative(labels); ok {
		return true
	}
	_, ok = ix.ptr[joinName(labels)]
	return ok
}

// generation numbers tables, for SOA serials. It starts at 1 so that no
// table has serial 0, which some tools read as "unset".
var generation atomic.Uint32

// index is the normalized, immutable form of a Table that answers read.
type index struct {
	domain   []string // labels of the mesh domain, lower case
	apex     string   // "weft.internal."
	ns       string   // "ns.weft.internal."
	hostmstr string   // "hostmaster.weft.internal."
	ttl      uint32
	negTTL   uint32
	serial   uint32

	nodes    map[string][]netip.Addr // sorted, unique, unmapped
	services map[string]*service     // what each service's names answer
	ptr      map[string][]string     // reverse name -> node names (FQDN), sorted
}

// service is what the names of one service answer, worked out once per
// table so that a query only copies it into records.
type service struct {
	addrs  []netip.Addr            // <service>.service: the instances' addresses, sorted, unique
	tagged map[string][]netip.Addr // <tag>.<service>.service: the same, of the instances tagged <tag>
	srv    []srvRecord             // _<service>._tcp.service: one per node and port, by node, port
	extra  []namedAddr             // its ADDITIONAL: each target's instance addresses, by target, address
}

// srvRecord is the variable part of an SRV record.
type srvRecord struct {
	port   uint16
	target string // <node>.node.<domain>.
}

// namedAddr is the owner and address of an A or AAAA record.
type namedAddr struct {
	name string
	addr netip.Addr
}

func (t *Table) index() *index {
	t.once.Do(func() { t.ix = buildIndex(t) })
	return t.ix
}

func buildIndex(t *Table) *index {
	domain := strings.Trim(lowerASCII(t.Domain), ".")
	if domain == "" {
		domain = DefaultDomain
	}
	ttl := max(t.TTL, 0)
	ix := &index{
		domain:   strings.Split(domain, "."),
		apex:     domain + ".",
		ns:       "ns." + domain + ".",
		hostmstr: "hostmaster." + domain + ".",
		ttl:      seconds(ttl),
		negTTL:   seconds(min(ttl, maxNegativeTTL)),
		serial:   generation.Add(1),
		nodes:    make(map[string][]netip.Addr, len(t.Nodes)),
		services: make(map[string]*service, len(t.Services)),
		ptr:      make(map[string][]string),
	}

	for name, addrs := range t.Nodes {
		name = lowerASCII(name)
		if !validLabel(name) || !ix.fits(name+".node") {
			continue
		}
		all := append(ix.nodes[name], normalAddrs(addrs)...)
		ix.nodes[name] = sortedAddrs(all)
	}
	for name, addrs := range ix.nodes {
		target := ix.nodeFQDN(name)
		for _, a := range addrs {
			rev, err := dns.ReverseAddr(a.String())
			if err != nil {
				continue
			}
			ix.ptr[rev] = append(ix.ptr[rev], target)
		}
	}
	for rev, targets := range ix.ptr {
		slices.Sort(targets)
		ix.ptr[rev] = slices.Compact(targets)
	}

	services := make(map[string][]Instance, len(t.Services))
	for name, insts := range t.Services {
		name = lowerASCII(name)
		// The longest name under a service is _<name>._tcp.service.<domain>.
		if !validLabel(name) || !ix.fits("_"+name+"._tcp.service") {
			continue
		}
		list := services[name]
		if list == nil {
			list = []Instance{}
		}
		for _, in := range insts {
			in.Node = lowerASCII(in.Node)
			in.Addr = in.Addr.Unmap().WithZone("")
			if !validLabel(in.Node) || !ix.fits(in.Node+".node") || !in.Addr.IsValid() || in.Port < 0 || in.Port > 65535 {
				continue
			}
			tags := make([]string, len(in.Tags))
			for i, tag := range in.Tags {
				tags[i] = lowerASCII(tag)
			}
			in.Tags = tags
			list = append(list, in)
		}
		services[name] = list
	}
	for name, list := range services {
		ix.services[name] = ix.service(list)
	}
	return ix
}

// service works out the answers of a service's names from its instances,
// which it sorts.
func (ix *index) service(insts []Instance) *service {
	slices.SortFunc(insts, compareInstances)
	svc := &service{tagged: map[string][]netip.Addr{}}
	for i, in := range insts {
		svc.addrs = append(svc.addrs, in.Addr)
		for _, tag := range in.Tags {
			svc.tagged[tag] = append(svc.tagged[tag], in.Addr)
		}
		// Two instances on one node and port differ only by address, which
		// the SRV record does not carry: one record, both addresses below.
		if i > 0 && insts[i-1].Node == in.Node && insts[i-1].Port == in.Port {
			continue
		}
		svc.srv = append(svc.srv, srvRecord{port: uint16(in.Port), target: ix.nodeFQDN(in.Node)})
	}
	svc.addrs = sortedAddrs(svc.addrs)
	for tag, addrs := range svc.tagged {
		svc.tagged[tag] = sortedAddrs(addrs)
	}
	// The additional records carry the instances' addresses, which are how
	// this host reaches the service, not necessarily the node's own.
	for i := 0; i < len(insts); {
		j := i
		var addrs []netip.Addr
		for ; j < len(insts) && insts[j].Node == insts[i].Node; j++ {
			addrs = append(addrs, insts[j].Addr)
		}
		target := ix.nodeFQDN(insts[i].Node)
		for _, a := range sortedAddrs(addrs) {
			svc.extra = append(svc.extra, namedAddr{target, a})
		}
		i = j
	}
	return svc
}

// fits reports whether rel under the domain still makes a name of at most
// 255 octets on the wire, so that every answer packs.
func (ix *index) fits(rel string) bool {
	return len(rel)+1+len(ix.apex)+1 <= 255
}

func (ix *index) nodeFQDN(node string) string { return node + ".node." + ix.apex }

// relative returns the labels of a name in front of the mesh domain, and
// whether the name is the domain or below it.
func (ix *index) relative(labels []string) ([]string, bool) {
	n := len(labels) - len(ix.domain)
	if n < 0 || !slices.Equal(labels[n:], ix.domain) {
		return nil, false
	}
	return labels[:n], true
}

func compareInstances(a, b Instance) int {
	if c := strings.Compare(a.Node, b.Node); c != 0 {
		return c
	}
	if a.Port != b.Port {
		return a.Port - b.Port
	}
	return a.Addr.Compare(b.Addr)
}

func normalAddrs(addrs []netip.Addr) []netip.Addr {
	out := make([]netip.Addr, 0, len(addrs))
	for _, a := range addrs {
		a = a.Unmap().WithZone("")
		if a.IsValid() {
			out = append(out, a)
		}
	}
	return out
}

func sortedAddrs(addrs []netip.Addr) []netip.Addr {
	slices.SortFunc(addrs, netip.Addr.Compare)
	return slices.Compact(addrs)
}

func seconds(d time.Duration) uint32 {
	s := d / time.Second
	if s > 1<<31-1 { // RFC 2181: TTLs are at most 2^31-1
		s = 1<<31 - 1
	}
	return uint32(s)
}

// validLabel reports whether s can be a name (node, service) in the mesh
// domain. Tighter than DNS allows, so that every name packs unescaped.
func validLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// lowerASCII lower-cases A-Z only: DNS names compare case-insensitively in
// ASCII (RFC 4343), and other bytes must stay as they are.
func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c >= 'A' && c <= 'Z' {
			b := []byte(s)
			for j := i; j < len(b); j++ {
				if c := b[j]; c >= 'A' && c <= 'Z' {
					b[j] = c + 'a' - 'A'
				}
			}
			return string(b)
		}
	}
	return s
}

// splitName returns the labels of a presentation-format name (as miekg/dns
// gives it, escapes included), lower-cased, without the root. It is false for
// an empty label or a dangling escape. Escapes stay in their label, so an
// escaped dot never splits one: "x\.weft.internal." is not below
// "weft.internal.".
func splitName(name string) ([]string, bool) {
	name = lowerASCII(name)
	if name == "." {
		return nil, true
	}
	labels := make([]string, 0, 6)
	start := 0
	for i := 0; i < len(name); i++ {
		switch name[i] {
		case '\\':
			if i+3 < len(name) && isDigit(name[i+1]) && isDigit(name[i+2]) && isDigit(name[i+3]) {
				i += 3
			} else {
				i++
			}
			if i >= len(name) {
				return nil, false
			}
		case '.':
			if i == start {
				return nil, false
			}
			labels = append(labels, name[start:i])
			start = i + 1
		}
	}
	if start < len(name) { // no trailing dot
		labels = append(labels, name[start:])
	}
	if len(labels) == 0 {
		return nil, false
	}
	return labels, true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func joinName(labels []string) string {
	if len(labels) == 0 {
		return "."
	}
	return strings.Join(labels, ".") + "."
}
