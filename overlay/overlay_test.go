package overlay

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weft-mesh/weft/policy"
)

// rig is an Overlay over fakes, with its log captured.
type rig struct {
	wg    *FakeWireGuard
	links *FakeLinks
	fw    *FakeFirewall
	keys  KeyStore
	ov    *Overlay
	logs  *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{
		wg:    NewFakeWireGuard(),
		links: NewFakeLinks(),
		fw:    NewFakeFirewall(),
		keys:  KeyStore{Dir: filepath.Join(t.TempDir(), "keys")},
		logs:  &syncBuffer{},
	}
	r.ov = r.restart(t)
	return r
}

// restart builds a new Overlay over the same fakes and key directory, as
// an agent restart would.
func (r *rig) restart(t *testing.T) *Overlay {
	t.Helper()
	log := slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ov, err := New(Options{WireGuard: r.wg, Links: r.links, Firewall: r.fw, Keys: r.keys, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	return ov
}

func (r *rig) reset() {
	r.wg.Reset()
	r.links.Reset()
	r.fw.Reset()
}

type allCalls struct {
	WireGuard WireGuardCalls
	Links     LinksCalls
	Firewall  FirewallCalls
}

func (r *rig) calls() allCalls {
	return allCalls{r.wg.Calls(), r.links.Calls(), r.fw.Calls()}
}

// keyring names generated peer keys, so that tests read as names.
type keyring struct {
	keys  map[string]wgtypes.Key // name → public key
	names map[wgtypes.Key]string
}

func newKeyring(t *testing.T, names ...string) *keyring {
	t.Helper()
	kr := &keyring{keys: map[string]wgtypes.Key{}, names: map[wgtypes.Key]string{}}
	for _, n := range names {
		k, err := wgtypes.GeneratePrivateKey()
		if err != nil {
			t.Fatal(err)
		}
		kr.keys[n] = k.PublicKey()
		kr.names[k.PublicKey()] = n
	}
	return kr
}

func (kr *keyring) peer(name, ip string, port int) policy.Peer {
	return policy.Peer{
		Name:       name,
		PublicKey:  kr.keys[name].String(),
		Endpoint:   netip.AddrPortFrom(netip.MustParseAddr("192.0.2."+ip[strings.LastIndex(ip, ".")+1:]), uint16(port)),
		AllowedIPs: []netip.Prefix{netip.MustParsePrefix(ip + "/32")},
	}
}

// basePlan: this host is a member of db (peers b, c) and a guest of web
// (may reach web hosts d, e).
func basePlan(kr *keyring) *policy.Plan {
	return &policy.Plan{
		Self:          "a",
		PolicyVersion: 1,
		Segments: []policy.SegmentPlan{
			{
				Name: "db", Interface: "wf-db", Role: policy.Member,
				CIDR:       netip.MustParsePrefix("10.90.2.0/24"),
				Address:    netip.MustParsePrefix("10.90.2.1/24"),
				ListenPort: 51822,
				Peers:      []policy.Peer{kr.peer("b", "10.90.2.2", 51822), kr.peer("c", "10.90.2.3", 51822)},
			},
			{
				Name: "web", Interface: "wf-web", Role: policy.Guest,
				CIDR:       netip.MustParsePrefix("10.90.1.0/24"),
				Address:    netip.MustParsePrefix("10.90.1.9/32"),
				ListenPort: 51821,
				Peers:      []policy.Peer{kr.peer("d", "10.90.1.4", 51821), kr.peer("e", "10.90.1.5", 51821)},
			},
		},
		Firewall: []policy.FirewallRule{
			{Counter: "intra/db", Action: policy.Allow, Interface: "wf-db",
				Sources: []netip.Prefix{netip.MustParsePrefix("10.90.2.2/32"), netip.MustParsePrefix("10.90.2.3/32")}, Proto: "any"},
		},
	}
}

// clonePlan deep-copies a plan, so that "identical" never means "the
// same slices".
func clonePlan(p *policy.Plan) *policy.Plan {
	q := *p
	q.Segments = cloneSegments(p.Segments)
	q.Firewall = cloneRules(p.Firewall)
	return &q
}

func segment(p *policy.Plan, name string) *policy.SegmentPlan {
	for i := range p.Segments {
		if p.Segments[i].Name == name {
			return &p.Segments[i]
		}
	}
	panic("no segment " + name)
}

// describe renders recorded Configure calls for comparison, peers by name
// and never a private key.
func describe(kr *keyring, cs []ConfigureCall) []string {
	var out []string
	for _, c := range cs {
		var parts []string
		if c.Config.PrivateKey != nil {
			parts = append(parts, "private-key")
		}
		if c.Config.ListenPort != nil {
			parts = append(parts, fmt.Sprintf("port=%d", *c.Config.ListenPort))
		}
		if c.Config.ReplacePeers {
			parts = append(parts, "replace-peers")
		}
		for _, p := range c.Config.Peers {
			name := kr.names[p.PublicKey]
			s := "add " + name
			switch {
			case p.Remove:
				s = "remove " + name
			case p.UpdateOnly:
				s = "update " + name
			}
			if p.Endpoint != nil {
				s += " endpoint=" + p.Endpoint.String()
			}
			if p.ReplaceAllowedIPs {
				var ips []string
				for _, n := range p.AllowedIPs {
					ips = append(ips, n.String())
				}
				s += " allowed=" + strings.Join(ips, ",")
			}
			parts = append(parts, s)
		}
		out = append(out, c.Name+": "+strings.Join(parts, "; "))
	}
	return out
}

// deviceView is a device as a test compares it.
type deviceView struct {
	ListenPort int
	KeyMatches bool
	Peers      map[string]string // name → "endpoint allowed"
}

func viewDevice(t *testing.T, r *rig, kr *keyring, iface, segment string) deviceView {
	t.Helper()
	d, err := r.wg.Device(iface)
	if err != nil {
		t.Fatal(err)
	}
	priv, err := r.keys.Private(segment)
	if err != nil {
		t.Fatal(err)
	}
	v := deviceView{ListenPort: d.ListenPort, KeyMatches: d.PrivateKey == priv, Peers: map[string]string{}}
	for _, p := range d.Peers {
		var ips []string
		for _, n := range p.AllowedIPs {
			ips = append(ips, n.String())
		}
		v.Peers[kr.names[p.PublicKey]] = fmt.Sprintf("%v %s", p.Endpoint, strings.Join(ips, ","))
	}
	return v
}

func TestNewRequiresOptions(t *testing.T) {
	log := slog.New(slog.DiscardHandler)
	full := Options{WireGuard: NewFakeWireGuard(), Links: NewFakeLinks(), Firewall: NewFakeFirewall(), Keys: KeyStore{Dir: t.TempDir()}, Logger: log}
	for name, mutate := range map[string]func(*Options){
		"WireGuard": func(o *Options) { o.WireGuard = nil },
		"Links":     func(o *Options) { o.Links = nil },
		"Firewall":  func(o *Options) { o.Firewall = nil },
		"Keys.Dir":  func(o *Options) { o.Keys.Dir = "" },
		"Logger":    func(o *Options) { o.Logger = nil },
		"MTU":       func(o *Options) { o.MTU = -1 },
	} {
		o := full
		mutate(&o)
		if _, err := New(o); err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("without %s: err = %v", name, err)
		}
	}
	if _, err := New(full); err != nil {
		t.Errorf("full options: %v", err)
	}
}

func TestFirstApplyCreates(t *testing.T) {
	r := newRig(t)
	kr := newKeyring(t, "b", "c", "d", "e")
	p := basePlan(kr)
	if err := r.ov.Apply(p); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"wf-db", "wf-web"}, r.wg.Names()); diff != "" {
		t.Errorf("devices (-want +got):\n%s", diff)
	}
	if got := r.wg.MTU("wf-db"); got != DefaultMTU {
		t.Errorf("MTU = %d, want %d", got, DefaultMTU)
	}
	wantDB := deviceView{ListenPort: 51822, KeyMatches: true, Peers: map[string]string{
		"b": "192.0.2.2:51822 10.90.2.2/32", "c": "192.0.2.3:51822 10.90.2.3/32"}}
	if diff := cmp.Diff(wantDB, viewDevice(t, r, kr, "wf-db", "db")); diff != "" {
		t.Errorf("wf-db (-want +got):\n%s", diff)
	}
	wantWeb := deviceView{ListenPort: 51821, KeyMatches: true, Peers: map[string]string{
		"d": "192.0.2.4:51821 10.90.1.4/32", "e": "192.0.2.5:51821 10.90.1.5/32"}}
	if diff := cmp.Diff(wantWeb, viewDevice(t, r, kr, "wf-web", "web")); diff != "" {
		t.Errorf("wf-web (-want +got):\n%s", diff)
	}
	// A member's connected route covers its segment: no routes. A guest
	// gets one host route per peer.
	if got := r.links.Routes("wf-db"); len(got) != 0 {
		t.Errorf("member routes = %v, want none", got)
	}
	wantRoutes := []netip.Prefix{netip.MustParsePrefix("10.90.1.4/32"), netip.MustParsePrefix("10.90.1.5/32")}
	if diff := cmp.Diff(wantRoutes, r.links.Routes("wf-web"), cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("guest routes (-want +got):\n%s", diff)
	}
	for iface, addr := range map[string]string{"wf-db": "10.90.2.1/24", "wf-web": "10.90.1.9/32"} {
		if got := r.links.Address(iface); got != netip.MustParsePrefix(addr) {
			t.Errorf("%s address = %v, want %s", iface, got, addr)
		}
		if !r.links.IsUp(iface) {
			t.Errorf("%s not up", iface)
		}
	}
	rules, ifaces, present := r.fw.Ruleset()
	if !present || !rulesEqual(rules, p.Firewall) || !slices.Equal(ifaces, []string{"wf-db", "wf-web"}) {
		t.Errorf("firewall = %v %v %v, want the plan's rules on [wf-db wf-web]", present, rules, ifaces)
	}
	// The device got the key the key store holds, and it is 0600.
	pub, err := r.keys.Ensure("db")
	if err != nil {
		t.Fatal(err)
	}
	d, _ := r.wg.Device("wf-db")
	if d.PublicKey != pub {
		t.Error("wf-db's public key is not the key store's")
	}
}

