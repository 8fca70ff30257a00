package agent

import (
	"embed"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/weft-mesh/weft/cluster"
	"github.com/weft-mesh/weft/internal/version"
	"github.com/weft-mesh/weft/policy"
)

// The status page: a read-only view of the mesh served on the metrics
// listener (metrics { listen }), at / and /ui/, fed by GET /v1/mesh.
//
// That listener may be reachable from the network, so everything here is
// GET only and carries nothing secret: no private key, no token, no CA
// key, not even public keys or the policy's source. Names, tags,
// underlay and overlay addresses, rule names and health are shown: they
// are what an operator looks at, and any host of the mesh learns them
// anyway. The page is a static HTML file and one script, embedded, with a
// Content-Security-Policy that lets them load nothing from elsewhere.

//go:embed ui/index.html ui/app.js
var uiFiles embed.FS

// maxGraphHosts bounds the fleets whose reachability /v1/mesh computes: it
// compiles every host's plan, which grows with the square of the fleet.
const maxGraphHosts = 200

// statusPageCSP forbids inline scripts, other origins, frames and forms.
const statusPageCSP = "default-src 'self'; style-src 'self' 'unsafe-inline'; script-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"

// meshView is the answer of GET /v1/mesh on the metrics listener. Lists
// are never null; times are RFC 3339 UTC.
type meshView struct {
	GeneratedAt time.Time     `json:"generated_at"`
	Agent       meshAgent     `json:"agent"`
	Policy      *meshPolicy   `json:"policy"` // null before the first apply
	Members     []meshMember  `json:"members"`
	Segments    []meshSegment `json:"segments"`
	Reach       meshReach     `json:"reach"`
	Dataplane   meshDataplane `json:"dataplane"`
}

// meshAgent is the agent that answers.
type meshAgent struct {
	Node       string      `json:"node"`
	Role       string      `json:"role"`
	Domain     string      `json:"domain"`
	Version    string      `json:"version"`
	Leader     string      `json:"leader"`
	RaftState  string      `json:"raft_state,omitempty"` // servers only
	StateIndex uint64      `json:"state_index"`
	Ready      bool        `json:"ready"`
	Checks     []meshCheck `json:"checks"`
}

// meshCheck is one health check of the answering agent.
type meshCheck struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Reason string `json:"reason,omitempty"`
}

// meshPolicy is the applied policy: its version and who applied it when.
type meshPolicy struct {
	Version   uint64    `json:"version"`
	Filename  string    `json:"filename"`
	AppliedAt time.Time `json:"applied_at"`
	AppliedBy string    `json:"applied_by"`
	// AppliedOn counts the members whose dataplane enforces this version.
	AppliedOn int `json:"applied_on"`
}

// meshMember is one host and its health.
type meshMember struct {
	Name   string   `json:"name"`
	Role   string   `json:"role"`
	Addr   string   `json:"addr"`   // underlay IP
	Status string   `json:"status"` // gossip: alive, dead, unknown
	Self   bool     `json:"self"`
	Tags   []string `json:"tags"`
	// StateIndex is the state index the host has applied, PolicyVersion
	// the policy version its dataplane enforces (0: none), both as the
	// host announces them in gossip.
	StateIndex    uint64 `json:"state_index"`
	PolicyVersion uint64 `json:"policy_version"`
	// Failing lists the host's services whose checks fail.
	Failing []string `json:"failing"`
}

// meshSegment is one segment of the policy and the hosts that have an
// interface in it.
type meshSegment struct {
	Name    string     `json:"name"`
	CIDR    string     `json:"cidr"`
	Port    int        `json:"port"`
	Intra   string     `json:"intra"`   // allow or deny
	Members []string   `json:"members"` // the member selectors, as written
	Hosts   []meshHost `json:"hosts"`   // sorted by name
}

// meshHost is a host of a segment.
type meshHost struct {
	Name string `json:"name"`
	Role string `json:"role"` // member or guest
	Addr string `json:"addr"` // overlay address; "" until IPAM gives one
}

