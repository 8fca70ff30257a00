package e2e

// What the policy scenarios expect and check: the expected reachability
// matrix and the interfaces and peers it implies, snapshots of every host's
// `weft segments`, waiting for a policy to be enforced, and the matrix
// check itself, which probes with real packets (probe_test.go).

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// ---- expected reachability ----

// grid is an expected reachability matrix: grid[from][to] is the set of
// probes that must succeed from host from to host to.
type grid map[string]map[string]map[string]bool

// parseGrid reads a matrix written out as a table: a header "from\to" and
// the host names, then one row per source host. A cell is "." (the host
// itself), "-" (nothing), "*" (every probe) or a comma-separated list of
// "icmp" and TCP port numbers.
func parseGrid(t testing.TB, src string) grid {
	t.Helper()
	var cols []string
	g := grid{}
	for _, line := range strings.Split(strings.TrimSpace(src), "\n") {
		f := strings.Fields(line)
		if cols == nil {
			if len(f) < 2 || f[0] != `from\to` {
				t.Fatalf("grid: header %q", line)
			}
			cols = f[1:]
			continue
		}
		if len(f) != len(cols)+1 {
			t.Fatalf("grid: row %q has %d cells, want %d", line, len(f)-1, len(cols))
		}
		from := f[0]
		g[from] = map[string]map[string]bool{}
		for i, cell := range f[1:] {
			to := cols[i]
			set := map[string]bool{}
			switch cell {
			case ".":
				if to != from {
					t.Fatalf("grid: %s -> %s is \".\"", from, to)
				}
			case "-":
			case "*":
				for _, s := range probeSpecs {
					set[s] = true
				}
			default:
				for _, c := range strings.Split(cell, ",") {
					s := c
					if c != "icmp" {
						s = "tcp/" + c
					}
					if !slices.Contains(probeSpecs, s) {
						t.Fatalf("grid: %s -> %s: unknown probe %q", from, to, c)
					}
					set[s] = true
				}
			}
			g[from][to] = set
		}
	}
	return g
}

// segWant is what a host should have in one segment.
type segWant struct {
	Role  string
	Peers []string // sorted
}

// topology derives from the grid the interfaces and peers policy/doc.go
// implies, for fleets where every host is a member of one segment at most
// (segOf; "" for none): two members of one segment peer in it when either
// may reach the other; a host that may reach a host of another segment is
// a guest there and peers with that host. So guests never peer with each
// other, and a host has an interface only where it is a member or a guest.
func topology(g grid, segOf map[string]string, hosts []string) map[string]map[string]segWant {
	out := map[string]map[string]segWant{}
	add := func(h, seg, role, peer string) {
		if out[h] == nil {
			out[h] = map[string]segWant{}
		}
		w, ok := out[h][seg]
		if !ok || role == "member" {
			w.Role = role
		}
		if peer != "" && !slices.Contains(w.Peers, peer) {
			w.Peers = append(w.Peers, peer)
			slices.Sort(w.Peers)
		}
		out[h][seg] = w
	}
	for _, h := range hosts {
		if segOf[h] != "" {
			add(h, segOf[h], "member", "")
		}
	}
	for _, a := range hosts {
		for _, b := range hosts {
			if a == b || len(g[a][b]) == 0 {
				continue
			}
			sa, sb := segOf[a], segOf[b]
			if sa == sb {
				add(a, sa, "member", b)
				add(b, sa, "member", a)
			} else {
				add(a, sb, "guest", b)
				add(b, sb, "member", a)
			}
		}
	}
	return out
}

// segDef is what the policy document says of a segment.
type segDef struct {
	CIDR netip.Prefix
	Port int
}

// snapshot is every host's `weft segments` at one moment.
type snapshot map[string][]Segment

func takeSnapshot(hosts []*Host) (snapshot, error) {
	s := snapshot{}
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	for _, h := range hosts {
		wg.Go(func() {
			segs, err := h.Segments()
			mu.Lock()
			defer mu.Unlock()
			s[h.Name] = segs
			errs = append(errs, err)
		})
	}
	wg.Wait()
	return s, errors.Join(errs...)
}

