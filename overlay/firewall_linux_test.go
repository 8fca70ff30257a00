package overlay

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
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

func TestDeniedOf(t *testing.T) {
	key := func(iface string, addr string) []byte {
		return append(ifname(iface), netip.MustParseAddr(addr).AsSlice()...)
	}
	for _, tt := range []struct {
		key  []byte
		want DeniedSource
		ok   bool
	}{
		{key("wf-db", "10.90.2.3"), DeniedSource{Interface: "wf-db", Addr: netip.MustParseAddr("10.90.2.3")}, true},
		{key("wf-a-long-name", "fd00::7"), DeniedSource{Interface: "wf-a-long-name", Addr: netip.MustParseAddr("fd00::7")}, true},
		{ifname("wf-db"), DeniedSource{}, false},
		{append(ifname("wf-db"), 1, 2, 3), DeniedSource{}, false},
	} {
		got, ok := deniedOf(tt.key)
		if got != tt.want || ok != tt.ok {
			t.Errorf("deniedOf(%x) = %v, %v; want %v, %v", tt.key, got, ok, tt.want, tt.ok)
		}
	}
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
		`iifname "wf-db" ip saddr { 10.90.2.3 } tcp dport { 22, 8000-8100 } counter name "rule_no-ssh-into-db" goto deny`,
		`iifname "wf-web" ip saddr { 10.90.1.0/24 } meta l4proto icmp counter name "intra_web" accept`,
		`counter name "default-deny" goto deny`,
		"type filter hook forward priority filter; policy accept;",
		"iifname @ifaces drop",
		"set denied4 {\n\t\ttype ifname . ipv4_addr\n\t\tsize 4096\n\t\tflags dynamic,timeout\n\t\ttimeout 10m\n\t}",
		"set denied6 {\n\t\ttype ifname . ipv6_addr\n\t\tsize 4096\n\t\tflags dynamic,timeout\n\t\ttimeout 10m\n\t}",
		"chain deny {\n\t\tupdate @denied4 { iifname . ip saddr counter }\n\t\tupdate @denied6 { iifname . ip6 saddr counter }\n\t\tdrop\n\t}",
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
	for line, n := range map[string]int{"ct state established,related accept": 1, "chain input": 1, "chain forward": 1, "chain deny": 1,
		"counter default-deny": 1, `counter name "default-deny" goto deny`: 1, "set denied4": 1, "set denied6": 1} {
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

// vethHost makes a host namespace whose "wf-x" link leads to a client
// namespace with the addresses 10.78.0.2-4 and fd78::2-3 on it, plus a
// plain link (10.79.0.1 ↔ 10.79.0.2) that weft must not filter.
func vethHost(t *testing.T) (host, client string) {
	t.Helper()
	host, client = newNetns(t, "h"), newNetns(t, "c")
	peerWeft, plainH, plainC := fmt.Sprintf("wfov%dw", os.Getpid()), fmt.Sprintf("wfov%dp", os.Getpid()), fmt.Sprintf("wfov%dq", os.Getpid())
	run(t, "ip", "link", "add", "wf-x", "netns", host, "type", "veth", "peer", "name", peerWeft, "netns", client)
	run(t, "ip", "link", "add", plainH, "netns", host, "type", "veth", "peer", "name", plainC, "netns", client)
	for _, c := range [][]string{
		{host, "10.78.0.1/24", "wf-x"}, {host, "fd78::1/64", "wf-x"}, {host, "10.79.0.1/24", plainH},
		{client, "10.78.0.2/24", peerWeft}, {client, "10.78.0.3/24", peerWeft}, {client, "10.78.0.4/24", peerWeft},
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
	return host, client
}

// TestFirewallRealPackets: over vethHost, only the allowed source reaches
// the allowed port; the listener never sees the others.
func TestFirewallRealPackets(t *testing.T) {
	requireNetns(t)
	host, client := vethHost(t)

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

// TestFirewallDeniedSources: packets dropped by the default deny and by a
// policy deny rule leave their source, interface and a packet count in
// the denied sets; allowed sources and traffic on other links leave
// nothing there. A new table starts the record afresh.
func TestFirewallDeniedSources(t *testing.T) {
	requireNetns(t)
	host, client := vethHost(t)
	fw := nsFirewall(t, host)
	if ds, err := fw.DeniedSources(); err != nil || len(ds) != 0 {
		t.Errorf("DeniedSources with no table = %v, %v", ds, err)
	}
	rules := []policy.FirewallRule{
		{Counter: "rule/not-four", Action: policy.Deny, Interface: "wf-x",
			Sources: pfx("10.78.0.4/32"), Proto: "tcp", Ports: []policy.PortRange{{Lo: 8080, Hi: 8080}}},
		{Counter: "rule/allowed", Action: policy.Allow, Interface: "wf-x",
			Sources: pfx("10.78.0.2/32", "10.78.0.4/32", "fd78::2/128"), Proto: "tcp", Ports: []policy.PortRange{{Lo: 8080, Hi: 8080}}},
	}
	if err := fw.Apply(rules, []string{"wf-x"}); err != nil {
		t.Fatal(err)
	}
	if ds, err := fw.DeniedSources(); err != nil || len(ds) != 0 {
		t.Errorf("DeniedSources of a new table = %v, %v", ds, err)
	}
	l := startListener(t, host, "8080")
	l.expect(t, "READY", 30*time.Second)

	for _, c := range []struct {
		to, from string
		ok       bool
	}{
		{"10.78.0.1:8080", "10.78.0.2", true},
		{"[fd78::1]:8080", "fd78::2", true},
		{"10.78.0.1:8080", "10.78.0.3", false}, // the default deny
		{"[fd78::1]:8080", "fd78::3", false},   // the default deny, IPv6
		{"10.78.0.1:8080", "10.78.0.4", false}, // a deny rule before the allow rule
		{"10.79.0.1:8080", "10.79.0.2", true},  // not a weft interface
	} {
		got := dial(t, client, c.to, c.from)
		if ok := strings.HasPrefix(got, "CONNECTED"); ok != c.ok {
			t.Errorf("%s → %s: %s, want connected=%v", c.from, c.to, got, c.ok)
		}
	}
	for _, never := range []string{"ACCEPT 8080 10.78.0.3:", "ACCEPT 8080 [fd78::3]:", "ACCEPT 8080 10.78.0.4:"} {
		if l.saw(never, 500*time.Millisecond) {
			t.Errorf("the listener saw a denied flow: %q", never)
		}
	}

	out := listTable(t, host)
	t.Logf("nft list table inet weft:\n%s", out)
	for _, want := range []string{
		`iifname "wf-x" ip saddr { 10.78.0.4 } tcp dport 8080 counter name "rule_not-four" goto deny`,
		`counter name "default-deny" goto deny`,
		"update @denied4 { iifname . ip saddr counter }",
		"update @denied6 { iifname . ip6 saddr counter }",
		`"wf-x" . 10.78.0.3 `,
		`"wf-x" . 10.78.0.4 `,
		`"wf-x" . fd78::3 `,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q", want)
		}
	}

	ds, err := fw.DeniedSources()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("denied sources: %v", ds)
	got := map[string]uint64{}
	for _, d := range ds {
		got[d.Interface+" "+d.Addr.String()] = d.Packets
	}
	for _, want := range []string{"wf-x 10.78.0.3", "wf-x fd78::3", "wf-x 10.78.0.4"} {
		if got[want] < 1 {
			t.Errorf("denied sources lack %q with a packet count: %v", want, ds)
		}
	}
	if len(got) != 3 {
		t.Errorf("denied sources = %v, want only the three denied ones (not 10.78.0.2, fd78::2, 10.79.0.2)", ds)
	}
	if !slices.IsSortedFunc(ds, func(a, b DeniedSource) int { return cmp.Compare(b.Packets, a.Packets) }) {
		t.Errorf("denied sources not sorted by packets: %v", ds)
	}
	cs, err := fw.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if cs["rule/not-four"].Packets < 1 || cs[DefaultDenyCounter].Packets < 2 {
		t.Errorf("counters = %v, want rule/not-four ≥ 1 and default-deny ≥ 2", cs)
	}

	// A new table: the counters carry over, the denied sets start empty.
	if err := fw.Apply(rules[1:], []string{"wf-x"}); err != nil {
		t.Fatal(err)
	}
	if ds, err := fw.DeniedSources(); err != nil || len(ds) != 0 {
		t.Errorf("DeniedSources after a re-apply = %v, %v; want none", ds, err)
	}

	// A full set records no new source, and the packet is dropped all
	// the same.
	var fill strings.Builder
	fmt.Fprintf(&fill, "add element inet %s %s {", TableName, DeniedSet4)
	for i := range DeniedSetSize {
		fmt.Fprintf(&fill, " \"wf-y\" . 10.1.%d.%d,", i/256, i%256)
	}
	fill.WriteString(" }\n")
	file := filepath.Join(t.TempDir(), "fill.nft")
	if err := os.WriteFile(file, []byte(fill.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	run(t, "ip", "netns", "exec", host, "nft", "-f", file)
	before, err := fw.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if got := dial(t, client, "10.78.0.1:8080", "10.78.0.3"); !strings.HasPrefix(got, "FAILED") {
		t.Errorf("10.78.0.3 → 10.78.0.1:8080 with the denied set full: %s, want FAILED", got)
	}
	if l.saw("ACCEPT 8080 10.78.0.3:", 500*time.Millisecond) {
		t.Error("the listener saw a denied flow while the denied set was full")
	}
	after, err := fw.Counters()
	if err != nil {
		t.Fatal(err)
	}
	if after[DefaultDenyCounter].Packets <= before[DefaultDenyCounter].Packets {
		t.Errorf("default-deny %d → %d with the denied set full: the drop was not reached", before[DefaultDenyCounter].Packets, after[DefaultDenyCounter].Packets)
	}
	ds, err = fw.DeniedSources()
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != DeniedSetSize || slices.ContainsFunc(ds, func(d DeniedSource) bool { return d.Addr == netip.MustParseAddr("10.78.0.3") }) {
		t.Errorf("full set: %d denied sources (want %d), 10.78.0.3 must not be among them", len(ds), DeniedSetSize)
	}
}