// meshReach says who may reach whom. Edges are computed only for fleets
// of at most Limit hosts; otherwise Computed is false and Reason says so.
type meshReach struct {
	Computed   bool       `json:"computed"`
	Reason     string     `json:"reason,omitempty"`
	Hosts      int        `json:"hosts"` // registered hosts
	Limit      int        `json:"limit"`
	StateIndex uint64     `json:"state_index"` // the state the edges come from
	Edges      []meshEdge `json:"edges"`       // sorted by from, then to
}

// meshEdge is "From may open flows to To", through Segment, where To has
// address Addr.
type meshEdge struct {
	From    string `json:"from"`
	To      string `json:"to"`
	Segment string `json:"segment"`
	Addr    string `json:"addr"`
	// Rules are the firewall rules of To that admit From (allow) or drop
	// some of its flows (deny): "intra/<segment>" or "rule/<name>".
	Rules []meshEdgeRule `json:"rules"`
}

// meshEdgeRule is one firewall rule on an edge, with the ports it covers.
type meshEdgeRule struct {
	Name   string   `json:"name"`
	Action string   `json:"action"`
	Ports  []string `json:"ports"` // "tcp/5432", "udp", "icmp", "any"
}

// meshDataplane is this host's WireGuard interfaces as the devices report
// them.
type meshDataplane struct {
	Available bool               `json:"available"`
	Reason    string             `json:"reason,omitempty"` // why not available, or why partial
	Segments  []meshLocalSegment `json:"segments"`
}

// meshLocalSegment is one WireGuard interface of this host.
type meshLocalSegment struct {
	Name       string     `json:"name"`
	Interface  string     `json:"interface"`
	Role       string     `json:"role"`
	Address    string     `json:"address"`
	ListenPort int        `json:"listen_port"`
	Peers      []meshPeer `json:"peers"`
}

// meshPeer is one WireGuard peer.
type meshPeer struct {
	Name       string   `json:"name"` // "" for a peer the plan does not name
	Endpoint   string   `json:"endpoint"`
	AllowedIPs []string `json:"allowed_ips"`
	// LastHandshake and HandshakeAge are null when there was none.
	LastHandshake *time.Time `json:"last_handshake"`
	HandshakeAge  *float64   `json:"handshake_age_seconds"`
	RxBytes       int64      `json:"rx_bytes"`
	TxBytes       int64      `json:"tx_bytes"`
}

// statusPage serves the page and /v1/mesh, and caches the reachability
// edges by state index: polls of an unchanged state recompute nothing.
type statusPage struct {
	a     *Agent
	index []byte
	js    []byte

	mu         sync.Mutex
	reachIndex uint64
	reach      *meshReach
}

// registerStatusPage adds the page and its JSON to the metrics mux.
func (a *Agent) registerStatusPage(mux *http.ServeMux) {
	index, err := uiFiles.ReadFile("ui/index.html")
	if err != nil {
		panic(err) // embedded at build time: cannot happen
	}
	js, err := uiFiles.ReadFile("ui/app.js")
	if err != nil {
		panic(err)
	}
	p := &statusPage{a: a, index: index, js: js}
	mux.HandleFunc("GET /{$}", p.serveIndex)
	mux.HandleFunc("GET /ui/{$}", p.serveIndex)
	mux.HandleFunc("GET /ui/app.js", p.serveJS)
	mux.HandleFunc("GET /v1/mesh", p.serveMesh)
}