func TestIdenticalApplyMakesNoCalls(t *testing.T) {
	r := newRig(t)
	kr := newKeyring(t, "b", "c", "d", "e")
	p := basePlan(kr)
	if err := r.ov.Apply(p); err != nil {
		t.Fatal(err)
	}
	r.reset()
	if err := r.ov.Apply(clonePlan(p)); err != nil {
		t.Fatal(err)
	}
	if got := r.calls(); got != (allCalls{}) {
		t.Errorf("second identical Apply made calls: %+v", got)
	}
}

// TestReconcile changes one thing at a time and checks that exactly the
// matching patch, and nothing else, reaches the host.
func TestReconcile(t *testing.T) {
	kr := newKeyring(t, "b", "c", "d", "e", "f")
	tests := []struct {
		name        string
		change      func(p *policy.Plan)
		wantConfigs []string
		wantCalls   allCalls
		check       func(t *testing.T, r *rig)
	}{
		{
			name: "peer added",
			change: func(p *policy.Plan) {
				s := segment(p, "db")
				s.Peers = append(s.Peers, kr.peer("f", "10.90.2.6", 51822))
			},
			wantConfigs: []string{"wf-db: add f endpoint=192.0.2.6:51822 allowed=10.90.2.6/32"},
			wantCalls:   allCalls{WireGuard: WireGuardCalls{Configure: 1}},
		},
		{
			name: "peer removed",
			change: func(p *policy.Plan) {
				s := segment(p, "db")
				s.Peers = s.Peers[:1]
			},
			wantConfigs: []string{"wf-db: remove c"},
			wantCalls:   allCalls{WireGuard: WireGuardCalls{Configure: 1}},
		},
		{
			name: "peer moved to another underlay address",
			change: func(p *policy.Plan) {
				segment(p, "db").Peers[0].Endpoint = netip.MustParseAddrPort("198.51.100.7:51822")
			},
			wantConfigs: []string{"wf-db: update b endpoint=198.51.100.7:51822"},
			wantCalls:   allCalls{WireGuard: WireGuardCalls{Configure: 1}},
		},
		{
			name: "peer key rotated",
			change: func(p *policy.Plan) {
				segment(p, "db").Peers[1].PublicKey = kr.keys["f"].String()
			},
			wantConfigs: []string{"wf-db: remove c; add f endpoint=192.0.2.3:51822 allowed=10.90.2.3/32"},
			wantCalls:   allCalls{WireGuard: WireGuardCalls{Configure: 1}},
		},
		{
			name: "listen port changed",
			change: func(p *policy.Plan) {
				segment(p, "db").ListenPort = 51900
			},
			wantConfigs: []string{"wf-db: port=51900"},
			wantCalls:   allCalls{WireGuard: WireGuardCalls{Configure: 1}},
		},
		{
			name: "address changed",
			change: func(p *policy.Plan) {
				segment(p, "db").Address = netip.MustParsePrefix("10.90.2.50/24")
			},
			wantCalls: allCalls{Links: LinksCalls{SetAddress: 1}},
			check: func(t *testing.T, r *rig) {
				if got := r.links.Address("wf-db"); got != netip.MustParsePrefix("10.90.2.50/24") {
					t.Errorf("address = %v", got)
				}
			},
		},
		{
			name: "guest may reach one more host",
			change: func(p *policy.Plan) {
				s := segment(p, "web")
				s.Peers = append(s.Peers, kr.peer("f", "10.90.1.6", 51821))
			},
			wantConfigs: []string{"wf-web: add f endpoint=192.0.2.6:51821 allowed=10.90.1.6/32"},
			wantCalls:   allCalls{WireGuard: WireGuardCalls{Configure: 1}, Links: LinksCalls{SetRoutes: 1}},
			check: func(t *testing.T, r *rig) {
				want := []netip.Prefix{netip.MustParsePrefix("10.90.1.4/32"), netip.MustParsePrefix("10.90.1.5/32"), netip.MustParsePrefix("10.90.1.6/32")}
				if got := r.links.Routes("wf-web"); !slices.Equal(got, want) {
					t.Errorf("routes = %v, want %v", got, want)
				}
			},
		},
		{
			name: "guest peer's address changed",
			change: func(p *policy.Plan) {
				segment(p, "web").Peers[0].AllowedIPs = []netip.Prefix{netip.MustParsePrefix("10.90.1.40/32")}
			},
			wantConfigs: []string{"wf-web: update d allowed=10.90.1.40/32"},
			wantCalls:   allCalls{WireGuard: WireGuardCalls{Configure: 1}, Links: LinksCalls{SetRoutes: 1}},
		},
		{
			name: "firewall rule changed",
			change: func(p *policy.Plan) {
				p.Firewall[0].Proto = "tcp"
				p.Firewall[0].Ports = []policy.PortRange{{Lo: 5432, Hi: 5432}}
			},
			wantCalls: allCalls{Firewall: FirewallCalls{Apply: 1}},
		},
		{
			name: "policy version alone changed",
			change: func(p *policy.Plan) {
				p.PolicyVersion++
			},
		},
		{
			name: "segment removed",
			change: func(p *policy.Plan) {
				p.Segments = p.Segments[:1]
			},
			wantCalls: allCalls{WireGuard: WireGuardCalls{Delete: 1}, Firewall: FirewallCalls{Apply: 1}},
			check: func(t *testing.T, r *rig) {
				if got := r.wg.Names(); !slices.Equal(got, []string{"wf-db"}) {
					t.Errorf("devices = %v", got)
				}
				if _, err := r.keys.Private("web"); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("web key still there: %v", err)
				}
				if _, err := r.keys.Private("db"); err != nil {
					t.Errorf("db key: %v", err)
				}
				if _, ifaces, _ := r.fw.Ruleset(); !slices.Equal(ifaces, []string{"wf-db"}) {
					t.Errorf("firewall ifaces = %v", ifaces)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRig(t)
			p := basePlan(kr)
			if err := r.ov.Apply(p); err != nil {
				t.Fatal(err)
			}
			r.reset()
			q := clonePlan(p)
			tt.change(q)
			if err := r.ov.Apply(q); err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.wantConfigs, describe(kr, r.wg.Configs())); diff != "" {
				t.Errorf("Configure calls (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantCalls, r.calls()); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
			if tt.check != nil {
				tt.check(t, r)
			}
			// The patched device is what a fresh create would have made.
			for _, sp := range q.Segments {
				want := map[string]string{}
				for _, p := range sp.Peers {
					want[kr.names[mustKey(t, p.PublicKey)]] = fmt.Sprintf("%v %s", p.Endpoint, p.AllowedIPs[0])
				}
				if diff := cmp.Diff(want, viewDevice(t, r, kr, sp.Interface, sp.Name).Peers); diff != "" {
					t.Errorf("%s peers (-want +got):\n%s", sp.Interface, diff)
				}
			}
			// And applying it again changes nothing.
			r.reset()
			if err := r.ov.Apply(clonePlan(q)); err != nil {
				t.Fatal(err)
			}
			if got := r.calls(); got != (allCalls{}) {
				t.Errorf("re-apply made calls: %+v", got)
			}
		})
	}
}

func mustKey(t *testing.T, s string) wgtypes.Key {
	t.Helper()
	k, err := wgtypes.ParseKey(s)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestRestartAdopts: a new Overlay (an agent restart) over interfaces that
// are already right reads them and changes nothing on WireGuard; drift
// made while it was down is corrected peer by peer; leftover wf-*
// interfaces not in the plan go, other interfaces stay.
func TestRestartAdopts(t *testing.T) {
	r := newRig(t)
	kr := newKeyring(t, "b", "c", "d", "e")
	p := basePlan(kr)
	if err := r.ov.Apply(p); err != nil {
		t.Fatal(err)
	}

	ov := r.restart(t)
	r.reset()
	if err := ov.Apply(clonePlan(p)); err != nil {
		t.Fatal(err)
	}
	got := r.calls()
	if got.WireGuard.Create != 0 || got.WireGuard.Configure != 0 || got.WireGuard.Delete != 0 {
		t.Errorf("restart touched WireGuard: %+v", got.WireGuard)
	}
	if got.WireGuard.Device != 2 {
		t.Errorf("restart read %d devices, want 2", got.WireGuard.Device)
	}
	r.reset()
	if err := ov.Apply(clonePlan(p)); err != nil {
		t.Fatal(err)
	}
	if got := r.calls(); got != (allCalls{}) {
		t.Errorf("Apply after adoption made calls: %+v", got)
	}

	// Drift while down: a peer vanished from wf-db, a stale interface
	// and a foreign one appeared.
	if err := r.wg.Configure("wf-db", wgtypes.Config{Peers: []wgtypes.PeerConfig{{PublicKey: kr.keys["c"], Remove: true}}}); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"wf-old", "wg0"} {
		if err := r.wg.Create(n, 1420); err != nil {
			t.Fatal(err)
		}
	}
	ov = r.restart(t)
	r.reset()
	if err := ov.Apply(clonePlan(p)); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"wf-db: add c endpoint=192.0.2.3:51822 allowed=10.90.2.3/32"}, describe(kr, r.wg.Configs())); diff != "" {
		t.Errorf("drift repair (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"wf-db", "wf-web", "wg0"}, r.wg.Names()); diff != "" {
		t.Errorf("devices (-want +got):\n%s", diff)
	}
}

