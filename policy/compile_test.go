package policy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// netipOpts lets go-cmp compare the netip types by value.
var netipOpts = cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{}, netip.AddrPort{})

const fleetPolicy = `
segment "web" {
  cidr    = "10.90.1.0/24"
  port    = 51821
  members = ["tag:web"]
}

segment "db" {
  cidr    = "10.90.2.0/24"
  port    = 51822
  members = ["tag:postgres"]
  intra   = "deny"
}

segment "ops" {
  cidr    = "10.90.3.0/24"
  port    = 51823
  members = ["tag:ops"]
}

rule "web-to-postgres" {
  action = "allow"
  from   = ["segment:web"]
  to     = ["service:postgres"]
  ports  = ["tcp/5432"]
}

rule "ops-to-web" {
  action = "allow"
  from   = ["segment:ops"]
  to     = ["segment:web"]
  ports  = ["tcp/8000-8100"]
}

rule "no-8080-from-ops" {
  action = "deny"
  from   = ["segment:ops"]
  to     = ["segment:web"]
  ports  = ["tcp/8080"]
}

rule "ops-ping-db" {
  action = "allow"
  from   = ["segment:ops"]
  to     = ["segment:db"]
  ports  = ["icmp"]
}

rule "no-ssh-into-db" {
  action = "deny"
  from   = ["segment:web"]
  to     = ["segment:db"]
  ports  = ["tcp/22"]
}
`

