package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/weft-mesh/weft/client"
	"github.com/weft-mesh/weft/cluster"
	"github.com/weft-mesh/weft/config"
	"github.com/weft-mesh/weft/overlay"
	"github.com/weft-mesh/weft/policy"
)

func TestRuleFlows(t *testing.T) {
	plan := &policy.Plan{
		Segments: []policy.SegmentPlan{{Name: "db", Interface: "wf-db"}, {Name: "web", Interface: "wf-web"}},
		Firewall: []policy.FirewallRule{
			{Counter: "rule/no-ssh", Action: policy.Deny, Interface: "wf-web"},
			{Counter: "rule/no-ssh", Action: policy.Deny, Interface: "wf-db"},
			{Counter: "rule/web-to-db", Action: policy.Allow, Interface: "wf-db"},
			{Counter: "rule/web-to-db", Action: policy.Allow, Interface: "wf-db"}, // the IPv6 half
			{Counter: "intra/web", Action: policy.Allow, Interface: "wf-web"},
		},
	}
	counters := map[string]overlay.Counter{
		"rule/no-ssh":              {Packets: 3, Bytes: 180},
		"rule/web-to-db":           {Packets: 7, Bytes: 420},
		overlay.DefaultDenyCounter: {Packets: 11, Bytes: 660},
		"rule/gone":                {Packets: 1, Bytes: 60}, // not in the plan: not listed
	}
	want := []client.RuleFlow{
		{Counter: "rule/no-ssh", Rule: "no-ssh", Action: "deny", Segments: []string{"db", "web"}, Interfaces: []string{"wf-db", "wf-web"}, Packets: 3, Bytes: 180},
		{Counter: "rule/web-to-db", Rule: "web-to-db", Action: "allow", Segments: []string{"db"}, Interfaces: []string{"wf-db"}, Packets: 7, Bytes: 420},
		{Counter: "intra/web", Rule: "", Action: "allow", Segments: []string{"web"}, Interfaces: []string{"wf-web"}},
		{Counter: "default-deny", Action: "deny", Segments: []string{"db", "web"}, Interfaces: []string{"wf-db", "wf-web"}, Packets: 11, Bytes: 660},
	}
	if diff := cmp.Diff(want, ruleFlows(plan, counters)); diff != "" {
		t.Errorf("ruleFlows (-want +got):\n%s", diff)
	}
	if got := ruleFlows(nil, counters); got == nil || len(got) != 0 {
		t.Errorf("ruleFlows(no plan) = %#v, want an empty list", got)
	}
}

func TestPeerIndex(t *testing.T) {
	plan := &policy.Plan{Segments: []policy.SegmentPlan{{Name: "db", Interface: "wf-db"}, {Name: "web", Interface: "wf-web"}}}
	st := &cluster.State{Nodes: map[string]*cluster.Node{
		"db1":  {Name: "db1", Segments: map[string]cluster.NodeSegment{"db": {Addr: "10.90.2.1"}}},
		"web1": {Name: "web1", Segments: map[string]cluster.NodeSegment{"db": {Addr: "10.90.2.2"}, "web": {Addr: "10.90.1.2"}}},
		"web2": {Name: "web2", Segments: map[string]cluster.NodeSegment{"web": {Addr: "10.90.2.2"}, "db": {}}}, // overlapping CIDRs
	}}
	p := newPeerIndex(plan, st)
	for _, tt := range []struct {
		iface, addr, peer, seg string
	}{
		{"wf-db", "10.90.2.1", "db1", "db"},
		{"wf-db", "10.90.2.2", "web1", "db"},
		{"wf-web", "10.90.2.2", "web2", "web"},
		{"wf-web", "10.90.1.2", "web1", "web"},
		{"wf-web", "10.90.2.1", "", "web"},  // db1's address, but not in web
		{"wf-db", "10.90.2.99", "", "db"},   // nobody's
		{"wf-gone", "10.90.2.1", "db1", ""}, // no segment: the only node with it
		{"wf-gone", "10.90.2.2", "", ""},    // no segment, two nodes: nobody
		{"wf-db", "::ffff:10.90.2.1", "db1", "db"},
	} {
		peer, seg := p.lookup(tt.iface, netip.MustParseAddr(tt.addr))
		if peer != tt.peer || seg != tt.seg {
			t.Errorf("lookup(%s, %s) = %q, %q; want %q, %q", tt.iface, tt.addr, peer, seg, tt.peer, tt.seg)
		}
	}
	if peer, seg := newPeerIndex(nil, nil).lookup("wf-db", netip.MustParseAddr("10.90.2.1")); peer != "" || seg != "" {
		t.Errorf("lookup with no plan and no state = %q, %q", peer, seg)
	}
}