func TestFailingSegmentDoesNotBlockOthers(t *testing.T) {
	r := newRig(t)
	kr := newKeyring(t, "b", "c", "d", "e")
	p := basePlan(kr)
	boom := errors.New("boom")
	r.wg.SetError("configure", "wf-db", boom)
	err := r.ov.Apply(p)
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), `overlay: segment "db": `) {
		t.Fatalf("err = %v, want boom wrapped for segment db", err)
	}
	if strings.Contains(err.Error(), `segment "web"`) {
		t.Errorf("web failed too: %v", err)
	}
	if !r.links.IsUp("wf-web") || len(viewDevice(t, r, kr, "wf-web", "web").Peers) != 2 {
		t.Error("web was not applied in full")
	}

	// The failure is retried, from what the device has; web is left alone.
	r.wg.SetError("configure", "wf-db", nil)
	r.reset()
	if err := r.ov.Apply(clonePlan(p)); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{
		"wf-db: private-key; port=51822; add b endpoint=192.0.2.2:51822 allowed=10.90.2.2/32; add c endpoint=192.0.2.3:51822 allowed=10.90.2.3/32",
	}, describe(kr, r.wg.Configs())); diff != "" {
		t.Errorf("retry (-want +got):\n%s", diff)
	}
	if !r.links.IsUp("wf-db") {
		t.Error("wf-db not up after the retry")
	}
	r.reset()
	if err := r.ov.Apply(clonePlan(p)); err != nil {
		t.Fatal(err)
	}
	if got := r.calls(); got != (allCalls{}) {
		t.Errorf("Apply after the retry made calls: %+v", got)
	}
}