func pageHeaders(w http.ResponseWriter, contentType string) {
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("Content-Security-Policy", statusPageCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
}

func (p *statusPage) serveIndex(w http.ResponseWriter, r *http.Request) {
	pageHeaders(w, "text/html; charset=utf-8")
	_, _ = w.Write(p.index)
}

func (p *statusPage) serveJS(w http.ResponseWriter, r *http.Request) {
	pageHeaders(w, "text/javascript; charset=utf-8")
	_, _ = w.Write(p.js)
}

func (p *statusPage) serveMesh(w http.ResponseWriter, r *http.Request) {
	pageHeaders(w, "application/json")
	writeJSON(w, http.StatusOK, p.view(time.Now()))
}

// view gathers the mesh as this agent sees it.
func (p *statusPage) view(now time.Time) meshView {
	a := p.a
	st := a.cluster.State()
	self := a.config().NodeName
	out := meshView{GeneratedAt: now.UTC(), Members: []meshMember{}, Segments: []meshSegment{}}

	s := a.status()
	out.Agent = meshAgent{Node: s.Node, Role: s.Role, Domain: s.Domain, Version: version.Version, Leader: s.Leader,
		RaftState: s.RaftState, StateIndex: s.StateIndex, Ready: s.Ready, Checks: []meshCheck{}}
	for _, c := range s.Checks {
		out.Agent.Checks = append(out.Agent.Checks, meshCheck{Name: c.Name, OK: c.OK, Reason: c.Reason})
	}

	health := a.cluster.Health()
	for _, m := range a.cluster.Members() {
		mm := meshMember{Name: m.Name, Role: string(m.Role), Addr: m.Addr, Status: m.Status, Self: m.Name == self,
			Tags: nonNil(m.Tags), StateIndex: m.StateIndex, PolicyVersion: m.PolicyVersion, Failing: nonNil(health[m.Name].Failing)}
		out.Members = append(out.Members, mm)
	}

	doc, err := st.Document()
	if err != nil {
		doc = nil // a stored document always parses; show no segments rather than fail
	}
	if st.Policy != nil {
		mp := &meshPolicy{Version: st.Policy.Version, Filename: st.Policy.Filename, AppliedAt: st.Policy.AppliedAt, AppliedBy: st.Policy.AppliedBy}
		for _, m := range out.Members {
			if m.PolicyVersion == st.Policy.Version {
				mp.AppliedOn++
			}
		}
		out.Policy = mp
	}
	hosts := st.PolicyHosts()
	if doc != nil {
		out.Segments = segmentsOf(doc, hosts, st)
	}
	out.Reach = *p.reachOf(st, doc, hosts)
	out.Dataplane = a.dataplaneView(now)
	return out
}

func segmentsOf(doc *policy.Document, hosts []policy.Host, st *cluster.State) []meshSegment {
	assigned := policy.Assignments(doc, hosts)
	out := make([]meshSegment, 0, len(doc.Segments))
	for _, seg := range doc.Segments {
		ms := meshSegment{Name: seg.Name, CIDR: seg.CIDR.String(), Port: seg.Port, Intra: string(seg.Intra), Members: []string{}, Hosts: []meshHost{}}
		if ms.Intra == "" {
			ms.Intra = string(policy.Allow)
		}
		for _, sel := range seg.Members {
			ms.Members = append(ms.Members, sel.String())
		}
		for name, role := range assigned[seg.Name] {
			h := meshHost{Name: name, Role: string(role)}
			if n, ok := st.Nodes[name]; ok {
				h.Addr = n.Segments[seg.Name].Addr
			}
			ms.Hosts = append(ms.Hosts, h)
		}
		slices.SortFunc(ms.Hosts, func(x, y meshHost) int { return strings.Compare(x.Name, y.Name) })
		out = append(out, ms)
	}
	return out
}

// reachOf returns the edges of st, from the cache when st is the state
// they were computed from.
func (p *statusPage) reachOf(st *cluster.State, doc *policy.Document, hosts []policy.Host) *meshReach {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.reach != nil && p.reachIndex == st.Index {
		return p.reach
	}
	r := computeReach(st, doc, hosts)
	p.reach, p.reachIndex = r, st.Index
	return r
}

// computeReach compiles every host's plan and reads its Reach list; the
// rules on an edge come from the target's firewall.
func computeReach(st *cluster.State, doc *policy.Document, hosts []policy.Host) *meshReach {
	r := &meshReach{Hosts: len(hosts), Limit: maxGraphHosts, StateIndex: st.Index, Edges: []meshEdge{}}
	switch {
	case doc == nil:
		r.Reason = "no policy has been applied: no host may reach another"
		return r
	case len(hosts) > maxGraphHosts:
		r.Reason = fmt.Sprintf("%d hosts: reachability is computed for fleets of up to %d; use weft policy explain", len(hosts), maxGraphHosts)
		return r
	}
	plans := map[string]*policy.Plan{}
	var failed []string
	for _, h := range hosts {
		plan, err := policy.Compile(doc, hosts, h.Name, st.Policy.Version)
		if err != nil {
			failed = append(failed, h.Name)
			continue
		}
		plans[h.Name] = plan
	}
	addrs := map[string]map[string]netip.Addr{} // by host, by segment
	for _, h := range hosts {
		addrs[h.Name] = map[string]netip.Addr{}
		for seg, hs := range h.Segments {
			addrs[h.Name][seg] = hs.Addr
		}
	}
	for _, h := range hosts {
		plan := plans[h.Name]
		if plan == nil {
			continue
		}
		for _, to := range plan.Reach {
			e := meshEdge{From: h.Name, To: to.Name, Segment: to.Segment, Addr: to.Addr.String(), Rules: []meshEdgeRule{}}
			if tp := plans[to.Name]; tp != nil {
				e.Rules = edgeRules(tp, policy.InterfacePrefix+to.Segment, addrs[h.Name][to.Segment])
			}
			r.Edges = append(r.Edges, e)
		}
	}
	r.Computed = true
	if len(failed) > 0 {
		r.Reason = "no plan for " + strings.Join(failed, ", ")
	}
	return r
}

// edgeRules returns the firewall rules of a target's plan on iface whose
// sources include src, merged by counter, in evaluation order.
func edgeRules(target *policy.Plan, iface string, src netip.Addr) []meshEdgeRule {
	out := []meshEdgeRule{}
	if !src.IsValid() {
		return out
	}
	at := map[string]int{}
	for _, fr := range target.Firewall {
		if fr.Interface != iface || !slices.ContainsFunc(fr.Sources, func(p netip.Prefix) bool { return p.Contains(src) }) {
			continue
		}
		i, ok := at[fr.Counter]
		if !ok {
			i = len(out)
			at[fr.Counter] = i
			out = append(out, meshEdgeRule{Name: fr.Counter, Action: string(fr.Action), Ports: []string{}})
		}
		out[i].Ports = append(out[i].Ports, portsOf(fr))
	}
	return out
}

func portsOf(fr policy.FirewallRule) string {
	if len(fr.Ports) == 0 {
		return fr.Proto
	}
	rs := make([]string, len(fr.Ports))
	for i, pr := range fr.Ports {
		rs[i] = pr.String()
	}
	return fr.Proto + "/" + strings.Join(rs, ",")
}

// dataplaneView reads this host's WireGuard devices.
func (a *Agent) dataplaneView(now time.Time) meshDataplane {
	out := meshDataplane{Segments: []meshLocalSegment{}}
	if a.dataplane == nil {
		out.Reason = a.dataplaneErr
		if out.Reason == "" {
			out.Reason = "no dataplane on this host"
		}
		return out
	}
	out.Available = true
	segs, err := a.dataplane.status()
	if err != nil {
		out.Reason = err.Error()
	}
	for _, s := range segs {
		ls := meshLocalSegment{Name: s.Name, Interface: s.Interface, Role: string(s.Role), ListenPort: s.ListenPort, Peers: []meshPeer{}}
		if s.Address.IsValid() {
			ls.Address = s.Address.String()
		}
		for _, pe := range s.Peers {
			mp := meshPeer{Name: pe.Name, Endpoint: pe.Endpoint, AllowedIPs: []string{}, RxBytes: pe.RxBytes, TxBytes: pe.TxBytes}
			for _, ip := range pe.AllowedIPs {
				mp.AllowedIPs = append(mp.AllowedIPs, ip.String())
			}
			if !pe.LastHandshake.IsZero() {
				t := pe.LastHandshake.UTC()
				mp.LastHandshake = &t
				age := max(0, now.Sub(pe.LastHandshake).Seconds())
				mp.HandshakeAge = &age
			}
			ls.Peers = append(ls.Peers, mp)
		}
		slices.SortFunc(ls.Peers, func(x, y meshPeer) int { return strings.Compare(x.Name, y.Name) })
		out.Segments = append(out.Segments, ls)
	}
	return out
}
