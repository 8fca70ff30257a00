package e2e

// The tools of the fault scenarios (faults_test.go): a bed with the app
// segment enforced, a stream of policy writes that records what was
// acknowledged, nftables faults inside a host's namespace, a background
// ping flow, DNS queries with dig, reading the agents' logs and their
// sealed data-dir files. Names start with "fault" so they cannot collide
// with helpers of other scenario files.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// faultDefs is the one segment of policyApp.
var faultDefs = map[string]segDef{"app": {netip.MustParsePrefix("10.91.0.0/24"), 51830}}

// faultBed forms a cluster of the servers and clients (tagged as in
// hostTags, so c1 and c2 are in app), applies policyApp on the first
// server and waits until every host enforces it. It returns the settled
// snapshot and the policy version.
func faultBed(t *testing.T, servers, clients []string) (*Bed, snapshot, uint64) {
	t.Helper()
	return faultBedWith(t, servers, clients, nil)
}

// faultBedWith is faultBed with prep run on the bed before any agent
// starts.
func faultBedWith(t *testing.T, servers, clients []string, prep func(*Bed)) (*Bed, snapshot, uint64) {
	t.Helper()
	b := NewBed(t, slices.Concat(servers, clients)...)
	if prep != nil {
		prep(b)
	}
	formTaggedCluster(t, b.Select(servers...), b.Select(clients...), hostTags)
	all := b.Hosts()
	want := topology(parseGrid(t, gridApp), segOfHosts(hostTags, all, faultDefs), names(all))
	s := b.Host(servers[0])
	v := applyPolicy(t, s, "policy.hcl", policyApp)
	// Settled when the clients, the hosts of the app segment, enforce v.
	// The servers have no interface to check, and the policy version a
	// server announces in gossip has been seen to lag by up to a gossip
	// push/pull interval (30 s): see faultClients.
	snap := settle(t, s, b.Select(clients...), v, want, faultDefs)
	return b, snap, v
}

// faultClients are the hosts whose enforced policy version the scenarios
// check through gossip (members -json). Servers are left out on purpose:
// with five agents on two cores, a server's gossip meta update (state
// index, policy version) is now and then not seen by any other agent
// until the next push/pull, 30 s later, while the clients' updates always
// arrive. That lag is reported as a finding of these scenarios, not
// something each of them should trip over.
var faultClients = []string{"c1", "c2"}

// faultPolicy is policyApp plus a rule whose port carries the marker n:
// every n gives a different valid document, and a different firewall on
// every app host (a real dataplane change that must not disturb traffic
// the rule does not match).
func faultPolicy(n int) string {
	return policyApp + fmt.Sprintf(`
# fault write %d
rule "fault-marker" {
  action = "deny"
  from   = ["segment:app"]
  to     = ["segment:app"]
  ports  = ["tcp/%d"]
}
`, n, 20000+n)
}

// ---- a stream of policy writes ----

// A faultWrite is one `weft policy apply` the writer issued.
type faultWrite struct {
	n       int    // marker, increasing with time
	src     string // the document
	via     string // the server that answered
	acked   bool   // exit 0 with "policy version N applied"
	version uint64 // N, when acked
	err     string // when not acked
	at      time.Time
}

// faultWriter applies faultPolicy(1), (2), ... one after another, each
// through the next server in turn (so both the leader and followers, which
// forward, answer), moving on to the next marker after an error. Only the
// writer goroutine issues writes, so acknowledged versions must come back
// strictly increasing.
type faultWriter struct {
	servers []*Host
	dir     string
	pace    time.Duration

	mu     sync.Mutex
	writes []faultWrite

	stop chan struct{}
	done chan struct{}
}

