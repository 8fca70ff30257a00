package e2e

// Policy scenarios: segments, guests and rules enforced with real packets
// (what must arrive and what must not), a policy change, a host leaving,
// every server down, and a bad policy refused. Each runs on its own bed, in
// parallel; the probing machinery is in probe_test.go.

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// policyA: three segments; db members reach each other only where a rule
// says so; cross-segment rules on one port, a port range, a deny that
// takes one port of that range back, and icmp.
const policyA = `
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

rule "web-to-db" {
  action = "allow"
  from   = ["segment:web"]
  to     = ["segment:db"]
  ports  = ["tcp/5432"]
}

rule "replica-to-primary" {
  action = "allow"
  from   = ["node:db2"]
  to     = ["node:db1"]
  ports  = ["tcp/5432"]
}

rule "ops-to-web" {
  action = "allow"
  from   = ["segment:ops"]
  to     = ["segment:web"]
  ports  = ["tcp/8000-8100"]
}

rule "ops-not-8080" {
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
`

// gridA is what policyA allows, worked out by hand from policy/doc.go.
const gridA = `
from\to  s1   web1       web2       db1   db2   ops1
s1       .    8000,8100  8000,8100  icmp  icmp  *
web1     -    .          *          5432  5432  -
web2     -    *          .          5432  5432  -
db1      -    -          -          .     -     -
db2      -    -          -          5432  .     -
ops1     *    8000,8100  8000,8100  icmp  icmp  .
`

// policyB is policyA without web-to-db and with db pinging web.
var policyB = strings.Replace(policyA, `rule "web-to-db" {
  action = "allow"
  from   = ["segment:web"]
  to     = ["segment:db"]
  ports  = ["tcp/5432"]
}`, `rule "db-ping-web" {
  action = "allow"
  from   = ["segment:db"]
  to     = ["segment:web"]
  ports  = ["icmp"]
}`, 1)

const gridB = `
from\to  s1   web1       web2       db1   db2   ops1
s1       .    8000,8100  8000,8100  icmp  icmp  *
web1     -    .          *          -     -     -
web2     -    *          .          -     -     -
db1      -    icmp       icmp       .     -     -
db2      -    icmp       icmp       5432  .     -
ops1     *    8000,8100  8000,8100  icmp  icmp  .
`

var defsABC = map[string]segDef{
	"web": {netip.MustParsePrefix("10.90.1.0/24"), 51821},
	"db":  {netip.MustParsePrefix("10.90.2.0/24"), 51822},
	"ops": {netip.MustParsePrefix("10.90.3.0/24"), 51823},
}

// The tags of the hosts of these scenarios, and the segment each tag
// makes a host a member of.
var (
	hostTags = map[string][]string{
		"s1": {"ops"}, "ops1": {"ops"},
		"web1": {"web"}, "web2": {"web"},
		"db1": {"postgres"}, "db2": {"postgres"},
		"c1": {"app"}, "c2": {"app"},
	}
	tagSegment = map[string]string{"ops": "ops", "web": "web", "postgres": "db", "app": "app"}
)

// segOfHosts is the segment of defs each host is a member of, by its tags.
func segOfHosts(tags map[string][]string, hosts []*Host, defs map[string]segDef) map[string]string {
	m := map[string]string{}
	for _, h := range hosts {
		for _, tag := range tags[h.Name] {
			if _, ok := defs[tagSegment[tag]]; ok {
				m[h.Name] = tagSegment[tag]
			}
		}
	}
	return m
}

// formPolicyBed forms a cluster of the servers and clients, tagged as in
// hostTags, with a listener on every host.
func formPolicyBed(t *testing.T, b *Bed, servers, clients []string) map[string]*listener {
	t.Helper()
	formTaggedCluster(t, b.Select(servers...), b.Select(clients...), hostTags)
	return startListeners(t, b.Hosts())
}

