package dnsd

import (
	"net/netip"
	"strings"

	"github.com/miekg/dns"
)

// Answer builds the reply to req from t, for the names t owns ([Table.Owns]):
//
//	<node>.node.<domain>                 A, AAAA
//	<service>.service.<domain>           A, AAAA of the healthy instances
//	<tag>.<service>.service.<domain>     the same, only instances tagged <tag>
//	_<service>._tcp.service.<domain>     SRV (and _udp), targets' addresses in ADDITIONAL
//	reverse names of the table's addresses  PTR -> <node>.node.<domain>.
//	<domain>                             SOA, NS
//
// A name that exists without records of the asked type gets NOERROR with an
// empty answer (NODATA); a name that does not exist gets NXDOMAIN; both carry
// the SOA in AUTHORITY so that resolvers cache them for at most
// min(TTL, 5s). node.<domain>, service.<domain> and _tcp/_udp.service.<domain>
// exist (they have names below them), so they are NODATA, never NXDOMAIN.
//
// Answer is pure and deterministic (records sorted): it does no EDNS0, no
// truncation and no shuffling, which are the server's. A malformed query gets
// FORMERR or NOTIMP, a nil table or a name the table does not own REFUSED.
func Answer(t *Table, req *dns.Msg) *dns.Msg {
	if req == nil {
		return &dns.Msg{MsgHdr: dns.MsgHdr{Response: true, Rcode: dns.RcodeFormatError}}
	}
	if rc := checkQuery(req); rc != dns.RcodeSuccess {
		return reply(req, rc)
	}
	if t == nil {
		return reply(req, dns.RcodeRefused)
	}
	ix := t.index()
	q := req.Question[0]
	labels, ok := splitName(q.Name)
	if !ok {
		return reply(req, dns.RcodeFormatError)
	}
	owner := dns.Fqdn(q.Name) // the asker's spelling: 0x20-randomizing resolvers compare it

	var res result
	if rel, ok := ix.relative(labels); ok {
		res = ix.lookup(rel, owner, q.Qtype)
	} else if targets, ok := ix.ptr[joinName(labels)]; ok {
		res.exists = true
		if q.Qtype == dns.TypePTR {
			for _, target := range targets {
				res.answer = append(res.answer, &dns.PTR{Hdr: ix.hdr(owner, dns.TypePTR, ix.ttl), Ptr: target})
			}
		}
	} else {
		return reply(req, dns.RcodeRefused)
	}

	m := reply(req, dns.RcodeSuccess)
	m.Authoritative = true
	m.Answer = res.answer
	m.Extra = res.extra
	if len(res.answer) == 0 {
		if !res.exists {
			m.Rcode = dns.RcodeNameError
		}
		m.Ns = []dns.RR{ix.soa(ix.negTTL)}
	}
	return m
}

// result is what a name holds for a query type. exists is true when the
// name exists even if answer is empty (NODATA rather than NXDOMAIN).
type result struct {
	exists bool
	answer []dns.RR
	extra  []dns.RR
}

// lookup answers rel, the labels of the name in front of the domain.
func (ix *index) lookup(rel []string, owner string, qtype uint16) result {
	n := len(rel)
	if n == 0 {
		switch qtype {
		case dns.TypeSOA:
			return result{exists: true, answer: []dns.RR{ix.soa(ix.ttl)}}
		case dns.TypeNS:
			return result{exists: true, answer: []dns.RR{&dns.NS{Hdr: ix.hdr(owner, dns.TypeNS, ix.ttl), Ns: ix.ns}}}
		}
		return result{exists: true}
	}
	switch rel[n-1] {
	case "node":
		switch n {
		case 1:
			return result{exists: true}
		case 2:
			addrs, ok := ix.nodes[rel[0]]
			if !ok {
				return result{}
			}
			return result{exists: true, answer: ix.addrRRs(owner, qtype, addrs)}
		}
	case "service":
		switch n {
		case 1:
			return result{exists: true}
		case 2:
			svc, ok := ix.services[rel[0]]
			if !ok {
				// _tcp.service.<domain> holds the SRV names.
				return result{exists: isProto(rel[0]) && len(ix.services) > 0}
			}
			return result{exists: true, answer: ix.addrRRs(owner, qtype, svc.addrs)}
		case 3:
			if isProto(rel[1]) && strings.HasPrefix(rel[0], "_") {
				svc, ok := ix.services[rel[0][1:]]
				if !ok {
					return result{}
				}
				return ix.srv(owner, qtype, svc)
			}
			var addrs []netip.Addr
			if svc, ok := ix.services[rel[1]]; ok {
				addrs = svc.tagged[rel[0]]
			}
			if len(addrs) == 0 {
				return result{}
			}
			return result{exists: true, answer: ix.addrRRs(owner, qtype, addrs)}
		}
	}
	return result{}
}

func isProto(label string) bool { return label == "_tcp" || label == "_udp" }

