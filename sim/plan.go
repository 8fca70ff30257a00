package main

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/weft-mesh/weft/cluster"
	"github.com/weft-mesh/weft/dnsd"
	"github.com/weft-mesh/weft/policy"
)

// runPlan compiles the plan of every client host from the state the Raft
// phase built, and builds each host's DNS table the way agent/dns.go does
// (every peer taken as alive and healthy). One agent does this for itself
// only, on every state change; the sim does it for all of them to get the
// distribution.
func runPlan(rep *report, n int, st *cluster.State, logf func(string, ...any)) error {
	const sec = secPlan
	median := func(fn func()) time.Duration {
		var ds []time.Duration
		for range 5 {
			t0 := time.Now()
			fn()
			ds = append(ds, time.Since(t0))
		}
		return quantile(ds, 0.5)
	}
	var doc *policy.Document
	var hosts []policy.Host
	var err error
	parse := median(func() { doc, err = st.Document() })
	if err != nil || doc == nil {
		return fmt.Errorf("policy document: %v", err)
	}
	list := median(func() { hosts = st.PolicyHosts() })

	var compile, table []time.Duration
	var reach, peers, rules, sources, records []time.Duration // counts, kept as durations to reuse quantile
	t0 := time.Now()
	for _, h := range hosts {
		if !strings.HasPrefix(h.Name, "h") {
			continue // the servers carry no tags, hence no plan
		}
		c0 := time.Now()
		plan, err := policy.Compile(doc, hosts, h.Name, st.Policy.Version)
		if err != nil {
			return err
		}
		compile = append(compile, time.Since(c0))
		c0 = time.Now()
		tab, nrec := dnsTable(st, plan)
		table = append(table, time.Since(c0))
		_ = tab.Serial()
		var np, ns int
		for _, sp := range plan.Segments {
			np += len(sp.Peers)
		}
		for _, fr := range plan.Firewall {
			ns += len(fr.Sources)
		}
		reach = append(reach, time.Duration(len(plan.Reach)))
		peers = append(peers, time.Duration(np))
		rules = append(rules, time.Duration(len(plan.Firewall)))
		sources = append(sources, time.Duration(ns))
		records = append(records, time.Duration(nrec))
	}
	all := time.Since(t0)
	var sum time.Duration
	for _, d := range compile {
		sum += d
	}
	p50 := quantile(compile, 0.5)
	rep.set(sec, "state.Document() (HCL parse)", uSeconds, true, n, parse.Seconds())
	rep.set(sec, "state.PolicyHosts()", uSeconds, true, n, list.Seconds())
	rep.set(sec, "Compile per host p50", uSeconds, true, n, p50.Seconds())
	rep.set(sec, "Compile per host p99", uSeconds, true, n, quantile(compile, 0.99).Seconds())
	rep.set(sec, "Compile of every host, total (one core)", uSeconds, true, n, sum.Seconds())
	rep.set(sec, "WireGuard peers per host p50", uCount, true, n, float64(quantile(peers, 0.5)))
	rep.set(sec, "WireGuard peers per host max", uCount, true, n, float64(quantile(peers, 1)))
	rep.set(sec, "firewall rules per host p50", uCount, false, n, float64(quantile(rules, 0.5)))
	rep.set(sec, "firewall source addresses per host p50", uCount, true, n, float64(quantile(sources, 0.5)))
	rep.set(sec, "reach entries (DNS names) per host p50", uCount, true, n, float64(quantile(reach, 0.5)))
	rep.set(sec, "reach entries per host p99", uCount, true, n, float64(quantile(reach, 0.99)))
	rep.set(sec, "DNS records per host p50 (A + SRV)", uCount, true, n, float64(quantile(records, 0.5)))
	rep.set(sec, "DNS table build p50", uSeconds, true, n, quantile(table, 0.5).Seconds())
	rep.set(sec, "DNS table build p99", uSeconds, true, n, quantile(table, 0.99).Seconds())
	// agent/dataplane.go and agent/dns.go each parse, list and compile.
	perChange := 2*(parse+list+p50) + quantile(table, 0.5)
	rep.set(sec, "agent CPU per state change (2× parse+list+compile, DNS)", uSeconds, true, n, perChange.Seconds())
	logf("plan N=%d: %d compiles in %v (p50 %v)", len(hosts), len(compile), all.Round(time.Millisecond), p50)
	return nil
}

// dnsTable builds a host's table as agent/dns.go does, with every host
// alive and every check passing. It also returns the number of records.
func dnsTable(st *cluster.State, plan *policy.Plan) (*dnsd.Table, int) {
	nodes := map[string][]netip.Addr{}
	for _, sp := range plan.Segments {
		nodes[plan.Self] = append(nodes[plan.Self], sp.Address.Addr())
	}
	for _, r := range plan.Reach {
		nodes[r.Name] = []netip.Addr{r.Addr}
	}
	services := map[string][]dnsd.Instance{}
	records := 0
	for name, addrs := range nodes {
		records += len(addrs)
		n, ok := st.Nodes[name]
		if !ok {
			continue
		}
		for _, s := range n.Services {
			services[s.Name] = append(services[s.Name], dnsd.Instance{Node: name, Addr: addrs[0], Port: s.Port, Tags: s.Tags})
			records++
		}
	}
	return dnsd.NewTable(domain, 30*time.Second, nodes, services), records
}