func TestLinkErrorRetried(t *testing.T) {
	r := newRig(t)
	kr := newKeyring(t, "b", "c", "d", "e")
	p := basePlan(kr)
	r.links.SetError("routes", "wf-web", errors.New("no route"))
	if err := r.ov.Apply(p); err == nil || !strings.Contains(err.Error(), `overlay: segment "web": no route`) {
		t.Fatalf("err = %v", err)
	}
	r.links.SetError("routes", "wf-web", nil)
	r.reset()
	if err := r.ov.Apply(clonePlan(p)); err != nil {
		t.Fatal(err)
	}
	if got := r.links.Routes("wf-web"); len(got) != 2 {
		t.Errorf("routes after retry = %v", got)
	}
	if got := r.wg.Calls(); got.Configure != 0 || got.Create != 0 {
		t.Errorf("retry reconfigured a device that was right: %+v", got)
	}
}

// TestFirewallFailureBlocksNewInterfaces: a new interface never exists
// without the rules that cover it.
func TestFirewallFailureBlocksNewInterfaces(t *testing.T) {
	r := newRig(t)
	kr := newKeyring(t, "b", "c", "d", "e")
	p := basePlan(kr)
	r.fw.SetError(errors.New("nft says no"))
	err := r.ov.Apply(p)
	if err == nil || !strings.Contains(err.Error(), "overlay: firewall: nft says no") || !errors.Is(err, ErrFirewallNotApplied) {
		t.Fatalf("err = %v", err)
	}
	if got := r.wg.Names(); len(got) != 0 {
		t.Errorf("interfaces created without a firewall: %v", got)
	}
	r.fw.SetError(nil)
	if err := r.ov.Apply(clonePlan(p)); err != nil {
		t.Fatal(err)
	}
	if got := r.wg.Names(); len(got) != 2 {
		t.Errorf("interfaces after the firewall came back: %v", got)
	}
}

