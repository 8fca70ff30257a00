package dnsd

import (
	"testing"

	"github.com/miekg/dns"
)

// Bits of the fuzzer's "shape" argument, applied to the well-formed query
// it builds from a name and a type.
const (
	shapeTCP      = 1 << iota // ask over TCP (no size limit)
	shapeEDNS                 // add an OPT whose size is shape&shapeSize
	shapeDO                   // set DO in it
	shapeClassAny             // class ANY
	shapeChaos                // class CHAOS
	shapeOutside              // ask from 10.1.2.3, which is not allowed

	shapeSize = 0xffc0 // the bits above the flags
)

func FuzzServeDNS(f *testing.F) {
	tbl := fixture()
	s := newServer(f, Options{})
	s.SetTable(tbl)

	for _, seed := range []struct {
		name  string
		qtype uint16
		shape uint16
	}{
		{"alpha.node.weft.internal.", dns.TypeA, 0},
		{"beta.node.weft.internal.", dns.TypeAAAA, shapeTCP},
		{"_web._tcp.service.weft.internal.", dns.TypeSRV, shapeEDNS | 512},
		{"v1.web.service.weft.internal.", dns.TypeA, shapeClassAny},
		{"1.1.90.10.in-addr.arpa.", dns.TypePTR, shapeEDNS | shapeDO | 4096},
		{"weft.internal.", dns.TypeSOA, 0},
		{"weft.internal.", dns.TypeANY, shapeChaos},
		{"example.com.", dns.TypeA, 0},
		{`x\.weft.internal.`, dns.TypeA, shapeOutside},
	} {
		m := query(seed.name, seed.qtype)
		raw, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw, seed.name, seed.qtype, seed.shape)
	}

	f.Fuzz(func(t *testing.T, raw []byte, name string, qtype uint16, shape uint16) {
		// Whatever arrives on the wire, as the server would see it.
		req := new(dns.Msg)
		if err := req.Unpack(raw); err == nil {
			serveAndCheck(t, s, tbl, req, udpFrom("127.0.0.1:5353"), false)
		}

		// A well-formed query for a fuzzed name.
		if _, ok := dns.IsDomainName(name); !ok {
			return
		}
		q := query(dns.Fqdn(name), qtype)
		switch {
		case shape&shapeChaos != 0:
			q.Question[0].Qclass = dns.ClassCHAOS
		case shape&shapeClassAny != 0:
			q.Question[0].Qclass = dns.ClassANY
		}
		if shape&shapeEDNS != 0 {
			q.SetEdns0(shape&shapeSize, shape&shapeDO != 0)
		}
		// Through the wire format, so that the name is one a server can get.
		b, err := q.Pack()
		if err != nil {
			return
		}
		req = new(dns.Msg)
		if err := req.Unpack(b); err != nil {
			return
		}
		from := "127.0.0.1:5353"
		if shape&shapeOutside != 0 {
			from = "10.1.2.3:5353"
		}
		w := udpFrom(from)
		if shape&shapeTCP != 0 {
			w = tcpFrom(from)
		}
		serveAndCheck(t, s, tbl, req, w, shape&shapeOutside != 0)
	})
}

// serveAndCheck runs req through ServeDNS and checks what must hold for any
// query: one reply, that packs, that fits the transport, that answers only
// names the table owns (there are no upstreams), and no panic.
func serveAndCheck(t *testing.T, s *Server, tbl *Table, req *dns.Msg, w *fakeWriter, outside bool) {
	t.Helper()
	s.ServeDNS(w, req)
	if s.Panics() != 0 {
		t.Fatalf("handler panicked on %v", req)
	}
	if w.writes != 1 || w.msg == nil {
		t.Fatalf("%d replies to %v", w.writes, req)
	}
	m := w.msg
	if !m.Response || m.Id != req.Id {
		t.Fatalf("reply is no reply to the query: response %v id %d (query %d)", m.Response, m.Id, req.Id)
	}
	packed, err := m.Pack()
	if err != nil {
		t.Fatalf("reply does not pack: %v\n%v", err, m)
	}
	if w.remote.Network() == "udp" {
		limit := dns.MinMsgSize
		if opt := req.IsEdns0(); opt != nil {
			limit = min(max(int(opt.UDPSize()), dns.MinMsgSize), maxUDPSize)
		}
		if len(packed) > limit {
			t.Fatalf("UDP reply of %d bytes, limit %d", len(packed), limit)
		}
	}
	for _, rr := range m.Answer {
		if !tbl.Owns(rr.Header().Name) {
			t.Fatalf("answer for a name outside the mesh: %v", rr)
		}
	}
	if outside && (m.Rcode == dns.RcodeSuccess || len(m.Answer) > 0) {
		t.Fatalf("a client that is not allowed got rcode %s with %d answers", dns.RcodeToString[m.Rcode], len(m.Answer))
	}
}
