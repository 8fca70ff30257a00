package cluster

import (
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/hashicorp/memberlist"

	"github.com/weft-mesh/weft/policy"
)

// metaPolicy puts every fixture node (tag "t") into one segment.
const metaPolicy = `segment "web" {
  cidr    = "10.90.1.0/24"
  port    = 51821
  members = ["tag:t"]
}
`

// Fixture WireGuard public keys, registered through the registry.
var metaKeys = map[string]string{
	"srv1":  "c3J2MS1wdWJsaWMta2V5LXNydjEtcHVibGljLWtleSE=",
	"web":   "d2ViLXB1YmxpYy1rZXktd2ViLXB1YmxpYy1rZXktd2U=",
	"spent": "c3BlbnQtcHVibGljLWtleS1zcGVudC1wdWJsaWMta2U=",
}

// metaCluster is a server that has not started, holding the fixture state
// with a policy and registered segment keys, and a gossip view with no
// memberlist behind it: the fuzz drives the delegate's events directly.
func metaCluster(tb testing.TB) *Cluster {
	tb.Helper()
	f := fixtureFSM(tb)
	idx := uint64(fixtureIndex)
	next := func(cmd Command) {
		idx++
		mustApply(tb, f, idx, cmd)
	}
	next(Command{Op: OpPolicy, Now: t0, Policy: &PolicyCmd{Filename: "p.hcl", Source: metaPolicy, By: "test"}})
	for name, key := range metaKeys {
		next(Command{Op: OpSegmentKey, Now: t0, SegmentKey: &SegmentKeyCmd{Name: name, Segment: "web", PublicKey: key}})
	}
	c, err := New(Options{
		Name: "srv1", Domain: testDomain, DataDir: filepath.Join(tb.TempDir(), "srv1"),
		AdvertiseAddr: netip.MustParseAddr("127.0.0.1"), Server: true, Logger: slog.New(slog.DiscardHandler),
		Now: func() time.Time { return t0 },
	})
	if err != nil {
		tb.Fatal(err)
	}
	c.fsm.publish(f.State())
	return c
}

// resetGossip gives c a fresh gossip view in which every registered node
// is alive with an ordinary meta.
func resetGossip(c *Cluster) *gossip {
	g := &gossip{peers: map[string]*gossipPeer{}, refuse: c.refuseGossip}
	g.setMeta(nodeMeta{Role: RoleServer})
	for _, n := range c.State().SortedNodes() {
		g.NotifyJoin(&memberlist.Node{Name: n.Name, Addr: net.ParseIP(n.Addr), Port: uint16(n.GossipPort), Meta: []byte(`{"r":"` + string(n.Role) + `","i":1}`)})
	}
	c.mu.Lock()
	c.gossip = g
	c.mu.Unlock()
	return g
}

// plans compiles every registered host's plan from st, with its policy
// document doc (parsed once: parsing is what costs).
func plans(tb testing.TB, doc *policy.Document, st *State) map[string]*policy.Plan {
	tb.Helper()
	hosts := st.PolicyHosts()
	out := map[string]*policy.Plan{}
	for _, h := range hosts {
		p, err := policy.Compile(doc, hosts, h.Name, st.Policy.Version)
		if err != nil {
			tb.Fatal(err)
		}
		out[h.Name] = p
	}
	return out
}

var cmpNetip = cmp.Options{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
	cmpopts.EquateEmpty(),
}

// metaNames are the node names FuzzNodeMeta announces as: the registered
// ones, the removed one, and (last) the fuzz input's.
var metaNames = []string{"srv1", "web", "spent", "old", ""}