// TestDeleteFailureFailsClosed: an interface that could not be deleted
// stays in the firewall's list (so it hits the default deny) and is
// deleted, with its key, by the next Apply.
func TestDeleteFailureFailsClosed(t *testing.T) {
	r := newRig(t)
	kr := newKeyring(t, "b", "c", "d", "e")
	p := basePlan(kr)
	if err := r.ov.Apply(p); err != nil {
		t.Fatal(err)
	}
	q := clonePlan(p)
	q.Segments = q.Segments[:1]
	r.wg.SetError("delete", "wf-web", errors.New("busy"))
	if err := r.ov.Apply(q); err == nil || !strings.Contains(err.Error(), `overlay: segment "web": busy`) {
		t.Fatalf("err = %v", err)
	}
	if _, ifaces, _ := r.fw.Ruleset(); !slices.Equal(ifaces, []string{"wf-db", "wf-web"}) {
		t.Errorf("firewall ifaces = %v, want wf-web kept until deleted", ifaces)
	}
	if _, err := r.keys.Private("web"); err != nil {
		t.Errorf("key removed before its interface: %v", err)
	}
	r.wg.SetError("delete", "wf-web", nil)
	if err := r.ov.Apply(clonePlan(q)); err != nil {
		t.Fatal(err)
	}
	if got := r.wg.Names(); !slices.Equal(got, []string{"wf-db"}) {
		t.Errorf("devices = %v", got)
	}
	if _, err := r.keys.Private("web"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("web key: %v, want removed", err)
	}
	if _, ifaces, _ := r.fw.Ruleset(); !slices.Equal(ifaces, []string{"wf-db"}) {
		t.Errorf("firewall ifaces = %v", ifaces)
	}
}

