package agent

import (
	"context"
	"net/netip"
	"slices"
	"time"

	"github.com/weft-mesh/weft/cluster"
	"github.com/weft-mesh/weft/dnsd"
	"github.com/weft-mesh/weft/policy"
)

// dnsTableInterval is how often the DNS table is checked for staleness.
// Rebuilding costs a compile of this host's plan only when the state
// changed; a health change costs a map walk.
const dnsTableInterval = 200 * time.Millisecond

// dnsFeed keeps the DNS server's table equal to what this host may see:
// the hosts its plan says it may reach, at the address it reaches them
// through, that are alive in gossip; and their services whose checks pass.
type dnsFeed struct {
	self    string
	cluster *cluster.Cluster
	server  func() *dnsd.Server // the current server (a reload may replace it)
	config  func() (domain string, ttl time.Duration)
	// resolved is told the weft interfaces of this host on every rebuild.
	resolved func(links []string)

	planIndex uint64
	plan      *policy.Plan
}

func (f *dnsFeed) run(ctx context.Context) {
	var lastIndex, lastHealth uint64
	var lastServer *dnsd.Server
	var lastDomain string
	var lastTTL time.Duration
	t := time.NewTicker(dnsTableInterval)
	defer t.Stop()
	for {
		st := f.cluster.State()
		hv := f.cluster.HealthVersion()
		srv := f.server()
		domain, ttl := f.config()
		if srv != nil && (st.Index != lastIndex || hv != lastHealth || srv != lastServer || domain != lastDomain || ttl != lastTTL) {
			srv.SetTable(f.table(st, domain, ttl))
			f.resolved(f.links())
			lastIndex, lastHealth, lastServer, lastDomain, lastTTL = st.Index, hv, srv, domain, ttl
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// table builds the DNS table of this host from st and the gossip view.
func (f *dnsFeed) table(st *cluster.State, domain string, ttl time.Duration) *dnsd.Table {
	nodes := map[string][]netip.Addr{}
	services := map[string][]dnsd.Instance{}
	plan := f.compile(st)
	if plan != nil {
		health := f.cluster.Health()
		for _, sp := range plan.Segments {
			nodes[f.self] = append(nodes[f.self], sp.Address.Addr())
		}
		for _, r := range plan.Reach {
			if h, ok := health[r.Name]; ok && h.Alive {
				nodes[r.Name] = []netip.Addr{r.Addr}
			}
		}
		for name, addrs := range nodes {
			n, ok := st.Nodes[name]
			if !ok {
				continue
			}
			failing := health[name].Failing
			for _, s := range n.Services {
				if slices.Contains(failing, s.Name) {
					// Known but unhealthy: the name exists (NODATA), it
					// just has no address to give.
					services[s.Name] = append(services[s.Name], []dnsd.Instance{}...)
					continue
				}
				services[s.Name] = append(services[s.Name], dnsd.Instance{Node: name, Addr: addrs[0], Port: s.Port, Tags: s.Tags})
			}
		}
	}
	return dnsd.NewTable(domain, ttl, nodes, services)
}

// compile returns this host's plan for st, cached by state index. DNS
// compiles on its own rather than asking the dataplane, so that it works
// (and is tested) on hosts without one.
func (f *dnsFeed) compile(st *cluster.State) *policy.Plan {
	if f.plan != nil && f.planIndex == st.Index {
		return f.plan
	}
	doc, err := st.Document()
	if err != nil || doc == nil {
		return nil
	}
	plan, err := policy.Compile(doc, st.PolicyHosts(), f.self, st.Policy.Version)
	if err != nil {
		return nil // not registered (yet): nothing to answer
	}
	f.plan, f.planIndex = plan, st.Index
	return plan
}

// links returns this host's weft interfaces, by its current plan.
func (f *dnsFeed) links() []string {
	var out []string
	if f.plan != nil {
		for _, sp := range f.plan.Segments {
			out = append(out, sp.Interface)
		}
	}
	return out
}