func (s snapshot) segment(host, seg string) (Segment, bool) {
	for _, x := range s[host] {
		if x.Name == seg {
			return x, true
		}
	}
	return Segment{}, false
}

// addr is host's address in seg, invalid when it has none.
func (s snapshot) addr(host, seg string) netip.Addr {
	x, ok := s.segment(host, seg)
	if !ok {
		return netip.Addr{}
	}
	p, err := netip.ParsePrefix(x.Address)
	if err != nil {
		return netip.Addr{}
	}
	return p.Addr()
}

// owner names the host and segment of an overlay address.
func (s snapshot) owner(a netip.Addr) string {
	for h, segs := range s {
		for _, x := range segs {
			if s.addr(h, x.Name) == a {
				return h + " (in " + x.Name + ")"
			}
		}
	}
	return "nobody in the mesh"
}

// hasKey names where a public key appears as a peer.
func (s snapshot) hasKey(key string) []string {
	var where []string
	for h, segs := range s {
		for _, x := range segs {
			for _, p := range x.Peers {
				if p.PublicKey == key {
					where = append(where, fmt.Sprintf("%s/%s peer %s", h, x.Interface, p.Name))
				}
			}
		}
	}
	sort.Strings(where)
	return where
}

// stable strips what changes with traffic, for comparing snapshots.
func (s snapshot) stable() snapshot {
	out := snapshot{}
	for h, segs := range s {
		for _, x := range segs {
			x.Peers = slices.Clone(x.Peers)
			for i := range x.Peers {
				x.Peers[i].LastHandshake, x.Peers[i].RxBytes, x.Peers[i].TxBytes = time.Time{}, 0, 0
			}
			out[h] = append(out[h], x)
		}
	}
	return out
}

// checkTopology compares the snapshot with want: the same interfaces,
// roles and peers on every host, addresses from the segment's CIDR (/32
// for guests), the segment's port, and peers as their owners see
// themselves: key, address, endpoint.
func checkTopology(hosts []*Host, s snapshot, want map[string]map[string]segWant, defs map[string]segDef) (bool, string) {
	for _, h := range hosts {
		got := map[string]segWant{}
		for _, x := range s[h.Name] {
			var peers []string
			for _, p := range x.Peers {
				peers = append(peers, p.Name)
			}
			slices.Sort(peers)
			got[x.Name] = segWant{Role: x.Role, Peers: peers}
		}
		if diff := cmp.Diff(want[h.Name], got, cmpEmpty); diff != "" {
			return false, fmt.Sprintf("%s: segments (-want +got):\n%s", h.Name, diff)
		}
		for _, x := range s[h.Name] {
			def := defs[x.Name]
			p, err := netip.ParsePrefix(x.Address)
			bits := def.CIDR.Bits()
			if x.Role == "guest" {
				bits = 32
			}
			if err != nil || !def.CIDR.Contains(p.Addr()) || p.Bits() != bits {
				return false, fmt.Sprintf("%s: %s: address %q, want one of %s with /%d", h.Name, x.Name, x.Address, def.CIDR, bits)
			}
			if x.Interface != "wf-"+x.Name || x.ListenPort != def.Port {
				return false, fmt.Sprintf("%s: %s: interface %q port %d", h.Name, x.Name, x.Interface, x.ListenPort)
			}
			for _, peer := range x.Peers {
				own, ok := s.segment(peer.Name, x.Name)
				wantEP := ""
				if ph := hostByName(hosts, peer.Name); ph != nil {
					wantEP = netip.AddrPortFrom(ph.IP, uint16(def.Port)).String()
				}
				wantIPs := []string{netip.PrefixFrom(s.addr(peer.Name, x.Name), 32).String()}
				if !ok || peer.PublicKey != own.PublicKey || !slices.Equal(peer.AllowedIPs, wantIPs) || peer.Endpoint != wantEP {
					return false, fmt.Sprintf("%s: %s: peer %s is %+v; want key %q, allowed ips %v, endpoint %s",
						h.Name, x.Name, peer.Name, peer, own.PublicKey, wantIPs, wantEP)
				}
			}
		}
	}
	return true, ""
}

