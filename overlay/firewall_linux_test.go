package overlay

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weft-mesh/weft/policy"
)

// nsFirewall returns the nftables Firewall of network namespace ns.
func nsFirewall(t *testing.T, ns string) Firewall {
	t.Helper()
	f, err := os.Open("/run/netns/" + ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return NewFirewall(FirewallOptions{NetNSFd: int(f.Fd())})
}

// mac is the link-layer address of a link in a namespace.
func mac(t *testing.T, ns, link string) string {
	t.Helper()
	f := strings.Fields(run(t, "ip", "-n", ns, "-o", "link", "show", "dev", link))
	i := slices.Index(f, "link/ether")
	if i < 0 || i+1 >= len(f) {
		t.Fatalf("no MAC address for %s in %v", link, f)
	}
	return f[i+1]
}

func listTable(t *testing.T, ns string) string {
	t.Helper()
	return run(t, "ip", "netns", "exec", ns, "nft", "list", "table", "inet", "weft")
}

// TestFirewallInNamespace applies rulesets in a fresh namespace and reads
// them back with nft(8).
func TestFirewallInNamespace(t *testing.T) {
	requireNetns(t)
	ns := newNetns(t, "fw")
	fw := nsFirewall(t, ns)

	if err := fw.Remove(); err != nil {
		t.Errorf("Remove with no table: %v", err)
	}
	if cs, err := fw.Counters(); err != nil || len(cs) != 0 {
		t.Errorf("Counters with no table = %v, %v", cs, err)
	}

	first := []policy.FirewallRule{
		// Deny rules first: the compiler orders them so (deny beats allow).
		{Counter: "rule/no-ssh-into-db", Action: policy.Deny, Interface: "wf-db",
			Sources: pfx("10.90.2.3/32"),
			Proto:   "tcp", Ports: []policy.PortRange{{Lo: 22, Hi: 22}, {Lo: 8000, Hi: 8100}}},
		{Counter: "rule/web-to-postgres", Action: policy.Allow, Interface: "wf-db",
			Sources: pfx("10.90.2.3/32", "10.90.2.7/32", "fd00::7/128"),
			Proto:   "tcp", Ports: []policy.PortRange{{Lo: 5432, Hi: 5432}}},
		{Counter: "intra/web", Action: policy.Allow, Interface: "wf-web",
			Sources: pfx("10.90.1.0/24"), Proto: "icmp"},
	}
	if err := fw.Apply(first, []string{"wf-web", "wf-db"}); err != nil {
		t.Fatal(err)
	}
	out := listTable(t, ns)
	t.Logf("nft list table inet weft:\n%s", out)
	for _, want := range []string{
		"counter default-deny {",
		"counter rule_web-to-postgres {",
		"counter rule_no-ssh-into-db {",
		"counter intra_web {",
		`elements = { "wf-db",`,
		"type filter hook input priority filter; policy accept;",
		"iifname != @ifaces accept",
		"ct state established,related accept",
		"ct state invalid drop",
		`iifname "wf-db" ip saddr { 10.90.2.3, 10.90.2.7 } tcp dport 5432 counter name "rule_web-to-postgres" accept`,
		`iifname "wf-db" ip6 saddr { fd00::7 } tcp dport 5432 counter name "rule_web-to-postgres" accept`,
		`iifname "wf-db" ip saddr { 10.90.2.3 } tcp dport { 22, 8000-8100 } counter name "rule_no-ssh-into-db" drop`,
		`iifname "wf-web" ip saddr { 10.90.1.0/24 } meta l4proto icmp counter name "intra_web" accept`,
		`counter name "default-deny" drop`,
		"type filter hook forward priority filter; policy accept;",
		"iifname @ifaces drop",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q", want)
		}
	}
	cs, err := fw.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := slices.Sorted(maps.Keys(cs)), []string{"default-deny", "intra/web", "rule/no-ssh-into-db", "rule/web-to-postgres"}; !slices.Equal(got, want) {
		t.Errorf("counters = %v, want %v", got, want)
	}

	// A different ruleset replaces the whole table.
	second := []policy.FirewallRule{
		{Counter: "rule/web-to-postgres", Action: policy.Allow, Interface: "wf-db",
			Sources: pfx("10.90.2.9/32"), Proto: "udp", Ports: []policy.PortRange{{Lo: 6000, Hi: 6010}}},
	}
	if err := fw.Apply(second, []string{"wf-db"}); err != nil {
		t.Fatal(err)
	}
	out = listTable(t, ns)
	for _, want := range []string{
		`iifname "wf-db" ip saddr { 10.90.2.9 } udp dport 6000-6010 counter name "rule_web-to-postgres" accept`,
		`elements = { "wf-db" }`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("second table lacks %q:\n%s", want, out)
		}
	}
	for _, gone := range []string{"no-ssh", "intra_web", "5432", "wf-web", "10.90.2.7"} {
		if strings.Contains(out, gone) {
			t.Errorf("second table still has %q:\n%s", gone, out)
		}
	}
	for line, n := range map[string]int{"ct state established,related accept": 1, "chain input": 1, "chain forward": 1, "counter default-deny": 1, `counter name "default-deny" drop`: 1} {
		if got := strings.Count(out, line); got != n {
			t.Errorf("%q appears %d times, want %d:\n%s", line, got, n, out)
		}
	}
	if out := run(t, "ip", "netns", "exec", ns, "nft", "list", "tables"); strings.Count(out, "table inet weft") != 1 {
		t.Errorf("tables: %s", out)
	}

	if err := fw.Remove(); err != nil {
		t.Fatal(err)
	}
	if out, err := tryRun("ip", "netns", "exec", ns, "nft", "list", "table", "inet", "weft"); err == nil {
		t.Errorf("table still there after Remove:\n%s", out)
	}
	if err := fw.Remove(); err != nil {
		t.Errorf("second Remove: %v", err)
	}
}