// srv answers an RFC 2782 name. ANY gets what every other ANY gets (A and
// AAAA only), which an SRV name does not have.
func (ix *index) srv(owner string, qtype uint16, svc *service) result {
	res := result{exists: true}
	if qtype != dns.TypeSRV || len(svc.srv) == 0 {
		return res
	}
	// One allocation for all the records, not one each.
	recs := make([]dns.SRV, len(svc.srv))
	res.answer = make([]dns.RR, len(svc.srv))
	for i, r := range svc.srv {
		recs[i] = dns.SRV{Hdr: ix.hdr(owner, dns.TypeSRV, ix.ttl), Priority: 1, Weight: 1, Port: r.port, Target: r.target}
		res.answer[i] = &recs[i]
	}
	var slab addrSlab
	slab.count(svc.extra, dns.TypeANY)
	res.extra = make([]dns.RR, 0, len(svc.extra))
	for _, na := range svc.extra {
		res.extra = append(res.extra, slab.rr(ix, na.name, na.addr))
	}
	return res
}

// addrRRs returns the A and AAAA records of addrs that qtype asks for.
func (ix *index) addrRRs(owner string, qtype uint16, addrs []netip.Addr) []dns.RR {
	var slab addrSlab
	slab.countAddrs(addrs, qtype)
	if slab.n == 0 {
		return nil
	}
	rrs := make([]dns.RR, 0, slab.n)
	for _, a := range addrs {
		if wants(qtype, a) {
			rrs = append(rrs, slab.rr(ix, owner, a))
		}
	}
	return rrs
}

// wants reports whether a query of qtype gets the record of a.
func wants(qtype uint16, a netip.Addr) bool {
	if a.Is4() {
		return qtype == dns.TypeA || qtype == dns.TypeANY
	}
	return qtype == dns.TypeAAAA || qtype == dns.TypeANY
}

// addrSlab hands out the A and AAAA records of one answer from one
// allocation per type, each with its address beside it, instead of two
// allocations per record.
type addrSlab struct {
	n    int
	a    []aRecord
	aaaa []aaaaRecord
}

type aRecord struct {
	rr dns.A
	ip [4]byte
}

type aaaaRecord struct {
	rr dns.AAAA
	ip [16]byte
}

func (s *addrSlab) countAddrs(addrs []netip.Addr, qtype uint16) {
	var n4, n6 int
	for _, a := range addrs {
		if wants(qtype, a) {
			if a.Is4() {
				n4++
			} else {
				n6++
			}
		}
	}
	s.alloc(n4, n6)
}

func (s *addrSlab) count(list []namedAddr, qtype uint16) {
	var n4, n6 int
	for _, na := range list {
		if wants(qtype, na.addr) {
			if na.addr.Is4() {
				n4++
			} else {
				n6++
			}
		}
	}
	s.alloc(n4, n6)
}

func (s *addrSlab) alloc(n4, n6 int) {
	s.n = n4 + n6
	if n4 > 0 {
		s.a = make([]aRecord, n4)
	}
	if n6 > 0 {
		s.aaaa = make([]aaaaRecord, n6)
	}
}

// rr returns the record of a, which the counts included.
func (s *addrSlab) rr(ix *index, owner string, a netip.Addr) dns.RR {
	if a.Is4() {
		r := &s.a[0]
		s.a = s.a[1:]
		r.ip = a.As4()
		r.rr = dns.A{Hdr: ix.hdr(owner, dns.TypeA, ix.ttl), A: r.ip[:]}
		return &r.rr
	}
	r := &s.aaaa[0]
	s.aaaa = s.aaaa[1:]
	r.ip = a.As16()
	r.rr = dns.AAAA{Hdr: ix.hdr(owner, dns.TypeAAAA, ix.ttl), AAAA: r.ip[:]}
	return &r.rr
}

func (ix *index) hdr(owner string, rrtype uint16, ttl uint32) dns.RR_Header {
	return dns.RR_Header{Name: owner, Rrtype: rrtype, Class: dns.ClassINET, Ttl: ttl}
}

// soa synthesizes the zone's SOA. Its MINIMUM and its own TTL are both the
// negative TTL when it rides along a negative answer (RFC 2308 takes the
// smaller of the two).
func (ix *index) soa(ttl uint32) *dns.SOA {
	return &dns.SOA{
		Hdr:     ix.hdr(ix.apex, dns.TypeSOA, ttl),
		Ns:      ix.ns,
		Mbox:    ix.hostmstr,
		Serial:  ix.serial,
		Refresh: 3600,
		Retry:   600,
		Expire:  86400,
		Minttl:  ix.negTTL,
	}
}

// checkQuery returns the rcode a malformed query gets, or RcodeSuccess.
func checkQuery(req *dns.Msg) int {
	switch {
	case req.Response:
		return dns.RcodeFormatError
	case req.Opcode != dns.OpcodeQuery:
		return dns.RcodeNotImplemented
	case len(req.Question) != 1:
		return dns.RcodeFormatError
	}
	q := req.Question[0]
	if q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY {
		return dns.RcodeNotImplemented
	}
	switch q.Qtype {
	case dns.TypeOPT, dns.TypeTSIG, dns.TypeTKEY, dns.TypeNone:
		return dns.RcodeFormatError // not a type one can ask for
	case dns.TypeAXFR, dns.TypeIXFR:
		return dns.RcodeRefused // nobody enumerates what this host may see
	case dns.TypeMAILA, dns.TypeMAILB:
		return dns.RcodeNotImplemented
	}
	return dns.RcodeSuccess
}

// reply starts a reply to req; only the first question is echoed.
func reply(req *dns.Msg, rcode int) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Opcode = req.Opcode
	m.Rcode = rcode
	return m
}