// cmpEmpty makes nil and empty slices and maps equal.
var cmpEmpty = cmpopts.EquateEmpty()

func hostByName(hosts []*Host, name string) *Host {
	for _, h := range hosts {
		if h.Name == name {
			return h
		}
	}
	return nil
}

// policyVersions returns each host's policy_version as via's members say.
func policyVersions(via *Host) (map[string]uint64, error) {
	ms, err := via.Members()
	if err != nil {
		return nil, err
	}
	v := map[string]uint64{}
	for _, m := range ms {
		v[m.Name] = m.PolicyVersion
	}
	return v, nil
}

// settle waits until every host enforces policy version v (members -json
// on via) and its interfaces and peers are exactly want. It returns the
// settled snapshot.
func settle(t *testing.T, via *Host, hosts []*Host, v uint64, want map[string]map[string]segWant, defs map[string]segDef) snapshot {
	t.Helper()
	var s snapshot
	Eventually(t, settleTimeout, func() (bool, string) {
		vs, err := policyVersions(via)
		if err != nil {
			return false, err.Error()
		}
		for _, h := range hosts {
			if vs[h.Name] != v {
				return false, fmt.Sprintf("policy versions %v, want %d everywhere", vs, v)
			}
		}
		if s, err = takeSnapshot(hosts); err != nil {
			return false, err.Error()
		}
		return checkTopology(hosts, s, want, defs)
	})
	return s
}

// wfLinks lists the weft interfaces in the host's namespace.
func wfLinks(t testing.TB, h *Host) []string {
	t.Helper()
	out, err := exec.Command("ip", "-n", h.NS, "-o", "link", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("%s: ip link: %v: %s", h.Name, err, out)
	}
	var links []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		if len(f) > 1 {
			if n := strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0]; strings.HasPrefix(n, "wf-") {
				links = append(links, n)
			}
		}
	}
	slices.Sort(links)
	return links
}

// checkIsolation asserts what must not exist: an interface where a host has
// no right to be (`ip link show wf-<seg>` fails), and a guest peering with
// another guest.
func checkIsolation(t *testing.T, hosts []*Host, s snapshot, want map[string]map[string]segWant, defs map[string]segDef) {
	t.Helper()
	for _, h := range hosts {
		var wantLinks []string
		for seg := range want[h.Name] {
			wantLinks = append(wantLinks, "wf-"+seg)
		}
		slices.Sort(wantLinks)
		if diff := cmp.Diff(wantLinks, wfLinks(t, h), cmpEmpty); diff != "" {
			t.Errorf("%s: weft links (-want +got):\n%s", h.Name, diff)
		}
		for seg := range defs {
			if _, ok := want[h.Name][seg]; ok {
				continue
			}
			if out, err := exec.Command("ip", "-n", h.NS, "link", "show", "wf-"+seg).CombinedOutput(); err == nil {
				t.Errorf("%s has no right to reach segment %s but has wf-%s:\n%s", h.Name, seg, seg, out)
			}
		}
		for _, x := range s[h.Name] {
			if x.Role != "guest" {
				continue
			}
			for _, p := range x.Peers {
				if other, ok := s.segment(p.Name, x.Name); ok && other.Role == "guest" {
					t.Errorf("guests %s and %s of %s peer with each other", h.Name, p.Name, x.Name)
				}
			}
		}
	}
}

// ---- the matrix ----

// matrix checks reachability between hosts with real packets.
type matrix struct {
	hosts     []*Host
	explain   *Host // runs `weft policy explain`
	grid      grid
	snap      snapshot // settled
	listeners map[string]*listener
}