// logRecords decodes JSON log lines.
func logRecords(t *testing.T, b *bytes.Buffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		delete(m, "time")
		delete(m, "level")
		out = append(out, m)
	}
	b.Reset()
	return out
}

func TestDeniedLog(t *testing.T) {
	var srcs []overlay.DeniedSource
	var readErr error
	var buf bytes.Buffer
	l := &deniedLog{
		read: func() ([]overlay.DeniedSource, error) { return srcs, readErr },
		names: func() peerIndex {
			return peerIndex{
				segOf: map[string]string{"wf-db": "db"},
				nodes: map[string]map[netip.Addr]string{"db": {netip.MustParseAddr("10.90.2.1"): "db1"}},
			}
		},
		log: slog.New(slog.NewJSONHandler(&buf, nil)),
	}
	src := func(iface, addr string, packets uint64) overlay.DeniedSource {
		return overlay.DeniedSource{Interface: iface, Addr: netip.MustParseAddr(addr), Packets: packets}
	}
	line := func(peer, addr, iface string, packets float64) map[string]any {
		return map[string]any{"msg": "denied traffic", "peer": peer, "addr": addr, "iface": iface, "packets": packets}
	}

	// The first read is the baseline.
	srcs = []overlay.DeniedSource{src("wf-db", "10.90.2.1", 5)}
	l.tick()
	if got := logRecords(t, &buf); len(got) != 0 {
		t.Errorf("baseline logged %v", got)
	}

	// Growth since the last read, most first; an unchanged source says
	// nothing.
	srcs = []overlay.DeniedSource{src("wf-db", "10.90.2.1", 8), src("wf-db", "10.90.2.7", 4), src("wf-db", "fd00::9", 1)}
	l.tick()
	want := []map[string]any{
		line("", "10.90.2.7", "wf-db", 4),
		line("db1", "10.90.2.1", "wf-db", 3),
		line("", "fd00::9", "wf-db", 1),
	}
	if diff := cmp.Diff(want, logRecords(t, &buf)); diff != "" {
		t.Errorf("growth (-want +got):\n%s", diff)
	}
	l.tick()
	if got := logRecords(t, &buf); len(got) != 0 {
		t.Errorf("no growth logged %v", got)
	}

	// A table replaced: fewer packets than before are all new.
	srcs = []overlay.DeniedSource{src("wf-db", "10.90.2.1", 2)}
	l.tick()
	if diff := cmp.Diff([]map[string]any{line("db1", "10.90.2.1", "wf-db", 2)}, logRecords(t, &buf)); diff != "" {
		t.Errorf("after a reset (-want +got):\n%s", diff)
	}

	// A burst: ten lines, then one for the rest.
	srcs = nil
	for i := range 25 {
		srcs = append(srcs, src("wf-db", fmt.Sprintf("10.90.3.%d", i+1), uint64(100+i)))
	}
	l.tick()
	got := logRecords(t, &buf)
	if len(got) != maxDeniedLogLines+1 {
		t.Fatalf("a burst of 25 sources logged %d lines, want %d: %v", len(got), maxDeniedLogLines+1, got)
	}
	if diff := cmp.Diff(line("", "10.90.3.25", "wf-db", 124), got[0]); diff != "" {
		t.Errorf("first line of the burst (-want +got):\n%s", diff)
	}
	var rest float64
	for i := range 15 {
		rest += float64(100 + i)
	}
	summary := map[string]any{"msg": "denied traffic: and more sources", "sources": float64(15), "packets": rest}
	if diff := cmp.Diff(summary, got[maxDeniedLogLines]); diff != "" {
		t.Errorf("summary line (-want +got):\n%s", diff)
	}

	// A failing read is said once, until it works again.
	readErr = errors.New("netlink: no")
	l.tick()
	l.tick()
	if got := logRecords(t, &buf); len(got) != 1 || got[0]["err"] != "netlink: no" {
		t.Errorf("failing reads logged %v, want one line", got)
	}
	readErr = nil
	l.tick()
	readErr = errors.New("netlink: no")
	l.tick()
	if got := logRecords(t, &buf); len(got) != 1 {
		t.Errorf("a new failure logged %v, want one line", got)
	}
}