func TestBadSegmentIsAnError(t *testing.T) {
	r := newRig(t)
	kr := newKeyring(t, "b", "c", "d", "e")
	p := basePlan(kr)
	segment(p, "db").Peers[0].PublicKey = "not-a-key"
	segment(p, "web").Interface = "eth0"
	err := r.ov.Apply(p)
	for _, want := range []string{`overlay: segment "db": peer "b": bad public key`, `overlay: segment "web": interface "eth0"`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("err = %v, want it to contain %s", err, want)
		}
	}
	if len(r.wg.Names()) != 0 {
		t.Errorf("devices = %v", r.wg.Names())
	}
}

func TestStatus(t *testing.T) {
	r := newRig(t)
	kr := newKeyring(t, "b", "c", "d", "e")
	p := basePlan(kr)
	if err := r.ov.Apply(p); err != nil {
		t.Fatal(err)
	}
	st, err := r.ov.Status()
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := r.keys.Ensure("db")
	want := SegmentStatus{
		Name: "db", Interface: "wf-db", Role: policy.Member,
		Address: netip.MustParsePrefix("10.90.2.1/24"), ListenPort: 51822, PublicKey: pub.String(),
		Peers: []PeerStatus{
			{Name: "b", PublicKey: kr.keys["b"].String(), Endpoint: "192.0.2.2:51822", AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.90.2.2/32")}},
			{Name: "c", PublicKey: kr.keys["c"].String(), Endpoint: "192.0.2.3:51822", AllowedIPs: []netip.Prefix{netip.MustParsePrefix("10.90.2.3/32")}},
		},
	}
	if len(st) != 2 {
		t.Fatalf("status has %d segments", len(st))
	}
	if diff := cmp.Diff(want, st[0], cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("status of db (-want +got):\n%s", diff)
	}
	if st[1].Role != policy.Guest || len(st[1].Peers) != 2 {
		t.Errorf("status of web = %+v", st[1])
	}
}

func TestCleanup(t *testing.T) {
	r := newRig(t)
	kr := newKeyring(t, "b", "c", "d", "e")
	if err := r.wg.Create("wf-stale", 1420); err != nil {
		t.Fatal(err)
	}
	if err := r.wg.Create("wg0", 1420); err != nil {
		t.Fatal(err)
	}
	if err := r.ov.Apply(basePlan(kr)); err != nil {
		t.Fatal(err)
	}
	if err := r.ov.Cleanup(); err != nil {
		t.Fatal(err)
	}
	if got := r.wg.Names(); !slices.Equal(got, []string{"wg0"}) {
		t.Errorf("devices after Cleanup = %v, want only the foreign wg0", got)
	}
	if _, _, present := r.fw.Ruleset(); present {
		t.Error("firewall table still present")
	}
	if _, err := r.keys.Private("db"); err != nil {
		t.Errorf("Cleanup removed a key: %v", err)
	}
	// A later Apply starts over.
	if err := r.ov.Apply(basePlan(kr)); err != nil {
		t.Fatal(err)
	}
	if got := r.wg.Names(); !slices.Equal(got, []string{"wf-db", "wf-web", "wg0"}) {
		t.Errorf("devices after re-Apply = %v", got)
	}
}

func TestKeyStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "keys")
	ks := KeyStore{Dir: dir}
	pub, err := ks.Ensure("db")
	if err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, "db.key"): 0o600} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s: mode %v, want %v", path, got, want)
		}
	}
	again, err := ks.Ensure("db")
	if err != nil || again != pub {
		t.Errorf("second Ensure = %v, %v; want the same key", again, err)
	}
	priv, err := ks.Private("db")
	if err != nil || priv.PublicKey() != pub {
		t.Errorf("Private does not match Ensure: %v", err)
	}
	other, err := ks.Ensure("web")
	if err != nil || other == pub {
		t.Errorf("segments share a key or: %v", err)
	}
	if err := ks.Remove("db"); err != nil {
		t.Fatal(err)
	}
	if err := ks.Remove("db"); err != nil {
		t.Errorf("second Remove: %v", err)
	}
	if _, err := ks.Private("db"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Private after Remove: %v", err)
	}
	for _, bad := range []string{"", ".", "..", "a/b", "../x"} {
		if _, err := ks.Ensure(bad); err == nil {
			t.Errorf("Ensure(%q) accepted", bad)
		}
	}
	// A key file others may read is refused, not used.
	if err := os.WriteFile(filepath.Join(dir, "open.key"), []byte(priv.String()+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(dir, "open.key"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ks.Private("open"); err == nil {
		t.Error("a 0644 key file was used")
	}
}

// TestKeysNeverLogged plants a private key and a malformed key file,
// makes things fail, and greps every log line and error for them.
func TestKeysNeverLogged(t *testing.T) {
	r := newRig(t)
	kr := newKeyring(t, "b", "c", "d", "e")
	planted, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(r.keys.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(r.keys.Dir, "db.key"), []byte(planted.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const junk = "c2VjcmV0LWJ1dC1ub3QtYS1rZXk=" // base64 of the wrong length
	if err := os.WriteFile(filepath.Join(r.keys.Dir, "web.key"), []byte(junk+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	var errs []string
	p := basePlan(kr)
	r.wg.SetError("configure", "wf-db", errors.New("device refused the config"))
	if err := r.ov.Apply(p); err != nil {
		errs = append(errs, err.Error())
	}
	r.wg.SetError("configure", "wf-db", nil)
	if err := r.ov.Apply(clonePlan(p)); err != nil {
		errs = append(errs, err.Error())
	}
	if _, err := r.ov.Status(); err != nil {
		errs = append(errs, err.Error())
	}
	if len(errs) == 0 || !strings.Contains(strings.Join(errs, "\n"), "web.key: not a WireGuard key") {
		t.Errorf("errors = %q, want the malformed web key reported", errs)
	}
	// The planted key was really used.
	used := false
	for _, c := range r.wg.Configs() {
		used = used || (c.Config.PrivateKey != nil && *c.Config.PrivateKey == planted)
	}
	if !used {
		t.Fatal("the planted key was never configured")
	}
	text := r.logs.String() + strings.Join(errs, "\n")
	if !strings.Contains(r.logs.String(), "segment=db") {
		t.Errorf("log has no Apply lines:\n%s", r.logs.String())
	}
	for _, secret := range []string{planted.String(), planted.String()[:20], hex.EncodeToString(planted[:]), junk, junk[:16]} {
		if strings.Contains(text, secret) {
			t.Errorf("a key (%q…) appears in the logs or errors:\n%s", secret[:6], text)
		}
	}
}