func startFaultWriter(t *testing.T, servers []*Host, pace time.Duration) *faultWriter {
	t.Helper()
	w := &faultWriter{servers: servers, dir: t.TempDir(), pace: pace, stop: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	t.Cleanup(w.halt)
	return w
}

func (w *faultWriter) run() {
	defer close(w.done)
	for n := 1; ; n++ {
		select {
		case <-w.stop:
			return
		default:
		}
		via := w.servers[n%len(w.servers)]
		wr := faultWrite{n: n, src: faultPolicy(n), via: via.Name, at: time.Now()}
		path := filepath.Join(w.dir, fmt.Sprintf("w%04d.hcl", n))
		if err := os.WriteFile(path, []byte(wr.src), 0o600); err != nil {
			wr.err = err.Error()
		} else if out, _, err := via.CLI("policy", "apply", path); err != nil {
			wr.err = err.Error()
		} else if m := appliedRE.FindStringSubmatch(out); m == nil {
			wr.err = fmt.Sprintf("exit 0 but printed %q", out)
		} else {
			wr.acked = true
			wr.version, _ = strconv.ParseUint(m[1], 10, 64)
		}
		w.mu.Lock()
		w.writes = append(w.writes, wr)
		w.mu.Unlock()
		pause := w.pace
		if !wr.acked {
			pause = 200 * time.Millisecond // retry soon, through another server
		}
		select {
		case <-w.stop:
			return
		case <-time.After(pause):
		}
	}
}

// halt stops the writer and waits for the write in flight (bounded by the
// CLI's own timeout).
func (w *faultWriter) halt() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

// all returns every write issued so far.
func (w *faultWriter) all() []faultWrite {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.writes)
}

// acked returns the acknowledged writes, in the order they were issued.
func (w *faultWriter) acked() []faultWrite {
	var out []faultWrite
	for _, wr := range w.all() {
		if wr.acked {
			out = append(out, wr)
		}
	}
	return out
}

// waitAcked waits until n writes issued after since were acknowledged.
func (w *faultWriter) waitAcked(t *testing.T, n int, since time.Time, timeout time.Duration) {
	t.Helper()
	Eventually(t, timeout, func() (bool, string) {
		k := 0
		for _, wr := range w.acked() {
			if wr.at.After(since) {
				k++
			}
		}
		return k >= n, fmt.Sprintf("%d of %d acknowledged writes since %s; %s", k, n, since.Format("15:04:05.000"), w.summary())
	})
}

func (w *faultWriter) summary() string {
	ws := w.all()
	acked, failed := 0, 0
	var lastErr string
	for _, wr := range ws {
		if wr.acked {
			acked++
		} else {
			failed++
			lastErr = wr.err
		}
	}
	s := fmt.Sprintf("%d writes, %d acknowledged, %d failed", len(ws), acked, failed)
	if lastErr != "" {
		s += "; last error: " + lastErr
	}
	return s
}

// checkAcked checks the writes against the policy the cluster holds at
// the end (final): acknowledged versions strictly increase with the
// marker (so every acknowledged write is in the log, in order), and the
// final document is the last acknowledged one, or a later write that
// failed from the client's point of view but was committed.
func (w *faultWriter) checkAcked(t *testing.T, final PolicyInfo) {
	t.Helper()
	ws := w.all()
	var (
		last  *faultWrite
		bad   []string
		byVia = map[string]int{}
		acked int
	)
	for i := range ws {
		wr := &ws[i]
		if !wr.acked {
			continue
		}
		acked++
		if last != nil && wr.version <= last.version {
			byVia[wr.via]++
			bad = append(bad, fmt.Sprintf("write %d via %s acknowledged as version %d, after write %d via %s as version %d",
				wr.n, wr.via, wr.version, last.n, last.via, last.version))
		}
		last = wr
	}
	if last == nil {
		t.Fatalf("no write was acknowledged: %s", w.summary())
	}
	if len(bad) > 0 {
		const show = 3
		more := ""
		if len(bad) > show {
			more = fmt.Sprintf("\n(and %d more)", len(bad)-show)
		}
		t.Errorf("%d of %d acknowledged writes came back with a version not above the one acknowledged before (by answering server: %v):\n%s%s",
			len(bad), acked, byVia, strings.Join(bad[:min(show, len(bad))], "\n"), more)
	}
	switch {
	case final.Version < last.version:
		t.Errorf("the cluster holds policy version %d, but write %d was acknowledged as version %d", final.Version, last.n, last.version)
	case final.Version == last.version && final.Source != last.src:
		t.Errorf("policy version %d is %s, but write %d (via %s) was acknowledged as that version", final.Version, faultMarker(final.Source), last.n, last.via)
	case final.Version > last.version:
		later := slices.ContainsFunc(ws, func(wr faultWrite) bool { return !wr.acked && wr.n > last.n && wr.src == final.Source })
		if !later {
			t.Errorf("the cluster holds policy version %d (%s), later than the last acknowledged version %d (write %d via %s), and it is none of the writes that failed after that",
				final.Version, faultMarker(final.Source), last.version, last.n, last.via)
		}
	}
}

var faultMarkerRE = regexp.MustCompile(`# (fault write \d+)`)