// flowsRuntime is a dev agent's configuration with ports of its own,
// tagged "t"; a client joins the server at join with token.
func flowsRuntime(t *testing.T, name, join, token string) config.Runtime {
	t.Helper()
	dir, err := os.MkdirTemp("", "wff")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	rt := config.Dev(dir)
	p := freePorts(t, 3)
	rt.Ports = config.Ports{Gossip: p[0], RPC: p[1], Raft: p[2]}
	rt.NodeName, rt.Tags = name, []string{"t"}
	rt.DNS.Listen = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}
	if join != "" {
		rt.Server, rt.Bootstrap = false, false
		rt.Join = config.Join{Token: token, Addresses: []string{join}}
	}
	return rt
}

// TestFlowsAPI: GET /v1/flows reports the counters of the applied plan's
// rules (over fake backends) and the top denied sources, named from the
// registry.
func TestFlowsAPI(t *testing.T) {
	rt := flowsRuntime(t, "dev", "", "")
	b := fakeBackends()
	fw := b.Firewall.(*overlay.FakeFirewall)
	c, _, _ := runAgent(t, rt, b)
	ctx := context.Background()

	if f, err := c.Flows(ctx); err != nil || len(f.Rules) != 0 || len(f.Denied) != 0 || f.Rules == nil || f.Denied == nil {
		t.Fatalf("flows before a policy = %+v, %v; want empty lists", f, err)
	}
	tok, err := c.CreateToken(ctx, client.TokenRequest{TTL: "10m", Uses: 1})
	if err != nil {
		t.Fatal(err)
	}
	runAgent(t, flowsRuntime(t, "c1", fmt.Sprintf("127.0.0.1:%d", rt.Ports.RPC), tok.Token), fakeBackends())
	src := `segment "s" {
  cidr    = "10.90.7.0/24"
  port    = 51899
  members = ["tag:t"]
}

rule "no-ssh" {
  action = "deny"
  from   = ["segment:s"]
  to     = ["segment:s"]
  ports  = ["tcp/22"]
}

rule "web" {
  action = "allow"
  from   = ["segment:s"]
  to     = ["tag:t"]
  ports  = ["tcp/8080"]
}
`
	if _, err := c.ApplyPolicy(ctx, client.PolicyRequest{Filename: "p.hcl", Source: src, By: "test"}); err != nil {
		t.Fatal(err)
	}
	// Both hosts registered their keys: dev's plan has c1 as a peer, and
	// its rules (no-ssh, the intra allow, web) c1's address.
	var c1Addr string
	waitFor(t, 20*time.Second, func() (bool, string) {
		segs, err := c.Segments(ctx)
		if err != nil || len(segs) != 1 || len(segs[0].Peers) != 1 || len(segs[0].Peers[0].AllowedIPs) != 1 {
			return false, fmt.Sprint(segs, err)
		}
		c1Addr = strings.TrimSuffix(segs[0].Peers[0].AllowedIPs[0], "/32")
		f, err := c.Flows(ctx)
		return err == nil && len(f.Rules) == 4, fmt.Sprintf("flows %+v, %v", f, err)
	})
	fw.SetCounter("rule/no-ssh", overlay.Counter{Packets: 4, Bytes: 240})
	fw.SetCounter("rule/web", overlay.Counter{Packets: 6, Bytes: 360})
	fw.SetCounter(overlay.DefaultDenyCounter, overlay.Counter{Packets: 9, Bytes: 540})
	denied := []overlay.DeniedSource{
		{Interface: "wf-s", Addr: netip.MustParseAddr(c1Addr), Packets: 500},
		{Interface: "wf-s", Addr: netip.MustParseAddr("10.90.7.200"), Packets: 400},
		{Interface: "wf-old", Addr: netip.MustParseAddr(c1Addr), Packets: 300},
	}
	for i := range 25 {
		denied = append(denied, overlay.DeniedSource{Interface: "wf-s", Addr: netip.MustParseAddr(fmt.Sprintf("10.90.7.%d", 100+i)), Packets: uint64(10 + i)})
	}
	fw.SetDenied(denied)

	f, err := c.Flows(ctx)
	if err != nil {
		t.Fatal(err)
	}
	wantRules := []client.RuleFlow{
		{Counter: "rule/no-ssh", Rule: "no-ssh", Action: "deny", Segments: []string{"s"}, Interfaces: []string{"wf-s"}, Packets: 4, Bytes: 240},
		{Counter: "intra/s", Action: "allow", Segments: []string{"s"}, Interfaces: []string{"wf-s"}},
		{Counter: "rule/web", Rule: "web", Action: "allow", Segments: []string{"s"}, Interfaces: []string{"wf-s"}, Packets: 6, Bytes: 360},
		{Counter: "default-deny", Action: "deny", Segments: []string{"s"}, Interfaces: []string{"wf-s"}, Packets: 9, Bytes: 540},
	}
	if diff := cmp.Diff(wantRules, f.Rules); diff != "" {
		t.Errorf("rules (-want +got):\n%s", diff)
	}
	if len(f.Denied) != maxDeniedFlows {
		t.Errorf("%d denied sources, want the top %d", len(f.Denied), maxDeniedFlows)
	}
	wantTop := []client.DeniedFlow{
		{Peer: "c1", Addr: c1Addr, Segment: "s", Interface: "wf-s", Packets: 500},
		{Peer: "", Addr: "10.90.7.200", Segment: "s", Interface: "wf-s", Packets: 400},
		{Peer: "c1", Addr: c1Addr, Segment: "", Interface: "wf-old", Packets: 300},
		{Peer: "", Addr: "10.90.7.124", Segment: "s", Interface: "wf-s", Packets: 34},
	}
	if diff := cmp.Diff(wantTop, f.Denied[:min(len(f.Denied), len(wantTop))]); diff != "" {
		t.Errorf("top denied sources (-want +got):\n%s", diff)
	}
	if last := f.Denied[len(f.Denied)-1]; last.Packets != 18 {
		t.Errorf("the last of the top %d has %d packets, want 18", maxDeniedFlows, last.Packets)
	}
}