// FuzzNodeMeta delivers random gossip about random or registered nodes
// (name, address, port and, above all, the Meta bytes) through the
// memberlist delegate's event path (NotifyAlive, then NotifyJoin,
// NotifyUpdate or NotifyLeave) and reads every view built from gossip.
// Nothing panics; gossip never changes the replicated state, the hosts the
// policy compiler sees, nor any host's plan: keys and overlay addresses
// come from the registry alone; a registered node keeps its registry
// address and role in Members; a removed node is not listed.
func FuzzNodeMeta(f *testing.F) {
	for _, s := range []struct {
		who  uint8
		name string
		addr []byte
		port uint16
		meta string
	}{
		{0, "", []byte{127, 0, 0, 1}, 7946, `{"r":"server","i":12,"l":"srv1","p":1}`},
		{1, "", []byte{10, 9, 9, 9}, 7946, `{"r":"client","i":3,"public_key":"ZXZpbC1wdWJsaWMta2V5LWV2aWwtcHVibGljLWtleSE=","addr":"10.90.1.99","segments":{"web":{"public_key":"ZXZpbC1wdWJsaWMta2V5LWV2aWwtcHVibGljLWtleSE=","addr":"10.90.1.99"}}}`},
		{4, "evil", []byte{10, 9, 9, 9}, 51821, `{"r":"server","i":99,"public_key":"ZXZpbC1wdWJsaWMta2V5LWV2aWwtcHVibGljLWtleSE=","tags":["t"],"services":[{"name":"db","port":5432}]}`},
		{5, "", []byte{127, 0, 0, 2}, 1, `{"r":"server","f":"a,,b,","l":"evil"}`},
		{6, "", nil, 0, `{"r":"client","i":18446744073709551615}`},
		{7, "", []byte{1, 2, 3}, 65535, `garbage`},
		{8, "srv1", []byte{127, 0, 0, 1}, 7946, `{"r":["x"],"i":"1","p":-1}`},
		{3, "", []byte{127, 0, 0, 9}, 7946, `{"r":"client","i":1}`},
		{9, "old", []byte{127, 0, 0, 9}, 7946, `{"r":"client","i":1}`},
		{4, "\x00\xff", net.ParseIP("fd00::1"), 7946, ``},
		{4, "new-node", []byte{127, 0, 0, 5}, 7946, `{"r":"server","i":1,"l":"new-node"}{"r":"client"}`},
	} {
		f.Add(s.who, s.name, s.addr, s.port, []byte(s.meta))
	}
	c := metaCluster(f)
	before := c.State()
	hosts := before.PolicyHosts()
	doc, err := before.Document()
	if err != nil || doc == nil {
		f.Fatalf("policy: %v, %v", doc, err)
	}
	wantPlans := plans(f, doc, before)
	f.Fuzz(func(t *testing.T, who uint8, name string, addr []byte, port uint16, meta []byte) {
		g := resetGossip(c)
		if n := metaNames[int(who)%len(metaNames)]; n != "" {
			name = n
		}
		node := &memberlist.Node{Name: name, Addr: net.IP(addr), Port: port, Meta: meta}
		switch ev := who / uint8(len(metaNames)) % 3; {
		case ev == 2:
			g.NotifyLeave(node)
		case g.NotifyAlive(node) != nil: // memberlist drops what NotifyAlive refuses
		case ev == 0:
			g.NotifyJoin(node)
		default:
			g.NotifyUpdate(node)
		}

		// Every reader of gossip.
		_ = g.view()
		members := c.Members()
		_ = c.Health()
		_ = c.Status()
		_ = c.HealthVersion()

		if c.State() != before {
			t.Fatal("gossip changed the replicated state")
		}
		if d := cmp.Diff(hosts, c.State().PolicyHosts(), cmpNetip); d != "" {
			t.Fatalf("gossip changed the hosts the policy sees (-before +after):\n%s", d)
		}
		if d := cmp.Diff(wantPlans, plans(t, doc, c.State()), cmpNetip); d != "" {
			t.Fatalf("gossip changed a plan (-before +after):\n%s", d)
		}
		for _, m := range members {
			if _, removed := before.Tombstones[m.Name]; removed {
				t.Fatalf("removed node %q is listed as a member (%s)", m.Name, m.Status)
			}
			n, registered := before.Nodes[m.Name]
			if !registered {
				continue
			}
			if m.Addr != n.Addr || m.Role != n.Role || m.GossipPort != n.GossipPort || m.RPCPort != n.RPCPort || !slices.Equal(m.Tags, n.Tags) {
				t.Fatalf("member %q is shown as %+v; its registry entry is %+v", m.Name, m, n)
			}
		}
	})
}