// 1. Who reaches whom, on which port, through which segment: every ordered
// pair of six hosts, five TCP ports and icmp, against explain and against
// the matrix written out above.
func TestSegmentMatrix(t *testing.T) {
	t.Parallel()
	b := NewBed(t, "s1", "web1", "web2", "db1", "db2", "ops1")
	all := b.Hosts()
	s1, web1 := b.Host("s1"), b.Host("web1")
	ls := formPolicyBed(t, b, []string{"s1"}, []string{"web1", "web2", "db1", "db2", "ops1"})

	g := parseGrid(t, gridA)
	want := topology(g, segOfHosts(hostTags, all, defsABC), names(all))
	start := time.Now()
	v := applyPolicy(t, s1, "policy.hcl", policyA)
	snap := settle(t, s1, all, v, want, defsABC)
	Figure(t, "policy_first_apply_6hosts", time.Since(start).Seconds(), "s")

	checkIsolation(t, all, snap, want, defsABC)
	matrix{hosts: all, explain: s1, grid: g, snap: snap, listeners: ls}.check(t)

	// The table form of explain names the verdict and the deciding rule.
	for _, tc := range []struct{ from, to, port, prefix, rule string }{
		{"web1", "db1", "tcp/5432", "ALLOWED", "web-to-db"},
		{"ops1", "web2", "tcp/8080", "DENIED", "ops-not-8080"},
		{"db1", "db2", "icmp", "DENIED", ""},
	} {
		out, _, err := s1.CLI("policy", "explain", tc.from, tc.to, tc.port)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(out, tc.prefix+":") || !strings.Contains(out, tc.rule) {
			t.Errorf("explain %s %s %s: %q, want %s by %q", tc.from, tc.to, tc.port, out, tc.prefix, tc.rule)
		}
	}

	// wg(8), in web1's agent's mount namespace, sees the peers weft reports.
	for _, seg := range []string{"web", "db"} {
		out, err := web1.WG("show", "wf-"+seg, "peers")
		if err != nil {
			t.Fatal(err)
		}
		var wantKeys []string
		for _, p := range peersOf(snap, "web1", seg) {
			wantKeys = append(wantKeys, p.PublicKey)
		}
		slices.Sort(wantKeys)
		gotKeys := strings.Fields(out)
		slices.Sort(gotKeys)
		if diff := cmp.Diff(wantKeys, gotKeys); diff != "" {
			t.Errorf("web1: wg show wf-%s peers (-weft segments +wg):\n%s", seg, diff)
		}
	}
}

// 2. A changed policy: the time from `policy apply` returning until every
// host enforces it, and the new matrix.
func TestPolicyChange(t *testing.T) {
	t.Parallel()
	b := NewBed(t, "s1", "web1", "db1", "db2")
	all := b.Hosts()
	s1, web1, db1 := b.Host("s1"), b.Host("web1"), b.Host("db1")
	ls := formPolicyBed(t, b, []string{"s1"}, []string{"web1", "db1", "db2"})

	gA, gB := parseGrid(t, gridA), parseGrid(t, gridB)
	v1 := applyPolicy(t, s1, "a.hcl", policyA)
	snapA := settle(t, s1, all, v1, topology(gA, segOfHosts(hostTags, all, defsABC), names(all)), defsABC)

	// The two flows whose verdict the change flips, as they are before it.
	dbAddr, webAddr := snapA.addr("db1", "db"), snapA.addr("web1", "web")
	flips := []probe{
		{from: web1, to: db1, seg: "db", addr: dbAddr, spec: "tcp/5432", want: true},
		{from: db1, to: web1, seg: "web", addr: webAddr, spec: "icmp", want: false},
	}
	Eventually(t, probeRetryFor, func() (bool, string) {
		return runProbes(t, flips[:1], probeTimeout)[0], "before the change, failed: " + flips[0].String()
	})
	if runProbes(t, flips[1:], probeTimeout)[0] {
		t.Fatalf("before the change, succeeded: %s", flips[1])
	}

	v2 := applyPolicy(t, s1, "b.hcl", policyB)
	applied := time.Now()
	if v2 != v1+1 {
		t.Errorf("policy version went from %d to %d, want +1", v1, v2)
	}
	var enforced, flipped time.Duration
	var mu sync.Mutex
	Eventually(t, settleTimeout, func() (bool, string) {
		var wg sync.WaitGroup
		var seen []string
		wg.Go(func() {
			vs, err := policyVersions(s1)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				seen = append(seen, err.Error())
				return
			}
			for _, h := range all {
				if vs[h.Name] != v2 {
					seen = append(seen, fmt.Sprintf("versions %v", vs))
					return
				}
			}
			if enforced == 0 {
				enforced = time.Since(applied)
			}
		})
		wg.Go(func() {
			res := runProbes(t, flips, 300*time.Millisecond)
			mu.Lock()
			defer mu.Unlock()
			if res[0] || !res[1] {
				seen = append(seen, fmt.Sprintf("%s: %t; %s: %t", flips[0], res[0], flips[1], res[1]))
				return
			}
			if flipped == 0 {
				flipped = time.Since(applied)
			}
		})
		wg.Wait()
		return enforced > 0 && flipped > 0, strings.Join(seen, "; ")
	})
	Figure(t, "policy_change_versions_4hosts", enforced.Seconds(), "s")
	Figure(t, "policy_change_enforced_4hosts", max(enforced, flipped).Seconds(), "s")

	wantB := topology(gB, segOfHosts(hostTags, all, defsABC), names(all))
	snapB := settle(t, s1, all, v2, wantB, defsABC)
	checkIsolation(t, all, snapB, wantB, defsABC)
	matrix{hosts: all, explain: s1, grid: gB, snap: snapB, listeners: ls}.check(t)
	// Addresses are stable across the change where a host stays.
	for _, h := range all {
		for _, x := range snapA[h.Name] {
			if a := snapB.addr(h.Name, x.Name); a.IsValid() && a != snapA.addr(h.Name, x.Name) {
				t.Errorf("%s: address in %s moved from %s to %s", h.Name, x.Name, snapA.addr(h.Name, x.Name), a)
			}
		}
	}
}

