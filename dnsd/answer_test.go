package dnsd

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/miekg/dns"
)

func TestAnswer(t *testing.T) {
	tbl := fixture()
	soa := fmt.Sprintf("weft.internal. 5 IN SOA ns.weft.internal. hostmaster.weft.internal. %d 3600 600 86400 5", tbl.Serial())
	const (
		ok     = dns.RcodeSuccess
		nx     = dns.RcodeNameError
		refuse = dns.RcodeRefused
	)
	tests := []struct {
		name   string
		qname  string
		qtype  uint16
		rcode  int
		answer []string
		ns     []string
		extra  []string
	}{
		// Nodes.
		{"A", "alpha.node.weft.internal.", dns.TypeA, ok,
			[]string{"alpha.node.weft.internal. 30 IN A 10.90.1.1"}, nil, nil},
		{"A of dual-stack node", "beta.node.weft.internal.", dns.TypeA, ok,
			[]string{"beta.node.weft.internal. 30 IN A 10.90.1.2"}, nil, nil},
		{"AAAA", "beta.node.weft.internal.", dns.TypeAAAA, ok,
			[]string{"beta.node.weft.internal. 30 IN AAAA fd00::2"}, nil, nil},
		{"ANY is A and AAAA", "beta.node.weft.internal.", dns.TypeANY, ok,
			[]string{"beta.node.weft.internal. 30 IN A 10.90.1.2", "beta.node.weft.internal. 30 IN AAAA fd00::2"}, nil, nil},
		{"NODATA: AAAA of IPv4-only node", "alpha.node.weft.internal.", dns.TypeAAAA, ok, nil, []string{soa}, nil},
		{"NODATA: A of IPv6-only node", "gamma6.node.weft.internal.", dns.TypeA, ok, nil, []string{soa}, nil},
		{"NODATA: TXT of node", "alpha.node.weft.internal.", dns.TypeTXT, ok, nil, []string{soa}, nil},
		{"NXDOMAIN: unknown node", "nope.node.weft.internal.", dns.TypeA, nx, nil, []string{soa}, nil},

		// Services.
		{"service A", "web.service.weft.internal.", dns.TypeA, ok, []string{
			"web.service.weft.internal. 30 IN A 10.90.1.1",
			"web.service.weft.internal. 30 IN A 10.90.1.2",
		}, nil, nil},
		{"service AAAA", "db.service.weft.internal.", dns.TypeAAAA, ok,
			[]string{"db.service.weft.internal. 30 IN AAAA fd00::3"}, nil, nil},
		{"service with no healthy instance is NODATA", "idle.service.weft.internal.", dns.TypeA, ok, nil, []string{soa}, nil},
		{"NXDOMAIN: unknown service", "nope.service.weft.internal.", dns.TypeA, nx, nil, []string{soa}, nil},
		{"tag filters", "v1.web.service.weft.internal.", dns.TypeA, ok,
			[]string{"v1.web.service.weft.internal. 30 IN A 10.90.1.1"}, nil, nil},
		{"tag is case-insensitive both ways", "PRIMARY.web.service.weft.internal.", dns.TypeA, ok,
			[]string{"PRIMARY.web.service.weft.internal. 30 IN A 10.90.1.1"}, nil, nil},
		{"NODATA: tag without AAAA", "v2.web.service.weft.internal.", dns.TypeAAAA, ok, nil, []string{soa}, nil},
		{"NXDOMAIN: tag nobody has", "v3.web.service.weft.internal.", dns.TypeA, nx, nil, []string{soa}, nil},
		{"NXDOMAIN: tag of unknown service", "v1.nope.service.weft.internal.", dns.TypeA, nx, nil, []string{soa}, nil},

		// SRV.
		{"SRV with addresses in additional", "_web._tcp.service.weft.internal.", dns.TypeSRV, ok, []string{
			"_web._tcp.service.weft.internal. 30 IN SRV 1 1 8080 alpha.node.weft.internal.",
			"_web._tcp.service.weft.internal. 30 IN SRV 1 1 8080 beta.node.weft.internal.",
		}, nil, []string{
			"alpha.node.weft.internal. 30 IN A 10.90.1.1",
			"beta.node.weft.internal. 30 IN A 10.90.1.2",
		}},
		{"SRV over _udp", "_db._udp.service.weft.internal.", dns.TypeSRV, ok,
			[]string{"_db._udp.service.weft.internal. 30 IN SRV 1 1 5432 gamma6.node.weft.internal."},
			nil, []string{"gamma6.node.weft.internal. 30 IN AAAA fd00::3"}},
		{"NODATA: SRV of service with no instance", "_idle._tcp.service.weft.internal.", dns.TypeSRV, ok, nil, []string{soa}, nil},
		{"NODATA: A of SRV name", "_web._tcp.service.weft.internal.", dns.TypeA, ok, nil, []string{soa}, nil},
		{"NODATA: SRV of A name", "web.service.weft.internal.", dns.TypeSRV, ok, nil, []string{soa}, nil},
		{"NXDOMAIN: SRV of unknown service", "_nope._tcp.service.weft.internal.", dns.TypeSRV, nx, nil, []string{soa}, nil},
		{"NXDOMAIN: SRV of other protocol", "_web._sctp.service.weft.internal.", dns.TypeSRV, nx, nil, []string{soa}, nil},

		// PTR.
		{"PTR v4", "1.1.90.10.in-addr.arpa.", dns.TypePTR, ok,
			[]string{"1.1.90.10.in-addr.arpa. 30 IN PTR alpha.node.weft.internal."}, nil, nil},
		{"PTR v6", "3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.", dns.TypePTR, ok,
			[]string{"3.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa. 30 IN PTR gamma6.node.weft.internal."}, nil, nil},
		{"PTR upper case", "2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.D.F.IP6.ARPA.", dns.TypePTR, ok,
			[]string{"2.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.D.F.IP6.ARPA. 30 IN PTR beta.node.weft.internal."}, nil, nil},
		{"NODATA: A of a PTR name", "1.1.90.10.in-addr.arpa.", dns.TypeA, ok, nil, []string{soa}, nil},
		{"REFUSED: PTR of an address not in the table", "9.9.90.10.in-addr.arpa.", dns.TypePTR, refuse, nil, nil, nil},

		// Spelling.
		{"case-insensitive, asker's case kept", "Alpha.NODE.Weft.Internal.", dns.TypeA, ok,
			[]string{"Alpha.NODE.Weft.Internal. 30 IN A 10.90.1.1"}, nil, nil},
		{"without trailing dot", "alpha.node.weft.internal", dns.TypeA, ok,
			[]string{"alpha.node.weft.internal. 30 IN A 10.90.1.1"}, nil, nil},

		// Apex and the names between it and the records.
		{"SOA", "weft.internal.", dns.TypeSOA, ok,
			[]string{fmt.Sprintf("weft.internal. 30 IN SOA ns.weft.internal. hostmaster.weft.internal. %d 3600 600 86400 5", tbl.Serial())}, nil, nil},
		{"NS", "WEFT.internal.", dns.TypeNS, ok, []string{"WEFT.internal. 30 IN NS ns.weft.internal."}, nil, nil},
		{"NODATA: A of apex", "weft.internal.", dns.TypeA, ok, nil, []string{soa}, nil},
		{"NODATA: ANY of apex", "weft.internal.", dns.TypeANY, ok, nil, []string{soa}, nil},
		{"NODATA: node.<domain> has names below", "node.weft.internal.", dns.TypeA, ok, nil, []string{soa}, nil},
		{"NODATA: service.<domain> has names below", "service.weft.internal.", dns.TypeA, ok, nil, []string{soa}, nil},
		{"NODATA: _tcp.service.<domain> has names below", "_tcp.service.weft.internal.", dns.TypeSRV, ok, nil, []string{soa}, nil},

		// Trailing garbage under the domain.
		{"NXDOMAIN: unknown label under apex", "foo.weft.internal.", dns.TypeA, nx, nil, []string{soa}, nil},
		{"NXDOMAIN: label below a node", "x.alpha.node.weft.internal.", dns.TypeA, nx, nil, []string{soa}, nil},
		{"NXDOMAIN: two labels below a service", "a.v1.web.service.weft.internal.", dns.TypeA, nx, nil, []string{soa}, nil},
		{"NXDOMAIN: label below an SRV name", "x._web._tcp.service.weft.internal.", dns.TypeSRV, nx, nil, []string{soa}, nil},
		{"NXDOMAIN: escaped label", `alp\.ha.node.weft.internal.`, dns.TypeA, nx, nil, []string{soa}, nil},

		// Not ours.
		{"REFUSED: outside the domain", "example.com.", dns.TypeA, refuse, nil, nil, nil},
		{"REFUSED: domain as a label of another", "weft.internal.example.com.", dns.TypeA, refuse, nil, nil, nil},
		{"REFUSED: escaped dot is no label boundary", `x\.weft.internal.`, dns.TypeA, refuse, nil, nil, nil},
		{"REFUSED: zone transfer", "weft.internal.", dns.TypeAXFR, refuse, nil, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := query(tt.qname, tt.qtype)
			m := Answer(tbl, req)
			if m.Rcode != tt.rcode {
				t.Errorf("rcode = %s, want %s", dns.RcodeToString[m.Rcode], dns.RcodeToString[tt.rcode])
			}
			if m.Id != req.Id || !m.Response {
				t.Errorf("not a reply: id %d (want %d), response %v", m.Id, req.Id, m.Response)
			}
			if want := tt.rcode != refuse; m.Authoritative != want {
				t.Errorf("AA = %v, want %v", m.Authoritative, want)
			}
			if diff := cmp.Diff(tt.answer, rrs(m.Answer)); diff != "" {
				t.Errorf("answer (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.ns, rrs(m.Ns)); diff != "" {
				t.Errorf("authority (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.extra, rrs(m.Extra)); diff != "" {
				t.Errorf("additional (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAnswerMalformed(t *testing.T) {
	tbl := fixture()
	good := func() *dns.Msg { return query("alpha.node.weft.internal.", dns.TypeA) }
	tests := []struct {
		name  string
		req   func() *dns.Msg
		rcode int
	}{
		{"no question", func() *dns.Msg { m := good(); m.Question = nil; return m }, dns.RcodeFormatError},
		{"two questions", func() *dns.Msg {
			m := good()
			m.Question = append(m.Question, dns.Question{Name: "beta.node.weft.internal.", Qtype: dns.TypeA, Qclass: dns.ClassINET})
			return m
		}, dns.RcodeFormatError},
		{"response", func() *dns.Msg { m := good(); m.Response = true; return m }, dns.RcodeFormatError},
		{"opcode STATUS", func() *dns.Msg { m := good(); m.Opcode = dns.OpcodeStatus; return m }, dns.RcodeNotImplemented},
		{"opcode UPDATE", func() *dns.Msg { m := good(); m.Opcode = dns.OpcodeUpdate; return m }, dns.RcodeNotImplemented},
		{"class CHAOS", func() *dns.Msg { m := good(); m.Question[0].Qclass = dns.ClassCHAOS; return m }, dns.RcodeNotImplemented},
		{"class ANY is fine", func() *dns.Msg { m := good(); m.Question[0].Qclass = dns.ClassANY; return m }, dns.RcodeSuccess},
		{"qtype OPT", func() *dns.Msg { m := good(); m.Question[0].Qtype = dns.TypeOPT; return m }, dns.RcodeFormatError},
		{"empty label", func() *dns.Msg { m := good(); m.Question[0].Name = "alpha..weft.internal."; return m }, dns.RcodeFormatError},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := Answer(tbl, tt.req())
			if m.Rcode != tt.rcode {
				t.Errorf("rcode = %s, want %s", dns.RcodeToString[m.Rcode], dns.RcodeToString[tt.rcode])
			}
		})
	}
	if m := Answer(nil, good()); m.Rcode != dns.RcodeRefused {
		t.Errorf("nil table: rcode = %s, want REFUSED", dns.RcodeToString[m.Rcode])
	}
	if m := Answer(tbl, nil); m.Rcode != dns.RcodeFormatError {
		t.Errorf("nil query: rcode = %s, want FORMERR", dns.RcodeToString[m.Rcode])
	}
}

func TestNewTableNormalizes(t *testing.T) {
	tbl := NewTable("Mesh.Example.", 90*time.Second,
		map[string][]netip.Addr{
			"Alpha":    {netip.MustParseAddr("::ffff:10.0.0.1"), netip.MustParseAddr("10.0.0.1"), {}},
			"bad name": {netip.MustParseAddr("10.0.0.9")},
		},
		map[string][]Instance{
			"Web": {
				{Node: "ALPHA", Addr: netip.MustParseAddr("10.0.0.1"), Port: 80},
				{Node: "alpha", Addr: netip.MustParseAddr("10.0.0.1"), Port: 70000}, // bad port
				{Node: "x.y", Addr: netip.MustParseAddr("10.0.0.2"), Port: 80},      // bad node
			},
		})
	m := Answer(tbl, query("alpha.node.mesh.example.", dns.TypeA))
	if diff := cmp.Diff([]string{"alpha.node.mesh.example. 90 IN A 10.0.0.1"}, rrs(m.Answer)); diff != "" {
		t.Errorf("node (-want +got):\n%s", diff)
	}
	m = Answer(tbl, query("_web._tcp.service.mesh.example.", dns.TypeSRV))
	if diff := cmp.Diff([]string{"_web._tcp.service.mesh.example. 90 IN SRV 1 1 80 alpha.node.mesh.example."}, rrs(m.Answer)); diff != "" {
		t.Errorf("srv (-want +got):\n%s", diff)
	}
	if m := Answer(tbl, query(`bad\032name.node.mesh.example.`, dns.TypeA)); m.Rcode != dns.RcodeNameError {
		t.Error("a node name that is no label must not be answerable")
	}
	m = Answer(tbl, query("mesh.example.", dns.TypeSOA))
	if soa := m.Answer[0].(*dns.SOA); soa.Minttl != 5 || soa.Hdr.Ttl != 90 {
		t.Errorf("SOA minimum %d ttl %d, want 5 and 90", soa.Minttl, soa.Hdr.Ttl)
	}
}

func TestNegativeTTLBelowCap(t *testing.T) {
	tbl := NewTable("weft.internal", 2*time.Second, nil, nil)
	m := Answer(tbl, query("nope.node.weft.internal.", dns.TypeA))
	soa := m.Ns[0].(*dns.SOA)
	if soa.Minttl != 2 || soa.Hdr.Ttl != 2 {
		t.Errorf("negative TTL %d / %d, want 2", soa.Minttl, soa.Hdr.Ttl)
	}
	if !NewTable("", 0, nil, nil).Owns("x.node." + DefaultDomain + ".") {
		t.Errorf("an empty domain should mean %s", DefaultDomain)
	}
}

func TestSerialGrows(t *testing.T) {
	a, b := fixture(), fixture()
	if a.Serial() == 0 || b.Serial() <= a.Serial() {
		t.Errorf("serials %d then %d: want growing, non-zero", a.Serial(), b.Serial())
	}
}

func TestTableLiteral(t *testing.T) {
	// A table written as a literal is indexed on first use.
	tbl := &Table{Domain: "weft.internal", TTL: time.Minute, Nodes: map[string][]netip.Addr{"n1": {netip.MustParseAddr("10.1.1.1")}}}
	m := Answer(tbl, query("1.1.1.10.in-addr.arpa.", dns.TypePTR))
	if diff := cmp.Diff([]string{"1.1.1.10.in-addr.arpa. 60 IN PTR n1.node.weft.internal."}, rrs(m.Answer)); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestSplitName(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		ok   bool
	}{
		{".", nil, true},
		{"a.B.", []string{"a", "b"}, true},
		{"a.b", []string{"a", "b"}, true},
		{`a\.b.c.`, []string{`a\.b`, "c"}, true},
		{`a\\.c.`, []string{`a\\`, "c"}, true},
		{`a\046b.c.`, []string{`a\046b`, "c"}, true},
		{"a..b.", nil, false},
		{"", nil, false},
		{`a\`, nil, false},
	}
	for _, tt := range tests {
		got, ok := splitName(tt.in)
		if ok != tt.ok || !cmp.Equal(got, tt.want) {
			t.Errorf("splitName(%q) = %q, %v; want %q, %v", tt.in, got, ok, tt.want, tt.ok)
		}
	}
}