// check asks explain about every ordered pair of hosts and every probe and
// compares the verdict with the grid; then probes every address of the
// target: a probe succeeds exactly when explain said ALLOWED and the
// address is in the segment explain named (the one whose peer entry
// carries the flow), and only those probes arrive at the listeners. It
// returns the measured matrix.
func (m matrix) check(t *testing.T) map[[2]string]map[string]bool {
	t.Helper()
	type verdict struct {
		from, to, spec string
		e              Explanation
		err            error
	}
	var vs []*verdict
	for _, a := range m.hosts {
		for _, b := range m.hosts {
			if a == b {
				continue
			}
			for _, spec := range probeSpecs {
				vs = append(vs, &verdict{from: a.Name, to: b.Name, spec: spec})
			}
		}
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, probeWorkers)
	for _, v := range vs {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			v.err = m.explain.TryJSON(&v.e, "policy", "explain", "-json", v.from, v.to, v.spec)
		})
	}
	wg.Wait()

	var probes []probe
	for _, v := range vs {
		if v.err != nil {
			t.Fatal(v.err)
		}
		want := m.grid[v.from][v.to][v.spec]
		if v.e.Allowed != want {
			t.Errorf("explain %s %s %s: allowed=%t (%s), the expected matrix says %t", v.from, v.to, v.spec, v.e.Allowed, v.e.Reason, want)
		}
		from, to := hostByName(m.hosts, v.from), hostByName(m.hosts, v.to)
		if v.e.Allowed {
			if _, ok := m.snap.segment(v.to, v.e.Segment); !ok {
				t.Errorf("explain %s %s %s: allowed through segment %q, where %s has no interface", v.from, v.to, v.spec, v.e.Segment, v.to)
			}
			if !slices.ContainsFunc(peersOf(m.snap, v.from, v.e.Segment), func(p SegmentPeer) bool { return p.Name == v.to }) {
				t.Errorf("explain %s %s %s: allowed through %q, but %s has no peer %s there", v.from, v.to, v.spec, v.e.Segment, v.from, v.to)
			}
		}
		for _, x := range m.snap[v.to] {
			probes = append(probes, probe{
				from: from, to: to, seg: x.Name, addr: m.snap.addr(v.to, x.Name), spec: v.spec,
				want: v.e.Allowed && x.Name == v.e.Segment,
			})
		}
	}

	marks := map[string]int{}
	for n, l := range m.listeners {
		marks[n] = len(l.arrivals(t))
	}
	got := make([]bool, len(probes))
	todo := make([]int, len(probes))
	for i := range probes {
		todo[i] = i
	}
	retryUntil := time.Now().Add(probeRetryFor)
	for round := 1; len(todo) > 0; round++ {
		batch := make([]probe, len(todo))
		for j, i := range todo {
			batch[j] = probes[i]
		}
		res := runProbes(t, batch, probeTimeout)
		var again []int
		for j, i := range todo {
			got[i] = res[j]
			switch {
			case res[j] && !probes[i].want:
				t.Errorf("must fail but succeeded: %s", probes[i])
			case !res[j] && probes[i].want:
				again = append(again, i)
			}
		}
		todo = again
		if len(todo) == 0 || time.Now().After(retryUntil) {
			break
		}
		t.Logf("round %d: %d probes that must succeed failed; trying them again", round, len(todo))
		<-time.After(500 * time.Millisecond) // a pause between bounded retries
	}
	for _, i := range todo {
		t.Errorf("must succeed but failed for %v: %s", probeRetryFor, probes[i])
	}

	// What arrived: everything that must, nothing else.
	type key struct {
		target string
		a      arrival
	}
	expect := map[key]probe{}
	for i, p := range probes {
		if !p.want || !got[i] {
			continue
		}
		src := m.snap.addr(p.from.Name, p.seg)
		a := arrival{proto: "icmp", dst: netip.AddrPortFrom(p.addr, 0), src: src}
		if p.spec != "icmp" {
			a = arrival{proto: "tcp", dst: netip.AddrPortFrom(p.addr, uint16(p.port())), src: src}
		}
		expect[key{p.to.Name, a}] = p
	}
	arrived := map[key]bool{}
	Eventually(t, arrivalTimeout, func() (bool, string) {
		for n, l := range m.listeners {
			for _, a := range l.since(t, marks[n]) {
				arrived[key{n, a}] = true
			}
		}
		for k, p := range expect {
			if !arrived[k] {
				return false, fmt.Sprintf("%s succeeded, but %s's listener has no %s", p, k.target, k.a)
			}
		}
		return true, ""
	})
	for k := range arrived {
		if _, ok := expect[k]; !ok {
			t.Errorf("must not arrive: %s at %s, sent by %s", k.a, k.target, m.snap.owner(k.a.src))
		}
	}

	res := map[[2]string]map[string]bool{}
	for i, p := range probes {
		k := [2]string{p.from.Name, p.to.Name}
		if res[k] == nil {
			res[k] = map[string]bool{}
		}
		res[k][p.spec] = res[k][p.spec] || got[i]
	}
	t.Logf("reachability measured with %d probes:\n%s", len(probes), formatMatrix(m.hosts, res))
	return res
}