func mustParse(t testing.TB, src string) *Document {
	t.Helper()
	d, err := Parse("policy.hcl", []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return d
}

// sixHosts is the fleet of the compile tests, without keys or addresses.
func sixHosts() []Host {
	h := func(name, underlay string, tags []string, services ...string) Host {
		return Host{Name: name, Tags: tags, Services: services, Underlay: netip.MustParseAddr(underlay)}
	}
	return []Host{
		h("web-1", "192.168.0.31", []string{"web"}),
		h("web-2", "192.168.0.32", []string{"web"}),
		h("db-1", "192.168.0.11", []string{"postgres"}, "postgres"),
		h("db-2", "192.168.0.12", []string{"postgres"}),
		h("ops-1", "192.168.0.21", []string{"ops"}),
		h("ops-2", "192.168.0.22", []string{"ops"}),
	}
}

// register does what joins and IPAM do in Raft: every host gets an
// address (Allocate) and a public key in each segment it is assigned to.
func register(t testing.TB, d *Document, hosts []Host) []Host {
	t.Helper()
	addrs, err := Allocate(d, hosts, nil)
	if err != nil {
		t.Fatalf("Allocate: %v", err)
	}
	out := slices.Clone(hosts)
	for i := range out {
		out[i].Segments = map[string]HostSegment{}
		for seg, byHost := range addrs {
			if a, ok := byHost[out[i].Name]; ok {
				out[i].Segments[seg] = HostSegment{PublicKey: testKey(out[i].Name, seg), Addr: a}
			}
		}
	}
	return out
}

func testKey(host, seg string) string { return "key-" + host + "-" + seg }

func peer(name, seg, addr, underlay string, port uint16) Peer {
	a := netip.MustParseAddr(addr)
	return Peer{
		Name:       name,
		PublicKey:  testKey(name, seg),
		Endpoint:   netip.AddrPortFrom(netip.MustParseAddr(underlay), port),
		AllowedIPs: []netip.Prefix{netip.PrefixFrom(a, 32)},
	}
}

func pfx(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

func TestCompileSixHosts(t *testing.T) {
	d := mustParse(t, fleetPolicy)
	hosts := register(t, d, sixHosts())
	// Addresses, by Allocate in name order of each segment's hosts:
	//   db:  db-1 .1, db-2 .2, ops-1 .3, ops-2 .4, web-1 .5, web-2 .6
	//   ops: ops-1 .1, ops-2 .2
	//   web: ops-1 .1, ops-2 .2, web-1 .3, web-2 .4
	dbPeer := func(name, addr, underlay string) Peer { return peer(name, "db", addr, underlay, 51822) }
	webPeer := func(name, addr, underlay string) Peer { return peer(name, "web", addr, underlay, 51821) }
	opsPeer := func(name, addr, underlay string) Peer { return peer(name, "ops", addr, underlay, 51823) }

	tests := []struct {
		self string
		want *Plan
	}{
		{"db-1", &Plan{
			Self: "db-1", PolicyVersion: 7,
			Segments: []SegmentPlan{{
				Name: "db", Interface: "wf-db", Role: Member,
				CIDR: netip.MustParsePrefix("10.90.2.0/24"), Address: netip.MustParsePrefix("10.90.2.1/24"), ListenPort: 51822,
				// Not db-2: intra is deny and no rule lets db hosts reach each other.
				Peers: []Peer{
					dbPeer("ops-1", "10.90.2.3", "192.168.0.21"),
					dbPeer("ops-2", "10.90.2.4", "192.168.0.22"),
					dbPeer("web-1", "10.90.2.5", "192.168.0.31"),
					dbPeer("web-2", "10.90.2.6", "192.168.0.32"),
				},
			}},
			Firewall: []FirewallRule{
				{Counter: "rule/no-ssh-into-db", Action: Deny, Interface: "wf-db", Sources: pfx("10.90.2.5/32", "10.90.2.6/32"), Proto: "tcp", Ports: []PortRange{{22, 22}}},
				{Counter: "rule/web-to-postgres", Action: Allow, Interface: "wf-db", Sources: pfx("10.90.2.5/32", "10.90.2.6/32"), Proto: "tcp", Ports: []PortRange{{5432, 5432}}},
				{Counter: "rule/ops-ping-db", Action: Allow, Interface: "wf-db", Sources: pfx("10.90.2.3/32", "10.90.2.4/32"), Proto: "icmp"},
			},
		}},
		{"db-2", &Plan{
			Self: "db-2", PolicyVersion: 7,
			Segments: []SegmentPlan{{
				Name: "db", Interface: "wf-db", Role: Member,
				CIDR: netip.MustParsePrefix("10.90.2.0/24"), Address: netip.MustParsePrefix("10.90.2.2/24"), ListenPort: 51822,
				// db-2 declares no postgres service: the web hosts may not
				// reach it, so they are not its peers.
				Peers: []Peer{
					dbPeer("ops-1", "10.90.2.3", "192.168.0.21"),
					dbPeer("ops-2", "10.90.2.4", "192.168.0.22"),
				},
			}},
			Firewall: []FirewallRule{
				{Counter: "rule/ops-ping-db", Action: Allow, Interface: "wf-db", Sources: pfx("10.90.2.3/32", "10.90.2.4/32"), Proto: "icmp"},
			},
		}},
		{"web-1", &Plan{
			Self: "web-1", PolicyVersion: 7,
			Segments: []SegmentPlan{
				{
					Name: "db", Interface: "wf-db", Role: Guest,
					CIDR: netip.MustParsePrefix("10.90.2.0/24"), Address: netip.MustParsePrefix("10.90.2.5/32"), ListenPort: 51822,
					// Only the db host it may reach; never the other guests.
					Peers: []Peer{dbPeer("db-1", "10.90.2.1", "192.168.0.11")},
				},
				{
					Name: "web", Interface: "wf-web", Role: Member,
					CIDR: netip.MustParsePrefix("10.90.1.0/24"), Address: netip.MustParsePrefix("10.90.1.3/24"), ListenPort: 51821,
					Peers: []Peer{
						webPeer("ops-1", "10.90.1.1", "192.168.0.21"),
						webPeer("ops-2", "10.90.1.2", "192.168.0.22"),
						webPeer("web-2", "10.90.1.4", "192.168.0.32"),
					},
				},
			},
			Firewall: []FirewallRule{
				{Counter: "rule/no-8080-from-ops", Action: Deny, Interface: "wf-web", Sources: pfx("10.90.1.1/32", "10.90.1.2/32"), Proto: "tcp", Ports: []PortRange{{8080, 8080}}},
				{Counter: "intra/web", Action: Allow, Interface: "wf-web", Sources: pfx("10.90.1.4/32"), Proto: "any"},
				{Counter: "rule/ops-to-web", Action: Allow, Interface: "wf-web", Sources: pfx("10.90.1.1/32", "10.90.1.2/32"), Proto: "tcp", Ports: []PortRange{{8000, 8100}}},
			},
		}},
		{"ops-1", &Plan{
			Self: "ops-1", PolicyVersion: 7,
			Segments: []SegmentPlan{
				{
					Name: "db", Interface: "wf-db", Role: Guest,
					CIDR: netip.MustParsePrefix("10.90.2.0/24"), Address: netip.MustParsePrefix("10.90.2.3/32"), ListenPort: 51822,
					Peers: []Peer{
						dbPeer("db-1", "10.90.2.1", "192.168.0.11"),
						dbPeer("db-2", "10.90.2.2", "192.168.0.12"),
					},
				},
				{
					Name: "ops", Interface: "wf-ops", Role: Member,
					CIDR: netip.MustParsePrefix("10.90.3.0/24"), Address: netip.MustParsePrefix("10.90.3.1/24"), ListenPort: 51823,
					Peers: []Peer{opsPeer("ops-2", "10.90.3.2", "192.168.0.22")},
				},
				{
					Name: "web", Interface: "wf-web", Role: Guest,
					CIDR: netip.MustParsePrefix("10.90.1.0/24"), Address: netip.MustParsePrefix("10.90.1.1/32"), ListenPort: 51821,
					Peers: []Peer{
						webPeer("web-1", "10.90.1.3", "192.168.0.31"),
						webPeer("web-2", "10.90.1.4", "192.168.0.32"),
					},
				},
			},
			// Guest interfaces accept no new flows: replies pass as
			// established before any rule.
			Firewall: []FirewallRule{
				{Counter: "intra/ops", Action: Allow, Interface: "wf-ops", Sources: pfx("10.90.3.2/32"), Proto: "any"},
			},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.self, func(t *testing.T) {
			got, err := Compile(d, hosts, tt.self, 7)
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, netipOpts, cmpopts.IgnoreFields(Plan{}, "Reach")); diff != "" {
				t.Errorf("Compile(%s) (-want +got):\n%s", tt.self, diff)
			}
		})
	}
}

func TestAssignmentsSixHosts(t *testing.T) {
	d := mustParse(t, fleetPolicy)
	want := map[string]map[string]Role{
		"db":  {"db-1": Member, "db-2": Member, "ops-1": Guest, "ops-2": Guest, "web-1": Guest, "web-2": Guest},
		"ops": {"ops-1": Member, "ops-2": Member},
		"web": {"web-1": Member, "web-2": Member, "ops-1": Guest, "ops-2": Guest},
	}
	if diff := cmp.Diff(want, Assignments(d, sixHosts())); diff != "" {
		t.Errorf("Assignments (-want +got):\n%s", diff)
	}
}

// TestCompileIsolation checks the properties that hold for every plan of
// the fleet: guests peer only with members, and a host has an interface
// in a segment only if it is a member or may reach one of its members.
func TestCompileIsolation(t *testing.T) {
	d := mustParse(t, fleetPolicy)
	hosts := append(sixHosts(), Host{Name: "lonely", Tags: []string{"nothing"}, Underlay: netip.MustParseAddr("192.168.0.99")})
	hosts = register(t, d, hosts)
	a := Assignments(d, hosts)
	for _, h := range hosts {
		plan, err := Compile(d, hosts, h.Name, 1)
		if err != nil {
			t.Fatalf("Compile(%s): %v", h.Name, err)
		}
		for _, sp := range plan.Segments {
			if role := a[sp.Name][h.Name]; role != sp.Role {
				t.Errorf("%s has an interface in %s as %q; Assignments says %q", h.Name, sp.Name, sp.Role, role)
			}
			if sp.Role != Guest {
				continue
			}
			for _, p := range sp.Peers {
				if a[sp.Name][p.Name] != Member {
					t.Errorf("guest %s of %s peers with %s, a %s", h.Name, sp.Name, p.Name, a[sp.Name][p.Name])
				}
			}
		}
	}
	want := map[string][]string{ // host -> its interfaces
		"db-1":   {"db"},
		"db-2":   {"db"},
		"web-1":  {"db", "web"},
		"ops-1":  {"db", "ops", "web"},
		"lonely": nil,
	}
	for name, segs := range want {
		plan, err := Compile(d, hosts, name, 1)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, sp := range plan.Segments {
			got = append(got, sp.Name)
		}
		if diff := cmp.Diff(segs, got, netipOpts); diff != "" {
			t.Errorf("interfaces of %s (-want +got):\n%s", name, diff)
		}
	}
	lonely, _ := Compile(d, hosts, "lonely", 1)
	if len(lonely.Firewall) != 0 {
		t.Errorf("lonely has firewall rules: %v", lonely.Firewall)
	}
}

func TestCompileWaitsForRegistry(t *testing.T) {
	d := mustParse(t, fleetPolicy)
	hosts := register(t, d, sixHosts())
	for i := range hosts {
		switch hosts[i].Name {
		case "web-2": // no key yet in web
			hs := hosts[i].Segments["web"]
			hs.PublicKey = ""
			hosts[i].Segments["web"] = hs
		case "ops-2": // no address yet in web
			hs := hosts[i].Segments["web"]
			hs.Addr = netip.Addr{}
			hosts[i].Segments["web"] = hs
		case "ops-1": // no address yet in db: no interface there
			delete(hosts[i].Segments, "db")
		}
	}
	plan, err := Compile(d, hosts, "web-1", 1)
	if err != nil {
		t.Fatal(err)
	}
	var web SegmentPlan
	for _, sp := range plan.Segments {
		if sp.Name == "web" {
			web = sp
		}
	}
	if got := peerNames(web.Peers); !slices.Equal(got, []string{"ops-1"}) {
		t.Errorf("peers of web-1 in web = %v, want [ops-1]", got)
	}
	for _, r := range plan.Firewall {
		if r.Counter == "intra/web" {
			t.Errorf("intra/web has sources %v though web-2 is no peer yet", r.Sources)
		}
	}
	ops1, err := Compile(d, hosts, "ops-1", 1)
	if err != nil {
		t.Fatal(err)
	}
	for _, sp := range ops1.Segments {
		if sp.Name == "db" {
			t.Errorf("ops-1 has an interface in db without an address: %+v", sp)
		}
	}
}

func peerNames(ps []Peer) []string {
	var out []string
	for _, p := range ps {
		out = append(out, p.Name)
	}
	return out
}

func TestCompileErrors(t *testing.T) {
	d := mustParse(t, fleetPolicy)
	if _, err := Compile(d, sixHosts(), "nobody", 1); err == nil {
		t.Error("Compile for a host not in the list: no error")
	}
	dup := append(sixHosts(), Host{Name: "web-1"})
	if _, err := Compile(d, dup, "db-1", 1); err == nil {
		t.Error("Compile with two hosts named web-1: no error")
	}
	if _, err := Allocate(d, dup, nil); err == nil {
		t.Error("Allocate with two hosts named web-1: no error")
	}
}

func TestCompileDeterministic(t *testing.T) {
	d := mustParse(t, fleetPolicy)
	hosts := register(t, d, sixHosts())
	want := map[string]*Plan{}
	for _, h := range hosts {
		p, err := Compile(d, hosts, h.Name, 3)
		if err != nil {
			t.Fatal(err)
		}
		want[h.Name] = p
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 20 {
		shuffled := slices.Clone(hosts)
		rng.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
		for _, h := range shuffled {
			got, err := Compile(d, shuffled, h.Name, 3)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(want[h.Name], got, netipOpts); diff != "" {
				t.Fatalf("shuffle %d: plan of %s differs (-first +now):\n%s", i, h.Name, diff)
			}
		}
	}
}

func TestExplain(t *testing.T) {
	d := mustParse(t, fleetPolicy)
	hosts := append(sixHosts(), Host{Name: "lonely"})
	tests := []struct {
		from, to, proto string
		port            uint16
		want            Explanation
	}{
		{"web-1", "db-1", "tcp", 5432, Explanation{Allowed: true, Segment: "db", Rule: "web-to-postgres", Reason: "allowed by rule web-to-postgres"}},
		{"web-1", "db-1", "tcp", 22, Explanation{Segment: "db", Rule: "no-ssh-into-db", Reason: "denied by rule no-ssh-into-db"}},
		{"web-1", "db-1", "tcp", 5433, Explanation{Segment: "db", Reason: "no rule allows it (default deny)"}},
		{"web-1", "db-2", "tcp", 5432, Explanation{Reason: "no rule allows it (default deny)"}},
		{"web-1", "db-2", "tcp", 22, Explanation{Rule: "no-ssh-into-db", Reason: "denied by rule no-ssh-into-db"}},
		{"web-1", "web-2", "tcp", 443, Explanation{Allowed: true, Segment: "web", Reason: "allowed by intra-segment traffic in web"}},
		{"web-2", "web-1", "udp", 53, Explanation{Allowed: true, Segment: "web", Reason: "allowed by intra-segment traffic in web"}},
		// deny beats allow: 8080 is inside ops-to-web's 8000-8100
		{"ops-1", "web-1", "tcp", 8080, Explanation{Segment: "web", Rule: "no-8080-from-ops", Reason: "denied by rule no-8080-from-ops"}},
		{"ops-1", "web-1", "tcp", 8081, Explanation{Allowed: true, Segment: "web", Rule: "ops-to-web", Reason: "allowed by rule ops-to-web"}},
		{"ops-2", "web-2", "tcp", 8000, Explanation{Allowed: true, Segment: "web", Rule: "ops-to-web", Reason: "allowed by rule ops-to-web"}},
		{"ops-1", "web-1", "tcp", 8101, Explanation{Segment: "web", Reason: "no rule allows it (default deny)"}},
		{"ops-1", "web-1", "udp", 8081, Explanation{Segment: "web", Reason: "no rule allows it (default deny)"}},
		{"ops-1", "db-2", "icmp", 0, Explanation{Allowed: true, Segment: "db", Rule: "ops-ping-db", Reason: "allowed by rule ops-ping-db"}},
		{"ops-1", "ops-2", "icmp", 0, Explanation{Allowed: true, Segment: "ops", Reason: "allowed by intra-segment traffic in ops"}},
		{"db-1", "db-2", "tcp", 5432, Explanation{Reason: "no rule allows it (default deny)"}},
		{"db-1", "web-1", "tcp", 8000, Explanation{Reason: "no rule allows it (default deny)"}},
		{"web-1", "ops-1", "tcp", 8000, Explanation{Reason: "no rule allows it (default deny)"}},
		{"web-1", "web-1", "tcp", 1, Explanation{Allowed: true, Reason: "a host's traffic to itself does not cross the mesh"}},
		{"nobody", "web-1", "tcp", 80, Explanation{Reason: `unknown host "nobody"`}},
		{"web-1", "nobody", "tcp", 80, Explanation{Reason: `unknown host "nobody"`}},
		{"lonely", "web-1", "tcp", 80, Explanation{Reason: "lonely is a member of no segment, so it reaches nothing"}},
		{"web-1", "lonely", "tcp", 80, Explanation{Reason: "lonely is a member of no segment, so nothing reaches it"}},
		{"web-1", "web-2", "sctp", 80, Explanation{Reason: `unknown protocol "sctp" (tcp, udp or icmp)`}},
		{"web-1", "web-2", "tcp", 0, Explanation{Reason: "port 0 is not a tcp port"}},
	}
	for _, tt := range tests {
		name := fmt.Sprintf("%s->%s/%s/%d", tt.from, tt.to, tt.proto, tt.port)
		got := Explain(d, hosts, tt.from, tt.to, tt.proto, tt.port)
		if diff := cmp.Diff(tt.want, got, netipOpts); diff != "" {
			t.Errorf("Explain(%s) (-want +got):\n%s", name, diff)
		}
	}
}

// TestFirewallAgreesWithExplain runs every flow of a sample through the
// plans the way the dataplane would: the source must have the target as a
// peer on the path interface, and the target's firewall must accept the
// packet from the source's address there exactly when Explain allows it.
func TestFirewallAgreesWithExplain(t *testing.T) {
	d := mustParse(t, fleetPolicy)
	hosts := register(t, d, sixHosts())
	checkAgainstExplain(t, d, hosts, sampleFlows)
}

var sampleFlows = []struct {
	proto string
	port  uint16
}{{"tcp", 22}, {"tcp", 80}, {"tcp", 5432}, {"tcp", 8000}, {"tcp", 8080}, {"tcp", 8100}, {"tcp", 8101}, {"udp", 53}, {"udp", 8080}, {"icmp", 0}}

func checkAgainstExplain(t *testing.T, d *Document, hosts []Host, flows []struct {
	proto string
	port  uint16
}) {
	t.Helper()
	plans := map[string]*Plan{}
	for _, h := range hosts {
		p, err := Compile(d, hosts, h.Name, 1)
		if err != nil {
			t.Fatalf("Compile(%s): %v", h.Name, err)
		}
		plans[h.Name] = p
	}
	for _, src := range hosts {
		for _, dst := range hosts {
			if src.Name == dst.Name {
				continue
			}
			for _, fl := range flows {
				e := Explain(d, hosts, src.Name, dst.Name, fl.proto, fl.port)
				accepted := ""
				for _, sp := range plans[dst.Name].Segments {
					from, ok := src.Segments[sp.Name]
					if ok && firewallAccepts(plans[dst.Name].Firewall, sp.Interface, from.Addr, fl.proto, fl.port) {
						accepted = sp.Name
					}
				}
				if !e.Allowed {
					if accepted != "" {
						t.Errorf("%s->%s %s/%d: Explain denies (%s), but %s's firewall accepts it on wf-%s", src.Name, dst.Name, fl.proto, fl.port, e.Reason, dst.Name, accepted)
					}
					continue
				}
				if accepted != e.Segment {
					t.Errorf("%s->%s %s/%d: Explain allows it through %s, %s's firewall accepts it on %q", src.Name, dst.Name, fl.proto, fl.port, e.Segment, dst.Name, accepted)
				}
				if !hasPeer(plans[src.Name], e.Segment, dst.Name) || !hasPeer(plans[dst.Name], e.Segment, src.Name) {
					t.Errorf("%s->%s %s/%d allowed through %s, but they are not peers there", src.Name, dst.Name, fl.proto, fl.port, e.Segment)
				}
			}
		}
	}
}

func hasPeer(p *Plan, seg, name string) bool {
	for _, sp := range p.Segments {
		if sp.Name == seg {
			return slices.ContainsFunc(sp.Peers, func(p Peer) bool { return p.Name == name })
		}
	}
	return false
}

// firewallAccepts evaluates rules in order, as nftables would, for a new
// flow arriving on iface from src.
func firewallAccepts(rules []FirewallRule, iface string, src netip.Addr, proto string, port uint16) bool {
	for _, r := range rules {
		if r.Interface != iface || !slices.Contains(r.Sources, netip.PrefixFrom(src, src.BitLen())) {
			continue
		}
		if r.Proto != ProtoAny && r.Proto != proto {
			continue
		}
		if len(r.Ports) > 0 && !inRanges(r.Ports, port) {
			continue
		}
		return r.Action == Allow
	}
	return false
}

func TestDiff(t *testing.T) {
	d := mustParse(t, fleetPolicy)
	hosts := register(t, d, sixHosts())
	plan := func(d *Document, self string) *Plan {
		p, err := Compile(d, hosts, self, 1)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	without := func(rule string) *Document {
		d2 := *d
		d2.Rules = slices.DeleteFunc(slices.Clone(d.Rules), func(r Rule) bool { return r.Name == rule })
		return &d2
	}
	moved := plan(d, "db-2")
	moved.Segments[0].Address = netip.MustParsePrefix("10.90.2.9/24")
	moved.Segments[0].Peers[0].Endpoint = netip.MustParseAddrPort("192.168.7.1:51822")

	tests := []struct {
		name     string
		old, new *Plan
		want     []string
	}{
		{"equal", plan(d, "db-1"), plan(d, "db-1"), nil},
		{"from nothing", nil, plan(d, "db-2"), []string{
			"+ segment db (member, 10.90.2.2/24)",
			"+ peer ops-1 on wf-db",
			"+ peer ops-2 on wf-db",
			"+ rule rule/ops-ping-db on wf-db: allow icmp from 2 sources",
		}},
		{"allow rule added", plan(without("web-to-postgres"), "db-1"), plan(d, "db-1"), []string{
			"+ peer web-1 on wf-db",
			"+ peer web-2 on wf-db",
			"+ rule rule/no-ssh-into-db on wf-db: deny tcp/22 from 2 sources",
			"+ rule rule/web-to-postgres on wf-db: allow tcp/5432 from 2 sources",
		}},
		{"guest segment removed", plan(d, "web-1"), plan(without("web-to-postgres"), "web-1"), []string{
			"- segment db (guest, 10.90.2.5/32)",
			"- peer db-1 from wf-db",
		}},
		{"deny removed", plan(d, "web-1"), plan(without("no-8080-from-ops"), "web-1"), []string{
			"- rule rule/no-8080-from-ops on wf-web: deny tcp/8080 from 2 sources",
		}},
		{"address and endpoint", plan(d, "db-2"), moved, []string{
			"~ address of wf-db: 10.90.2.2/24 -> 10.90.2.9/24",
			"~ peer ops-1 on wf-db: endpoint 192.168.0.21:51822 -> 192.168.7.1:51822",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, Diff(tt.old, tt.new), netipOpts); diff != "" {
				t.Errorf("Diff (-want +got):\n%s", diff)
			}
		})
	}
}

// TestCompileReach: Reach lists exactly the hosts self may send to, each
// at the address of the peer entry of the segment it is reached through.
func TestCompileReach(t *testing.T) {
	d := mustParse(t, fleetPolicy)
	hosts := register(t, d, sixHosts())
	probes := []struct {
		proto string
		port  uint16
	}{{"tcp", 5432}, {"tcp", 8000}, {"tcp", 8080}, {"tcp", 8100}, {"tcp", 22}, {"udp", 53}, {"icmp", 0}}
	for _, self := range hosts {
		plan, err := Compile(d, hosts, self.Name, 1)
		if err != nil {
			t.Fatal(err)
		}
		reach := map[string]Reach{}
		for _, r := range plan.Reach {
			reach[r.Name] = r
		}
		for _, to := range hosts {
			if to.Name == self.Name {
				continue
			}
			allowed := false
			for _, p := range probes {
				allowed = allowed || Explain(d, hosts, self.Name, to.Name, p.proto, p.port).Allowed
			}
			r, listed := reach[to.Name]
			if allowed && !listed {
				t.Errorf("%s may reach %s, but Reach does not list it", self.Name, to.Name)
			}
			if !listed {
				continue
			}
			found := false
			for _, sp := range plan.Segments {
				for _, p := range sp.Peers {
					found = found || (sp.Name == r.Segment && p.Name == to.Name && p.AllowedIPs[0].Addr() == r.Addr)
				}
			}
			if !found {
				t.Errorf("%s: Reach %+v has no matching peer entry", self.Name, r)
			}
		}
	}
}
