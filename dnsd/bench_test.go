package dnsd

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// benchTable is a large fleet: 10,000 nodes and 1,000 services of 5
// instances each.
func benchTable() *Table {
	nodes := make(map[string][]netip.Addr, 10000)
	for i := range 10000 {
		nodes[fmt.Sprintf("node-%05d", i)] = []netip.Addr{netip.AddrFrom4([4]byte{10, 90, byte(i >> 8), byte(i)})}
	}
	services := make(map[string][]Instance, 1000)
	for s := range 1000 {
		var insts []Instance
		for k := range 5 {
			i := (s*5 + k) % 10000
			insts = append(insts, Instance{
				Node: fmt.Sprintf("node-%05d", i),
				Addr: netip.AddrFrom4([4]byte{10, 90, byte(i >> 8), byte(i)}),
				Port: 8000 + k,
				Tags: []string{fmt.Sprintf("v%d", k)},
			})
		}
		services[fmt.Sprintf("svc-%04d", s)] = insts
	}
	return NewTable("weft.internal", 30*time.Second, nodes, services)
}

func BenchmarkAnswer(b *testing.B) {
	tbl := benchTable()
	for _, bc := range []struct {
		name  string
		qname string
		qtype uint16
	}{
		{"node-A", "node-04242.node.weft.internal.", dns.TypeA},
		{"service-A", "svc-0421.service.weft.internal.", dns.TypeA},
		{"service-SRV", "_svc-0421._tcp.service.weft.internal.", dns.TypeSRV},
		{"NXDOMAIN", "nope.node.weft.internal.", dns.TypeA},
	} {
		b.Run(bc.name, func(b *testing.B) {
			req := query(bc.qname, bc.qtype)
			b.ReportAllocs()
			for b.Loop() {
				if m := Answer(tbl, req); m.Rcode != dns.RcodeSuccess && m.Rcode != dns.RcodeNameError {
					b.Fatal(dns.RcodeToString[m.Rcode])
				}
			}
		})
	}
}

func BenchmarkServeUDP(b *testing.B) {
	s := newServer(b, Options{Logger: slog.New(slog.DiscardHandler)})
	s.SetTable(benchTable())
	if err := s.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
	})

	c := &dns.Client{Net: "udp", Timeout: 2 * time.Second}
	conn, err := c.Dial(s.Addrs()[0].String())
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	req := query("node-04242.node.weft.internal.", dns.TypeA)
	b.ReportAllocs()
	for b.Loop() {
		r, _, err := c.ExchangeWithConn(req, conn)
		if err != nil {
			b.Fatal(err)
		}
		if len(r.Answer) != 1 {
			b.Fatalf("%d answers", len(r.Answer))
		}
	}
}