func peersOf(s snapshot, host, seg string) []SegmentPeer {
	x, _ := s.segment(host, seg)
	return x.Peers
}

// formatMatrix renders a measured matrix: rows from, columns to, each cell
// the probes that succeeded (as in a grid).
func formatMatrix(hosts []*Host, res map[[2]string]map[string]bool) string {
	var b strings.Builder
	w := 6
	for _, h := range hosts {
		w = max(w, len(h.Name))
	}
	cells := map[[2]string]string{}
	for _, a := range hosts {
		for _, c := range hosts {
			var ok []string
			for _, s := range probeSpecs {
				if res[[2]string{a.Name, c.Name}][s] {
					ok = append(ok, strings.TrimPrefix(s, "tcp/"))
				}
			}
			cell := strings.Join(ok, ",")
			switch {
			case a == c:
				cell = "."
			case len(ok) == len(probeSpecs):
				cell = "*"
			case len(ok) == 0:
				cell = "-"
			}
			cells[[2]string{a.Name, c.Name}] = cell
			w = max(w, len(cell))
		}
	}
	fmt.Fprintf(&b, "%-*s", w+2, `from\to`)
	for _, h := range hosts {
		fmt.Fprintf(&b, "%-*s", w+2, h.Name)
	}
	b.WriteString("\n")
	for _, a := range hosts {
		fmt.Fprintf(&b, "%-*s", w+2, a.Name)
		for _, c := range hosts {
			fmt.Fprintf(&b, "%-*s", w+2, cells[[2]string{a.Name, c.Name}])
		}
		b.WriteString("\n")
	}
	return b.String()
}

// ---- policy commands ----

var appliedRE = regexp.MustCompile(`^policy version (\d+) applied\n?$`)

// applyPolicy writes src to a file in on's dir and applies it there; it
// returns the new version.
func applyPolicy(t *testing.T, on *Host, file, src string) uint64 {
	t.Helper()
	path := filepath.Join(on.Dir, file)
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, err := on.CLI("policy", "apply", path)
	if err != nil {
		t.Fatal(err)
	}
	m := appliedRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("policy apply printed %q, want \"policy version N applied\"", out)
	}
	v, _ := strconv.ParseUint(m[1], 10, 64)
	return v
}

// pingOnce pings addr from h once; it reports whether an answer came.
func pingOnce(h *Host, addr netip.Addr, timeout time.Duration) bool {
	ctx, cancel := context.WithTimeout(context.Background(), timeout+5*time.Second)
	defer cancel()
	return exec.CommandContext(ctx, "ip", "netns", "exec", h.NS, "ping", "-n", "-q", "-c", "1",
		"-W", strconv.FormatFloat(timeout.Seconds(), 'f', 3, 64), addr.String()).Run() == nil
}