// impostorConfig is the wireguard-go UAPI text of a device with private key
// privB64 (base64, as weft stores it) listening on port, whose one peer has
// key peerKeyB64, endpoint and the overlay address peerAddr.
func impostorConfig(t *testing.T, privB64 string, port int, peerKeyB64 string, endpoint string, peerAddr netip.Addr) string {
	t.Helper()
	hexKey := func(b64 string) string {
		raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(b64))
		if err != nil || len(raw) != 32 {
			t.Fatalf("bad WireGuard key (%d bytes): %v", len(raw), err)
		}
		return hex.EncodeToString(raw)
	}
	return fmt.Sprintf("private_key=%s\nlisten_port=%d\nreplace_peers=true\npublic_key=%s\nendpoint=%s\nreplace_allowed_ips=true\nallowed_ip=%s\n",
		hexKey(privB64), port, hexKey(peerKeyB64), endpoint, netip.PrefixFrom(peerAddr, 32))
}

// 3. A host leaves: every other host drops its keys, and a packet sent with
// its old key from its old address no longer arrives.
func TestHostLeaves(t *testing.T) {
	t.Parallel()
	b := NewBed(t, "s1", "web1", "web2", "db1")
	all := b.Hosts()
	s1, web1, web2 := b.Host("s1"), b.Host("web1"), b.Host("web2")
	rest := without(all, web2)
	ls := formPolicyBed(t, b, []string{"s1"}, []string{"web1", "web2", "db1"})
	g := parseGrid(t, gridA)
	v := applyPolicy(t, s1, "policy.hcl", policyA)
	want := topology(g, segOfHosts(hostTags, all, defsABC), names(all))
	snap := settle(t, s1, all, v, want, defsABC)

	var keys []string // web2's public keys
	for _, x := range snap["web2"] {
		keys = append(keys, x.PublicKey)
	}
	if len(keys) != 2 {
		t.Fatalf("web2 has %d segments, want web and db: %+v", len(keys), snap["web2"])
	}
	priv := string(readFile(t, web2.DataFile("keys/web.key")))
	oldAddr := snap.addr("web2", "web")
	self, _ := snap.segment("web2", "web")
	peer, _ := snap.segment("web1", "web")
	target := netip.AddrPortFrom(snap.addr("web1", "web"), 8000)
	impostor := func() string {
		return web2.RunHelper(t, "impostor", map[string]string{
			envHelperWGIface:     "wf-web",
			envHelperWGAddr:      self.Address,
			envHelperWGConfig:    impostorConfig(t, priv, defsABC["web"].Port, peer.PublicKey, web1.Addr(defsABC["web"].Port), target.Addr()),
			envHelperAddr:        target.String(),
			envHelperDialTimeout: "3s",
		})
	}
	fromOld := func(since int) []arrival {
		var out []arrival
		for _, a := range ls["web1"].since(t, since) {
			if a.src == oldAddr {
				out = append(out, a)
			}
		}
		return out
	}

	// Positive control: with web2's agent stopped (not left), its key and
	// address still work from a device that is not weft's.
	web2.Stop(t)
	mark := len(ls["web1"].arrivals(t))
	if out := impostor(); out != target.String()+" ok\nhandshake yes" {
		t.Fatalf("impostor with web2's registered key, agent stopped: %q, want ok and a handshake", out)
	}
	Eventually(t, arrivalTimeout, func() (bool, string) {
		got := fromOld(mark)
		return len(got) > 0, fmt.Sprintf("nothing from %s; web1 saw %v", oldAddr, ls["web1"].since(t, mark))
	})
	web2.Start(t)
	settle(t, s1, all, v, want, defsABC)

	if _, _, err := web2.CLI("leave"); err != nil {
		t.Fatal(err)
	}
	left := time.Now()
	if code, err := web2.Wait(upTimeout); err != nil || code != 0 {
		t.Fatalf("web2 after leave: exit %d, %v", code, err)
	}
	Eventually(t, goneTimeout, func() (bool, string) {
		s, err := takeSnapshot(rest)
		if err != nil {
			return false, err.Error()
		}
		for _, k := range keys {
			if where := s.hasKey(k); len(where) > 0 {
				return false, fmt.Sprintf("a key of web2 is still at %v", where)
			}
		}
		for _, h := range rest {
			out, err := h.WG("show", "all", "peers")
			if err != nil {
				return false, err.Error()
			}
			for _, k := range keys {
				if strings.Contains(out, k) {
					return false, fmt.Sprintf("%s: wg show all peers still lists %s", h.Name, k)
				}
			}
		}
		return true, ""
	})
	Figure(t, "leave_keys_gone_everywhere", time.Since(left).Seconds(), "s")

	// The leaver keeps nothing: no weft interface, no firewall table.
	if links := wfLinks(t, web2); len(links) > 0 {
		t.Errorf("web2 still has %v after leaving", links)
	}
	if out, err := exec.Command("ip", "netns", "exec", web2.NS, "nft", "list", "table", "inet", "weft").CombinedOutput(); err == nil {
		t.Errorf("web2 still has the weft nftables table after leaving:\n%s", out)
	}

	// Its old key and address, from a device that is not weft's: refused.
	mark = len(ls["web1"].arrivals(t))
	if out := impostor(); !strings.HasPrefix(out, target.String()+" fail:") || !strings.HasSuffix(out, "handshake no") {
		t.Errorf("impostor with web2's key after it left: %q, want fail and no handshake", out)
	}
	Consistently(t, time.Second, func() (bool, string) {
		got := fromOld(mark)
		return len(got) == 0, fmt.Sprintf("arrived at web1 from web2's old address after it left: %v", got)
	})

	// The others are as the policy says without web2.
	wantRest := topology(g, segOfHosts(hostTags, rest, defsABC), names(rest))
	checkIsolation(t, rest, settle(t, s1, rest, v, wantRest, defsABC), wantRest, defsABC)
}