// TestLogDenied: the agent's denied-traffic loop logs a source whose count
// grew, named from the registry, and stops with its context.
func TestLogDenied(t *testing.T) {
	dir := t.TempDir()
	rt := config.Dev(dir)
	rt.NodeName = "dev"
	rt.LogFormat = "json"
	logs := &syncBuffer{}
	b := fakeBackends()
	a, err := New(Options{Runtime: rt, LogOutput: logs, Backends: b})
	if err != nil {
		t.Fatal(err)
	}
	fw := b.Firewall.(*overlay.FakeFirewall)
	if err := fw.Apply(nil, []string{"wf-s"}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		a.logDenied(ctx, 20*time.Millisecond)
	}()
	waitFor(t, 5*time.Second, func() (bool, string) {
		n := fw.Calls().DeniedSources
		return n > 0, fmt.Sprintf("%d reads", n) // the baseline is read
	})
	fw.SetDenied([]overlay.DeniedSource{{Interface: "wf-s", Addr: netip.MustParseAddr("10.90.7.9"), Packets: 3}})
	waitFor(t, 5*time.Second, func() (bool, string) {
		got := logs.String()
		return strings.Contains(got, `"msg":"denied traffic"`) && strings.Contains(got, `"peer":"","addr":"10.90.7.9","iface":"wf-s","packets":3`), got
	})
	cancel()
	wg.Wait()
	if n := strings.Count(logs.String(), `"msg":"denied traffic"`); n != 1 {
		t.Errorf("%d denied-traffic lines for one burst, want 1:\n%s", n, logs.String())
	}
}