// faultMarker names the write a document came from.
func faultMarker(src string) string {
	if m := faultMarkerRE.FindStringSubmatch(src); m != nil {
		return m[1]
	}
	if src == policyApp {
		return "the initial policy"
	}
	return fmt.Sprintf("an unknown document of %d bytes", len(src))
}

// ---- nftables faults inside a host's namespace ----

// faultTable is the nftables table the fault scenarios add; weft's own is
// "inet weft", which they never touch.
const faultTable = "weftfault"

// faultNft loads an nft script in the host's network namespace.
func faultNft(t testing.TB, h *Host, script string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", h.NS, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: nft -f: %v: %s\nscript:\n%s", h.Name, err, bytes.TrimSpace(out), script)
	}
}

// faultIsolate drops, in h's namespace, everything from the peers'
// underlay addresses, and with both also everything to them.
func faultIsolate(t testing.TB, h *Host, peers []*Host, both bool) {
	t.Helper()
	var addrs []string
	for _, p := range peers {
		addrs = append(addrs, p.IP.String())
	}
	set := "{ " + strings.Join(addrs, ", ") + " }"
	script := fmt.Sprintf("table inet %s {\n  chain in {\n    type filter hook input priority -300; policy accept;\n    ip saddr %s counter drop\n  }\n", faultTable, set)
	if both {
		script += fmt.Sprintf("  chain out {\n    type filter hook output priority -300; policy accept;\n    ip daddr %s counter drop\n  }\n", set)
	}
	script += "}\n"
	faultNft(t, h, script)
}

// faultLoss drops percent of the packets h receives on its underlay.
func faultLoss(t testing.TB, h *Host, percent int) {
	t.Helper()
	faultNft(t, h, fmt.Sprintf("table inet %s {\n  chain in {\n    type filter hook input priority -300; policy accept;\n    iifname \"eth0\" numgen random mod 100 < %d counter drop\n  }\n}\n", faultTable, percent))
}

// faultHeal removes the fault table from h's namespace.
func faultHeal(t testing.TB, h *Host) {
	t.Helper()
	faultNft(t, h, "delete table inet "+faultTable+"\n")
}

// faultDropped is how many packets the fault table of h dropped.
func faultDropped(t testing.TB, h *Host) int {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", h.NS, "nft", "list", "table", "inet", faultTable).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: nft list table: %v: %s", h.Name, err, out)
	}
	n := 0
	for _, m := range regexp.MustCompile(`counter packets (\d+)`).FindAllStringSubmatch(string(out), -1) {
		k, _ := strconv.Atoi(m[1])
		n += k
	}
	return n
}

// ---- a ping flow in the background ----

type faultPing struct {
	from  *Host
	to    netip.Addr
	count int
	out   bytes.Buffer // written by the process; read after done
	done  chan error
}

// startFaultPing pings to from from, count echo requests every 200ms, in
// the background.
func startFaultPing(t *testing.T, from *Host, to netip.Addr, count int) *faultPing {
	t.Helper()
	p := &faultPing{from: from, to: to, count: count, done: make(chan error, 1)}
	cmd := exec.Command("ip", "netns", "exec", from.NS, "ping", "-n", "-i", "0.2", "-c", strconv.Itoa(count), "-W", "1", to.String())
	cmd.Stdout, cmd.Stderr = &p.out, &p.out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.done <- cmd.Wait() }()
	t.Cleanup(func() { cmd.Process.Kill() })
	return p
}

// wait waits for the flow to end and fails the test unless every echo
// request was answered.
func (p *faultPing) wait(t *testing.T, what string) {
	t.Helper()
	timeout := time.Duration(p.count)*200*time.Millisecond + 15*time.Second
	select {
	case <-p.done:
	case <-time.After(timeout):
		t.Fatalf("ping %s -> %s (%s) did not finish within %v", p.from.Name, p.to, what, timeout)
	}
	m := pingSummaryRE.FindStringSubmatch(p.out.String())
	if m == nil {
		t.Fatalf("ping %s -> %s (%s): no summary in %q", p.from.Name, p.to, what, p.out.String())
	}
	tx, _ := strconv.Atoi(m[1])
	rx, _ := strconv.Atoi(m[2])
	if tx != p.count || rx != p.count {
		t.Errorf("ping %s -> %s %s: %d transmitted, %d received; want %d of %d:\n%s", p.from.Name, p.to, what, tx, rx, p.count, p.count, p.out.String())
	} else {
		t.Logf("ping %s -> %s %s: %d/%d answered", p.from.Name, p.to, what, rx, tx)
	}
}

