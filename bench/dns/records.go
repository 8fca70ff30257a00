package main

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"strings"
)

// What both servers serve: one node (the single agent) with a few
// services, under the default mesh domain. weft derives the records from
// its config and policy; NSD gets them written out as a zone.
const (
	domain   = "weft.internal"
	nodeName = "bench"
	nodeTag  = "bench"
	ttl      = 5 // seconds: weft's default dns.ttl, and the zone's

	// queryFileLines is the length of dnsperf's input, which it cycles
	// through: large enough that the order of the mix looks random.
	queryFileLines = 10000
)

type service struct {
	name string
	port int
}

var services = []service{
	{"web", 8080},
	{"api", 9000},
	{"db", 5432},
	{"cache", 6379},
}

// nxNames do not exist on either server: one under each subtree that
// exists, so that neither answers them from a shortcut.
var nxNames = []string{
	"gone.node." + domain,
	"missing.service." + domain,
	"_missing._tcp.service." + domain,
}

// A query is one line of a dnsperf input file.
type query struct {
	name  string // without the trailing dot
	qtype string // A, SRV
}

func (q query) String() string { return q.name + " " + q.qtype }

// The query mix, by share of the queries.
var mix = []struct {
	percent int
	what    string
	queries []query // spread evenly over the share
}{
	{40, "node A", []query{{nodeName + ".node." + domain, "A"}}},
	{30, "service A", serviceQueries("%s.service."+domain, "A")},
	{20, "service SRV", serviceQueries("_%s._tcp.service."+domain, "SRV")},
	{10, "NXDOMAIN", nxQueries()},
}

func serviceQueries(format, qtype string) []query {
	var qs []query
	for _, s := range services {
		qs = append(qs, query{fmt.Sprintf(format, s.name), qtype})
	}
	return qs
}

func nxQueries() []query {
	var qs []query
	for _, n := range nxNames {
		qs = append(qs, query{n, "A"})
	}
	return qs
}

// distinctQueries is every query of the mix once.
func distinctQueries() []query {
	var qs []query
	for _, m := range mix {
		qs = append(qs, m.queries...)
	}
	return qs
}

// mixSummary describes the mix for the report.
func mixSummary() string {
	var parts []string
	for _, m := range mix {
		names := "names"
		if len(m.queries) == 1 {
			names = "name"
		}
		parts = append(parts, fmt.Sprintf("%d%% %s (%d %s)", m.percent, m.what, len(m.queries), names))
	}
	return strings.Join(parts, ", ")
}

// writeQueryFile writes n queries in the mix's proportions, shuffled with a
// fixed seed, so that every run and both servers get the same file.
func writeQueryFile(path string, n int) error {
	var lines []string
	for _, m := range mix {
		k := n * m.percent / 100
		for i := range k {
			lines = append(lines, m.queries[i%len(m.queries)].String())
		}
	}
	r := rand.New(rand.NewPCG(1, 2))
	r.Shuffle(len(lines), func(i, j int) { lines[i], lines[j] = lines[j], lines[i] })
	return os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644)
}

// zoneFile is the NSD zone with the records weft serves for the same
// config and policy: the node and every service at the node's segment
// address, an SRV per service pointing at the node, and the SOA that weft
// synthesizes (its serial aside, which grows with every table weft builds).
func zoneFile(addr netip.Addr) string {
	var b strings.Builder
	fmt.Fprintf(&b, "$ORIGIN %s.\n$TTL %d\n", domain, ttl)
	fmt.Fprintf(&b, "@ IN SOA ns.%s. hostmaster.%s. 1 3600 600 86400 %d\n", domain, domain, ttl)
	fmt.Fprintf(&b, "@ IN NS ns.%s.\n", domain)
	fmt.Fprintf(&b, "%s.node IN A %s\n", nodeName, addr)
	for _, s := range services {
		fmt.Fprintf(&b, "%s.service IN A %s\n", s.name, addr)
		fmt.Fprintf(&b, "_%s._tcp.service IN SRV 1 1 %d %s.node.%s.\n", s.name, s.port, nodeName, domain)
	}
	return b.String()
}