// TestFirewallRealPackets: a host namespace whose "wf-x" link leads to a
// client namespace with an allowed and a not-allowed source address (IPv4
// and IPv6), plus a plain link that weft must not filter. Only the allowed
// source reaches the allowed port; the listener never sees the others.
func TestFirewallRealPackets(t *testing.T) {
	requireNetns(t)
	host, client := newNetns(t, "h"), newNetns(t, "c")
	peerWeft, plainH, plainC := fmt.Sprintf("wfov%dw", os.Getpid()), fmt.Sprintf("wfov%dp", os.Getpid()), fmt.Sprintf("wfov%dq", os.Getpid())
	run(t, "ip", "link", "add", "wf-x", "netns", host, "type", "veth", "peer", "name", peerWeft, "netns", client)
	run(t, "ip", "link", "add", plainH, "netns", host, "type", "veth", "peer", "name", plainC, "netns", client)
	for _, c := range [][]string{
		{host, "10.78.0.1/24", "wf-x"}, {host, "fd78::1/64", "wf-x"}, {host, "10.79.0.1/24", plainH},
		{client, "10.78.0.2/24", peerWeft}, {client, "10.78.0.3/24", peerWeft},
		{client, "fd78::2/64", peerWeft}, {client, "fd78::3/64", peerWeft}, {client, "10.79.0.2/24", plainC},
	} {
		args := []string{"ip", "-n", c[0], "addr", "add", c[1], "dev", c[2]}
		if strings.Contains(c[1], ":") {
			args = append(args, "nodad")
		}
		run(t, args...)
	}
	for _, c := range [][]string{{host, "wf-x"}, {host, plainH}, {client, peerWeft}, {client, plainC}} {
		run(t, "ip", "-n", c[0], "link", "set", c[1], "up")
	}
	// Neighbour discovery is ICMPv6 that weft's table would drop on wf-x
	// (a WireGuard link has none: it is layer 3); veth needs it, so the
	// IPv6 neighbours are made permanent instead.
	macHost, macClient := mac(t, host, "wf-x"), mac(t, client, peerWeft)
	for _, a := range []string{"fd78::2", "fd78::3"} {
		run(t, "ip", "-n", host, "neigh", "replace", a, "lladdr", macClient, "dev", "wf-x", "nud", "permanent")
	}
	run(t, "ip", "-n", client, "neigh", "replace", "fd78::1", "lladdr", macHost, "dev", peerWeft, "nud", "permanent")

	fw := nsFirewall(t, host)
	rules := []policy.FirewallRule{{
		Counter: "rule/allowed", Action: policy.Allow, Interface: "wf-x",
		Sources: pfx("10.78.0.2/32", "fd78::2/128"), Proto: "tcp", Ports: []policy.PortRange{{Lo: 8080, Hi: 8080}},
	}}
	if err := fw.Apply(rules, []string{"wf-x"}); err != nil {
		t.Fatal(err)
	}
	l := startListener(t, host, "8080 8081")
	l.expect(t, "READY", 30*time.Second)

	for _, c := range []struct {
		to, from string
		ok       bool
	}{
		{"10.78.0.1:8080", "10.78.0.2", true},
		{"[fd78::1]:8080", "fd78::2", true},
		{"10.78.0.1:8080", "10.78.0.3", false}, // source not allowed
		{"[fd78::1]:8080", "fd78::3", false},
		{"10.78.0.1:8081", "10.78.0.2", false}, // port not allowed
		{"10.79.0.1:8081", "10.79.0.2", true},  // not a weft interface: untouched
	} {
		got := dial(t, client, c.to, c.from)
		if ok := strings.HasPrefix(got, "CONNECTED"); ok != c.ok {
			t.Errorf("%s → %s: %s, want connected=%v", c.from, c.to, got, c.ok)
		}
	}
	for _, never := range []string{"ACCEPT 8080 10.78.0.3:", "ACCEPT 8080 [fd78::3]:", "ACCEPT 8081 10.78.0.2:"} {
		if l.saw(never, 500*time.Millisecond) {
			t.Errorf("the listener saw a denied flow: %q", never)
		}
	}
	cs, err := fw.Counters()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("counters: %v", cs)
	if cs["rule/allowed"].Packets < 2 {
		t.Errorf("rule/allowed counted %d packets, want ≥ 2 (one SYN per family)", cs["rule/allowed"].Packets)
	}
	if cs[DefaultDenyCounter].Packets < 3 {
		t.Errorf("default-deny counted %d packets, want ≥ 3 (three refused SYNs)", cs[DefaultDenyCounter].Packets)
	}
}