const policyApp = `
segment "app" {
  cidr    = "10.91.0.0/24"
  port    = 51830
  members = ["tag:app"]
}

rule "no-ssh-in-app" {
  action = "deny"
  from   = ["segment:app"]
  to     = ["segment:app"]
  ports  = ["tcp/22"]
}
`

const gridApp = `
from\to  s1  s2  s3  c1                        c2
s1       .   -   -   -                         -
s2       -   .   -   -                         -
s3       -   -   .   -                         -
c1       -   -   -   .                         icmp,5432,8000,8080,8100
c2       -   -   -   icmp,5432,8000,8080,8100  .
`

var pingSummaryRE = regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`)

// 4. Every server dies: the tunnel between two clients carries on without
// losing a packet, and a client restarted meanwhile rebuilds it from its
// persisted plan, no wider than before.
func TestServersDown(t *testing.T) {
	t.Parallel()
	b := NewBed(t, "s1", "s2", "s3", "c1", "c2")
	all := b.Hosts()
	servers := b.Select("s1", "s2", "s3")
	s1, c1, c2 := b.Host("s1"), b.Host("c1"), b.Host("c2")
	ls := formPolicyBed(t, b, []string{"s1", "s2", "s3"}, []string{"c1", "c2"})
	defs := map[string]segDef{"app": {netip.MustParsePrefix("10.91.0.0/24"), 51830}}
	g := parseGrid(t, gridApp)
	want := topology(g, segOfHosts(hostTags, all, defs), names(all))
	v := applyPolicy(t, s1, "policy.hcl", policyApp)
	snap := settle(t, s1, all, v, want, defs)
	checkIsolation(t, all, snap, want, defs)
	matrix{hosts: all, explain: s1, grid: g, snap: snap, listeners: ls}.check(t)

	dst := snap.addr("c2", "app")
	mark := len(ls["c2"].arrivals(t))
	ping := exec.Command("ip", "netns", "exec", c1.NS, "ping", "-n", "-i", "0.2", "-c", "50", "-W", "1", dst.String())
	var pingOut strings.Builder
	ping.Stdout, ping.Stderr = &pingOut, &pingOut
	ping.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := ping.Start(); err != nil {
		t.Fatal(err)
	}
	pingDone := make(chan error, 1)
	go func() { pingDone <- ping.Wait() }()
	t.Cleanup(func() { ping.Process.Kill() })
	// The flow is on once c2 has seen a few echo requests.
	Eventually(t, upTimeout, func() (bool, string) {
		n := 0
		for _, a := range ls["c2"].since(t, mark) {
			if a.proto == "icmp" && a.dst.Addr() == dst {
				n++
			}
		}
		return n >= 3, fmt.Sprintf("%d echo requests at c2", n)
	})
	for _, s := range servers {
		if err := s.Kill(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range servers {
		if _, err := s.Wait(killTimeout); err != nil {
			t.Fatal(err)
		}
	}
	killed := time.Now()
	select {
	case err := <-pingDone:
		t.Logf("ping ran %v after the last server died", time.Since(killed).Round(time.Millisecond))
		m := pingSummaryRE.FindStringSubmatch(pingOut.String())
		if m == nil {
			t.Fatalf("ping c1 -> c2: %v: no summary in %q", err, pingOut.String())
		}
		if m[1] != "50" || m[2] != "50" {
			t.Errorf("ping c1 -> c2 across the death of every server: %s transmitted, %s received; want no loss:\n%s", m[1], m[2], pingOut.String())
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("ping did not finish; so far:\n%s", pingOut.String())
	}
	clients := b.Select("c1", "c2")
	after, err := takeSnapshot(clients)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(snap.stable().only("c1", "c2"), after.stable()); diff != "" {
		t.Errorf("the clients' segments changed with the servers down (-before +after):\n%s", diff)
	}

	// Restart c2 with every server still down.
	c2.Stop(t)
	restarted := time.Now()
	c2.Start(t)
	Eventually(t, upTimeout, func() (bool, string) {
		return pingOnce(c1, dst, 500*time.Millisecond), "no answer from c2 at " + dst.String()
	})
	Figure(t, "client_restart_tunnel_back_servers_down", time.Since(restarted).Seconds(), "s")
	Eventually(t, upTimeout, func() (bool, string) {
		s, err := takeSnapshot(clients)
		if err != nil {
			return false, err.Error()
		}
		diff := cmp.Diff(snap.stable().only("c1", "c2"), s.stable())
		return diff == "", "segments after the restart (-before +after):\n" + diff
	})
	// Nothing got wider: the same matrix, explained by a client, as the
	// servers are gone.
	matrix{hosts: all, explain: c1, grid: g, snap: snap, listeners: ls}.check(t)
}

// only keeps the named hosts.
func (s snapshot) only(hosts ...string) snapshot {
	out := snapshot{}
	for _, h := range hosts {
		if segs, ok := s[h]; ok {
			out[h] = segs
		}
	}
	return out
}

var positionRE = regexp.MustCompile(`([\w.-]+\.hcl):(\d+):(\d+)`)

// lineOf is the 1-based line of the first occurrence of sub in src.
func lineOf(t *testing.T, src, sub string) int {
	t.Helper()
	i := strings.Index(src, sub)
	if i < 0 {
		t.Fatalf("%q not in the policy", sub)
	}
	return strings.Count(src[:i], "\n") + 1
}

// 5. A policy with an error is refused, with its position, and changes
// nothing anywhere.
func TestInvalidPolicyRefused(t *testing.T) {
	t.Parallel()
	b := NewBed(t, "s1", "web1", "db1")
	all := b.Hosts()
	s1 := b.Host("s1")
	formTaggedCluster(t, b.Select("s1"), b.Select("web1", "db1"), hostTags)
	g := parseGrid(t, gridA)
	want := topology(g, segOfHosts(hostTags, all, defsABC), names(all))
	v := applyPolicy(t, s1, "good.hcl", policyA)
	before := settle(t, s1, all, v, want, defsABC).stable()

	overlap := strings.Replace(policyA, `cidr    = "10.90.3.0/24"`, `cidr    = "10.90.1.128/25"`, 1)
	unknown := strings.Replace(policyA, `to     = ["segment:db"]`, `to     = ["segment:dbs"]`, 1)
	small := strings.Replace(policyA, `cidr    = "10.90.2.0/24"`, `cidr    = "10.90.2.0/30"`, 1)
	bin := weftBinary(t)
	for _, tc := range []struct {
		file, src, mention string
		line               int // 0: a fleet error, which has no position
	}{
		{"overlap.hcl", overlap, "overlap", lineOf(t, overlap, "10.90.1.128/25")},
		{"unknown.hcl", unknown, "dbs", lineOf(t, unknown, "segment:dbs")},
		// db would need 3 addresses (db1, and web1 and s1 as guests); a /30
		// has 2.
		{"small.hcl", small, "db", 0},
	} {
		path := s1.Dir + "/" + tc.file
		if err := os.WriteFile(path, []byte(tc.src), 0o600); err != nil {
			t.Fatal(err)
		}
		out, stderr, err := s1.CLI("policy", "apply", path)
		if code := exitCode(err); code != 1 {
			t.Errorf("policy apply %s: exit %d, want 1; stdout %q", tc.file, code, out)
		}
		if !strings.Contains(stderr, tc.mention) {
			t.Errorf("policy apply %s: stderr %q does not mention %q", tc.file, stderr, tc.mention)
		}
		if tc.line == 0 {
			t.Logf("policy apply %s: %s", tc.file, strings.TrimSpace(stderr))
			continue
		}
		m := positionRE.FindStringSubmatch(stderr)
		if m == nil || m[1] != tc.file || m[2] != strconv.Itoa(tc.line) {
			t.Errorf("policy apply %s: stderr %q, want it to point at %s:%d:<col>", tc.file, stderr, tc.file, tc.line)
		}
		// validate, without an agent, points at the same place.
		_, vErr, code := runWeft(t, bin, "policy", "validate", path)
		if code != 1 || positionRE.FindString(vErr) != m[0] {
			t.Errorf("policy validate %s: exit %d, stderr %q; want 1 and %s", tc.file, code, vErr, m[0])
		}
	}

	unchanged := func() (bool, string) {
		for _, h := range all {
			var p PolicyInfo
			if err := h.TryJSON(&p, "policy", "show"); err != nil {
				return false, err.Error()
			}
			if p.Version != v || p.Source != policyA {
				return false, fmt.Sprintf("%s: policy version %d from %s", h.Name, p.Version, p.Filename)
			}
		}
		vs, err := policyVersions(s1)
		if err != nil {
			return false, err.Error()
		}
		for _, h := range all {
			if vs[h.Name] != v {
				return false, fmt.Sprintf("policy versions %v, want %d", vs, v)
			}
		}
		s, err := takeSnapshot(all)
		if err != nil {
			return false, err.Error()
		}
		if diff := cmp.Diff(before, s.stable()); diff != "" {
			return false, "segments (-before +after):\n" + diff
		}
		return true, ""
	}
	Consistently(t, 3*time.Second, unchanged)

	// The refusals did not use up a version.
	if v2 := applyPolicy(t, s1, "next.hcl", policyB); v2 != v+1 {
		t.Errorf("the next good policy got version %d, want %d", v2, v+1)
	}
}