// ---- DNS ----

var (
	faultDigStatusRE = regexp.MustCompile(`status: ([A-Z]+)`)
	faultDigAnswerRE = regexp.MustCompile(`(?m)^\S+\s+\d+\s+IN\s+A\s+(\S+)$`)
)

// faultDig asks the agent's resolver on h (127.0.0.1:8600) for the A
// records of name; it returns the rcode and the addresses.
func faultDig(h *Host, name string) (string, []string, error) {
	out, err := h.Exec("dig", "@127.0.0.1", "-p", "8600", "+time=1", "+tries=1", "+noall", "+comments", "+answer", name, "A")
	if err != nil {
		return "", nil, err
	}
	m := faultDigStatusRE.FindStringSubmatch(out)
	if m == nil {
		return "", nil, fmt.Errorf("%s: dig %s: no status in %q", h.Name, name, out)
	}
	var addrs []string
	for _, a := range faultDigAnswerRE.FindAllStringSubmatch(out, -1) {
		addrs = append(addrs, a[1])
	}
	slices.Sort(addrs)
	return m[1], addrs, nil
}

// faultDNSAnswers checks that h resolves <peer>.node.weft.internal to want
// and nowhere.node.weft.internal (and each of hidden) to NXDOMAIN.
func faultDNSAnswers(h *Host, peer string, want netip.Addr, hidden ...string) (bool, string) {
	rcode, addrs, err := faultDig(h, peer+".node.weft.internal")
	if err != nil {
		return false, err.Error()
	}
	if rcode != "NOERROR" || !slices.Equal(addrs, []string{want.String()}) {
		return false, fmt.Sprintf("%s: %s.node: %s %v, want NOERROR [%s]", h.Name, peer, rcode, addrs, want)
	}
	for _, n := range hidden {
		rcode, addrs, err := faultDig(h, n+".node.weft.internal")
		if err != nil {
			return false, err.Error()
		}
		if rcode != "NXDOMAIN" || len(addrs) > 0 {
			return false, fmt.Sprintf("%s: %s.node (no right to reach it): %s %v, want NXDOMAIN", h.Name, n, rcode, addrs)
		}
	}
	return true, ""
}

// ---- interfaces ----

