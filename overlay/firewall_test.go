package overlay

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/weft-mesh/weft/policy"
)

func pfx(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

func rng(from, to string) addrRange {
	return addrRange{From: netip.MustParseAddr(from), To: netip.MustParseAddr(to)}
}

func TestBuildRuleset(t *testing.T) {
	addrCmp := cmp.Comparer(func(a, b netip.Addr) bool { return a == b })
	tests := []struct {
		name   string
		rules  []policy.FirewallRule
		ifaces []string
		want   *ruleset
	}{
		{
			name:   "no rules: only the default deny",
			ifaces: []string{"wf-web", "wf-db", "wf-db"},
			want: &ruleset{
				ifaces:   []string{"wf-db", "wf-web"},
				counters: []string{"default-deny"},
				names:    map[string]string{"default-deny": "default-deny"},
			},
		},
		{
			name: "tcp port, both families, icmp per family",
			rules: []policy.FirewallRule{
				{Counter: "rule/web-to-postgres", Action: policy.Allow, Interface: "wf-db",
					Sources: pfx("10.90.1.3/32", "fd00::3/128", "10.90.1.4/32"), Proto: "tcp",
					Ports: []policy.PortRange{{Lo: 5432, Hi: 5432}}},
				{Counter: "intra/db", Action: policy.Allow, Interface: "wf-db",
					Sources: pfx("10.90.2.0/24", "fd00::/120"), Proto: "icmp"},
			},
			ifaces: []string{"wf-db"},
			want: &ruleset{
				ifaces:   []string{"wf-db"},
				counters: []string{"default-deny", "intra_db", "rule_web-to-postgres"},
				names:    map[string]string{"default-deny": "default-deny", "intra_db": "intra/db", "rule_web-to-postgres": "rule/web-to-postgres"},
				input: []nftRule{
					{Iface: "wf-db", Sources: []addrRange{rng("10.90.1.3", "10.90.1.4")}, Proto: protoTCP,
						Ports: []policy.PortRange{{Lo: 5432, Hi: 5432}}, Counter: "rule_web-to-postgres", Accept: true},
					{Iface: "wf-db", IPv6: true, Sources: []addrRange{rng("fd00::3", "fd00::3")}, Proto: protoTCP,
						Ports: []policy.PortRange{{Lo: 5432, Hi: 5432}}, Counter: "rule_web-to-postgres", Accept: true},
					{Iface: "wf-db", Sources: []addrRange{rng("10.90.2.0", "10.90.2.255")}, Proto: protoICMP, Counter: "intra_db", Accept: true},
					{Iface: "wf-db", IPv6: true, Sources: []addrRange{rng("fd00::", "fd00::ff")}, Proto: protoICMPv6, Counter: "intra_db", Accept: true},
				},
			},
		},
		{
			name: "overlapping ports and sources merge; deny; no sources keeps only the counter",
			rules: []policy.FirewallRule{
				{Counter: "rule/no-ssh", Action: policy.Deny, Interface: "wf-db",
					Sources: pfx("10.0.0.0/24", "10.0.0.7/32", "10.0.1.0/24", "10.0.3.1/32"), Proto: "udp",
					Ports: []policy.PortRange{{Lo: 30, Hi: 40}, {Lo: 22, Hi: 22}, {Lo: 23, Hi: 25}, {Lo: 35, Hi: 50}}},
				{Counter: "rule/nobody", Action: policy.Allow, Interface: "wf-db", Proto: "any"},
			},
			ifaces: []string{"wf-db"},
			want: &ruleset{
				ifaces:   []string{"wf-db"},
				counters: []string{"default-deny", "rule_no-ssh", "rule_nobody"},
				names:    map[string]string{"default-deny": "default-deny", "rule_no-ssh": "rule/no-ssh", "rule_nobody": "rule/nobody"},
				input: []nftRule{
					{Iface: "wf-db", Sources: []addrRange{rng("10.0.0.0", "10.0.1.255"), rng("10.0.3.1", "10.0.3.1")}, Proto: protoUDP,
						Ports: []policy.PortRange{{Lo: 22, Hi: 25}, {Lo: 30, Hi: 50}}, Counter: "rule_no-ssh"},
				},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := buildRuleset(tt.rules, tt.ifaces)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(ruleset{}, nftRule{}, addrRange{}), addrCmp); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestBuildRulesetRejects(t *testing.T) {
	ok := policy.FirewallRule{Counter: "rule/x", Action: policy.Allow, Interface: "wf-db", Sources: pfx("10.0.0.1/32"), Proto: "tcp"}
	for _, tt := range []struct {
		name   string
		mutate func(*policy.FirewallRule)
		want   string
	}{
		{"ports with icmp", func(r *policy.FirewallRule) { r.Proto = "icmp"; r.Ports = []policy.PortRange{{Lo: 1, Hi: 2}} }, "ports need tcp or udp"},
		{"unknown proto", func(r *policy.FirewallRule) { r.Proto = "sctp" }, `unknown protocol "sctp"`},
		{"unknown action", func(r *policy.FirewallRule) { r.Action = "maybe" }, `unknown action "maybe"`},
		{"no interface", func(r *policy.FirewallRule) { r.Interface = "" }, "bad interface name"},
		{"no counter", func(r *policy.FirewallRule) { r.Counter = "" }, "no counter name"},
		{"reversed ports", func(r *policy.FirewallRule) { r.Ports = []policy.PortRange{{Lo: 9, Hi: 3}} }, "bad port range 9-3"},
		{"port zero", func(r *policy.FirewallRule) { r.Ports = []policy.PortRange{{Lo: 0, Hi: 3}} }, "bad port range 0-3"},
		{"invalid source", func(r *policy.FirewallRule) { r.Sources = []netip.Prefix{{}} }, "invalid source prefix"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := ok
			tt.mutate(&r)
			_, err := buildRuleset([]policy.FirewallRule{r}, []string{"wf-db"})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
	if _, err := buildRuleset(nil, []string{"a-name-longer-than-15"}); err == nil {
		t.Error("a too long interface name was accepted")
	}
}

func TestObjectName(t *testing.T) {
	taken := map[string]string{}
	for _, tt := range []struct{ in, want string }{
		{"default-deny", "default-deny"},
		{"rule/web-to-postgres", "rule_web-to-postgres"},
		{"rule_web-to-postgres", "rule_web-to-postgres_2"}, // collides with the one above
		{"intra/db", "intra_db"},
		{"9lives", "c_9lives"},
		{"/odd name!", "c_odd_name_"},
		{"", "c_"},
	} {
		got := objectName(tt.in, taken)
		taken[got] = tt.in
		if got != tt.want {
			t.Errorf("objectName(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	long1, long2 := strings.Repeat("x", 80), strings.Repeat("x", 79)+"y"
	a, b := objectName(long1, nil), objectName(long2, nil)
	if len(a) != 64 || len(b) != 64 || a == b || !strings.HasPrefix(a, strings.Repeat("x", 55)+"_") {
		t.Errorf("long names: %q, %q; want 64 bytes each, distinct", a, b)
	}
}

// TestFakeFirewallDenied: the fake reports the denied sources a test sets,
// most packets first, only while a table exists, and forgets them when a
// ruleset is applied, as the nftables table does.
func TestFakeFirewallDenied(t *testing.T) {
	f := NewFakeFirewall()
	ds := []DeniedSource{
		{Interface: "wf-db", Addr: netip.MustParseAddr("10.90.2.9"), Packets: 2},
		{Interface: "wf-db", Addr: netip.MustParseAddr("fd00::9"), Packets: 7},
		{Interface: "wf-web", Addr: netip.MustParseAddr("10.90.1.4"), Packets: 2},
		{Interface: "wf-db", Addr: netip.MustParseAddr("10.90.2.3"), Packets: 2},
	}
	f.SetDenied(ds)
	if got, err := f.DeniedSources(); err != nil || len(got) != 0 {
		t.Errorf("no table: %v, %v", got, err)
	}
	if err := f.Apply(nil, []string{"wf-db", "wf-web"}); err != nil {
		t.Fatal(err)
	}
	f.SetDenied(ds)
	got, err := f.DeniedSources()
	if err != nil {
		t.Fatal(err)
	}
	want := []DeniedSource{ds[1], ds[3], ds[0], ds[2]}
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
	if err := f.Apply(nil, []string{"wf-db"}); err != nil {
		t.Fatal(err)
	}
	if got, _ := f.DeniedSources(); len(got) != 0 {
		t.Errorf("after a new Apply: %v", got)
	}
	if n := f.Calls().DeniedSources; n != 3 {
		t.Errorf("%d DeniedSources calls counted, want 3", n)
	}
}