// faultIfindex is the ifindex of h's wf-<seg>.
func faultIfindex(t testing.TB, h *Host, seg string) int {
	t.Helper()
	out, err := exec.Command("ip", "-n", h.NS, "-j", "link", "show", "wf-"+seg).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: ip link show wf-%s: %v: %s", h.Name, seg, err, out)
	}
	var links []struct {
		Ifindex int `json:"ifindex"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		t.Fatalf("%s: ip -j link show wf-%s: %q: %v", h.Name, seg, out, err)
	}
	return links[0].Ifindex
}

// ---- logs ----

// faultLogMark is a position in a host's agent.log.
func faultLogMark(h *Host) int { return len(h.Log()) }

// faultLogSince is what h's agents logged after mark.
func faultLogSince(h *Host, mark int) string {
	l := h.Log()
	if mark > len(l) {
		return ""
	}
	return l[mark:]
}

// faultLogLines returns the lines of log that contain every one of subs.
func faultLogLines(log string, subs ...string) []string {
	var out []string
	for _, line := range strings.Split(log, "\n") {
		ok := true
		for _, s := range subs {
			if !strings.Contains(line, s) {
				ok = false
				break
			}
		}
		if ok && line != "" {
			out = append(out, line)
		}
	}
	return out
}

var (
	faultElectionWonRE = regexp.MustCompile(`msg="election won".*\bterm=(\d+)`)
	faultLeaderStateRE = regexp.MustCompile(`msg="entering leader state"`)
)

// faultLedTerms reads from a server's log the Raft terms it won, and how many
// times it entered the leader state.
func faultLedTerms(log string) (terms []int, leaderStates int) {
	for _, line := range strings.Split(log, "\n") {
		if m := faultElectionWonRE.FindStringSubmatch(line); m != nil {
			n, _ := strconv.Atoi(m[1])
			terms = append(terms, n)
		}
		if faultLeaderStateRE.MatchString(line) {
			leaderStates++
		}
	}
	return terms, leaderStates
}

// faultOneLeaderPerTerm asserts, from the servers' logs, that no two
// servers led in the same term, and that every time a server entered the
// leader state it had won an election whose term it logged.
func faultOneLeaderPerTerm(t *testing.T, servers []*Host) {
	t.Helper()
	byTerm := map[int]string{}
	for _, s := range servers {
		terms, states := faultLedTerms(s.Log())
		if states != len(terms) {
			t.Errorf("%s entered the leader state %d times but logged %d won elections (terms %v)", s.Name, states, len(terms), terms)
		}
		for _, term := range terms {
			if other, ok := byTerm[term]; ok && other != s.Name {
				t.Errorf("two leaders in term %d: %s and %s", term, other, s.Name)
			}
			byTerm[term] = s.Name
		}
	}
	t.Logf("leaders by term: %v", byTerm)
}

// ---- sealed data-dir files ----

// faultSealedFile is a data-dir file written with its checksum (docs/cli.md):
// {"sha256": hex of sha256(body), "body": ...}.
type faultSealedFile struct {
	SHA256 string          `json:"sha256"`
	Body   json.RawMessage `json:"body"`
}

// faultReadSealed parses a sealed file and verifies its checksum; it decodes
// the body into v.
func faultReadSealed(path string, v any) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var f faultSealedFile
	if err := json.Unmarshal(raw, &f); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	sum := sha256.Sum256(f.Body)
	if hex.EncodeToString(sum[:]) != f.SHA256 {
		return fmt.Errorf("%s: checksum mismatch", path)
	}
	if err := json.Unmarshal(f.Body, v); err != nil {
		return fmt.Errorf("%s: body: %w", path, err)
	}
	return nil
}

// persisted is the part of state.json and plan.json the scenarios read.
type faultPersistedState struct {
	Index  uint64 `json:"index"`
	Policy *struct {
		Version uint64 `json:"version"`
	} `json:"policy"`
}

type faultPersistedPlan struct {
	StateIndex uint64 `json:"state_index"`
	Plan       *struct {
		PolicyVersion uint64 `json:"PolicyVersion"` // policy.Plan has no JSON tags
	} `json:"plan"`
}

// faultOnDisk reads h's state.json and plan.json: the state index, the policy
// version of the state and that of the plan.
func faultOnDisk(h *Host) (index, statePolicy, planPolicy uint64, err error) {
	var st faultPersistedState
	if err := faultReadSealed(h.DataFile("state.json"), &st); err != nil {
		return 0, 0, 0, err
	}
	var pl faultPersistedPlan
	if err := faultReadSealed(h.DataFile("plan.json"), &pl); err != nil {
		return 0, 0, 0, err
	}
	if st.Policy != nil {
		statePolicy = st.Policy.Version
	}
	if pl.Plan != nil {
		planPolicy = pl.Plan.PolicyVersion
	}
	return st.Index, statePolicy, planPolicy, nil
}

// faultFlipDigit changes one digit in the body of a sealed file to another
// digit, so that the file is still JSON and only its checksum tells.
func faultFlipDigit(t *testing.T, raw []byte) []byte {
	t.Helper()
	start := bytes.Index(raw, []byte(`"body":`))
	if start < 0 {
		t.Fatalf("no body in %q", raw)
	}
	out := bytes.Clone(raw)
	for i := start + (len(raw)-start)/2; i < len(raw); i++ {
		if c := out[i]; c >= '0' && c <= '9' {
			out[i] = '0' + (c-'0'+1)%10
			return out
		}
	}
	t.Fatalf("no digit in the second half of the body of %q", raw)
	return nil
}

// ---- cluster views ----

// faultLeader returns the leader every host in hosts names, when they agree
// on one and it is the Raft leader.
func faultLeader(hosts []*Host) (string, string) {
	vs := observe(hosts)
	seen := describe(vs)
	leader := ""
	for i, v := range vs {
		if v.err != nil || v.status.Leader == "" || (i > 0 && v.status.Leader != leader) {
			return "", seen
		}
		leader = v.status.Leader
	}
	for _, v := range vs {
		if v.host.Name == leader && v.status.RaftState != "Leader" {
			return "", seen
		}
	}
	return leader, seen
}

// faultPolicyOn is `weft policy show -json` on h.
func faultPolicyOn(h *Host) (PolicyInfo, error) {
	var p PolicyInfo
	return p, h.TryJSON(&p, "policy", "show")
}

// faultStateIndex is h's state index from `weft status`.
func faultStateIndex(h *Host) (uint64, error) {
	st, err := h.Status()
	return st.StateIndex, err
}
