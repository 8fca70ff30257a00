package e2e

// Mesh DNS scenarios: what each host's resolver answers (and, as much, what
// it must not answer) under a policy, as a service's check fails and
// passes, as a host dies, with every server down, and to names and askers
// it must not serve. Queries are real: dig(1) in the host's namespace
// against the agent's default listener, 127.0.0.1:8600. Each scenario runs
// on its own bed, in parallel.

import (
	"bufio"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const (
	dnsDomain = "weft.internal"
	dnsListen = "127.0.0.1"
	dnsPort   = "8600"
	// deadHostDeadline is generous: gossip has to suspect db1 and then
	// declare it dead.
	deadHostDeadline = 60 * time.Second
)

// dnsPolicy: the web hosts may reach the postgres service; nothing else
// crosses a segment. web1 becomes a guest of db (the first segment db1 is
// a member of), ops hosts reach only each other.
const dnsPolicy = `
segment "web" {
  cidr    = "10.90.1.0/24"
  port    = 51821
  members = ["tag:web"]
}

segment "db" {
  cidr    = "10.90.2.0/24"
  port    = 51822
  members = ["tag:postgres"]
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
`

// pgService is db1's postgres: checked every 500ms against a listener the
// test runs on db1 (and stops to fail the check).
const pgService = `
service "postgres" {
  port = 5432
  tags = ["primary"]
  check {
    tcp      = "127.0.0.1:5432"
    interval = "500ms"
    timeout  = "200ms"
  }
}
`

// pgListen is where the stand-in for postgres listens: every address, so
// that web1 can also connect through the overlay.
const pgListen = "0.0.0.0:5432"

var dnsTags = map[string][]string{
	"s1": {"ops"}, "ops1": {"ops"},
	"web1": {"web"}, "db1": {"postgres"},
}

// ---- dig ----

// A dnsRR is one record of a reply, as dig prints it, without the TTL.
type dnsRR struct {
	Name, Type, Data string
}

func (r dnsRR) String() string { return r.Name + " " + r.Type + " " + r.Data }

// dnsReply is dig's view of one reply.
type dnsReply struct {
	Status                        string // NOERROR, NXDOMAIN, REFUSED, ...; "" without a reply
	Answer, Authority, Additional []dnsRR
	raw                           string
}

func (r dnsReply) String() string {
	if r.Status == "" {
		return "no reply: " + strings.TrimSpace(r.raw)
	}
	return fmt.Sprintf("%s answer=%v additional=%v", r.Status, r.Answer, r.Additional)
}

// data returns the data of the answer records of type typ, sorted.
func (r dnsReply) data(typ string) []string {
	var out []string
	for _, rr := range r.Answer {
		if rr.Type == typ {
			out = append(out, rr.Data)
		}
	}
	slices.Sort(out)
	return out
}

var digStatusRE = regexp.MustCompile(`->>HEADER<<- opcode: \w+, status: (\w+),`)

// dig asks the DNS server at server:port from the host's namespace, one
// try of one second. A query that gets no reply is not an error: its
// reply has no Status.
func dig(h *Host, server string, args ...string) (dnsReply, error) {
	argv := append([]string{"@" + server, "-p", dnsPort, "+time=1", "+tries=1",
		"+noall", "+comments", "+answer", "+authority", "+additional"}, args...)
	out, err := h.Exec("dig", argv...)
	r := parseDig(out)
	if err != nil && exitCode(err) != 9 { // 9: no reply from the server
		return r, err
	}
	if err == nil && r.Status == "" {
		return r, fmt.Errorf("%s: dig %s: no status in %q", h.Name, strings.Join(args, " "), out)
	}
	return r, nil
}

func parseDig(out string) dnsReply {
	r := dnsReply{raw: out}
	var section *[]dnsRR
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "":
		case strings.HasPrefix(line, ";"):
			if m := digStatusRE.FindStringSubmatch(line); m != nil {
				r.Status = m[1]
			}
			switch {
			case strings.HasPrefix(line, ";; ANSWER SECTION"):
				section = &r.Answer
			case strings.HasPrefix(line, ";; AUTHORITY SECTION"):
				section = &r.Authority
			case strings.HasPrefix(line, ";; ADDITIONAL SECTION"):
				section = &r.Additional
			case strings.HasPrefix(line, ";; ") && strings.HasSuffix(line, "SECTION:"):
				section = nil // OPT PSEUDOSECTION and the like
			}
		default:
			// name ttl class type data...
			f := strings.Fields(line)
			if section == nil || len(f) < 5 {
				continue
			}
			*section = append(*section, dnsRR{Name: strings.ToLower(f[0]), Type: f[3], Data: strings.Join(f[4:], " ")})
		}
	}
	return r
}

// ask queries the host's own resolver (the default listener).
func ask(h *Host, name, qtype string) (dnsReply, error) {
	return dig(h, dnsListen, name, qtype)
}

func fqdn(label, kind string) string { return label + "." + kind + "." + dnsDomain + "." }

func reverseName(a netip.Addr) string {
	b := a.As4()
	return fmt.Sprintf("%d.%d.%d.%d.in-addr.arpa.", b[3], b[2], b[1], b[0])
}

// answers holds when h's resolver says NOERROR with exactly want as the
// records of type qtype (and nothing else in the answer).
func answers(h *Host, name, qtype string, want ...string) (bool, string) {
	r, err := ask(h, name, qtype)
	if err != nil {
		return false, err.Error()
	}
	slices.Sort(want)
	ok := r.Status == "NOERROR" && len(r.Answer) == len(want) && slices.Equal(r.data(qtype), want)
	return ok, fmt.Sprintf("%s: %s %s: %s; want NOERROR %v", h.Name, name, qtype, r, want)
}

// answersNothing holds when h's resolver replies with one of the rcodes
// and no answer record at all.
func answersNothing(h *Host, name, qtype string, rcodes ...string) (bool, string) {
	r, err := ask(h, name, qtype)
	if err != nil {
		return false, err.Error()
	}
	ok := slices.Contains(rcodes, r.Status) && len(r.Answer) == 0
	return ok, fmt.Sprintf("%s: %s %s: %s; want %s and no answer", h.Name, name, qtype, r, strings.Join(rcodes, " or "))
}

// mustHold fails the test now with what cond saw, unless it holds.
func mustHold(t *testing.T, cond func() (bool, string)) {
	t.Helper()
	if ok, seen := cond(); !ok {
		t.Error(seen)
	}
}

// ---- the postgres stand-in ----

// pgListener is a listen helper on a host standing in for postgres. Unlike
// startHelper's, it can be stopped in the middle of a test.
type pgListener struct {
	host *Host
	cmd  *exec.Cmd
	done chan struct{}
}

// startPG starts a listener on pgListen in h's namespace and waits until it
// is bound. It is killed when the test ends, if not before.
func startPG(t *testing.T, h *Host, run int) *pgListener {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(h.Dir, fmt.Sprintf("pg-%d.log", run))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close() // the child has its own descriptor
	cmd := exec.Command("ip", "netns", "exec", h.NS, self, "-test.run=^$")
	cmd.Env = append(os.Environ(), envHelper+"=listen", envHelperAddr+"="+pgListen)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: listen helper: %v", h.Name, err)
	}
	l := &pgListener{host: h, cmd: cmd, done: make(chan struct{})}
	go func() { cmd.Wait(); close(l.done) }()
	t.Cleanup(func() { l.stop(t) })
	Eventually(t, upTimeout, func() (bool, string) {
		b, _ := os.ReadFile(path)
		out := string(b)
		return strings.Contains(out, "ready\n") && !strings.Contains(out, "error:"), fmt.Sprintf("%s: listener says %q", h.Name, out)
	})
	return l
}

// stop kills the listener and waits until it is gone, so that its port is
// closed when stop returns.
func (l *pgListener) stop(t testing.TB) {
	l.cmd.Process.Kill()
	select {
	case <-l.done:
	case <-time.After(killTimeout):
		t.Errorf("%s: listen helper (pid %d) did not exit after SIGKILL", l.host.Name, l.cmd.Process.Pid)
	}
}

// ---- the bed ----

// formServiceCluster is formTaggedCluster with extra HCL (service blocks)
// in the config of the hosts named in extra. The bootstrap server gets
// none: it only serves.
func formServiceCluster(t *testing.T, servers, clients []*Host, tags map[string][]string, extra map[string]string) {
	t.Helper()
	s1 := servers[0]
	if extra[s1.Name] != "" {
		t.Fatalf("formServiceCluster: no extra config for the bootstrap server %s", s1.Name)
	}
	bootstrap(t, s1, tags[s1.Name]...)
	for _, s := range servers[1:] {
		tok := createToken(t, s1, "-server")
		s.WriteConfig(s.ConfigHCL(AgentConfig{Server: true, Tags: tags[s.Name], Token: tok.Token, JoinVia: servers, Extra: extra[s.Name]}))
	}
	for _, c := range clients {
		tok := createToken(t, s1)
		c.WriteConfig(c.ConfigHCL(AgentConfig{Tags: tags[c.Name], Token: tok.Token, JoinVia: servers, Extra: extra[c.Name]}))
	}
	for _, h := range slices.Concat(servers[1:], clients) {
		h.Start(t)
	}
	all := slices.Concat(servers, clients)
	Eventually(t, formTimeout, func() (bool, string) { return agreement(all, names(all)) })
}

// dnsBed is a formed cluster under dnsPolicy, db1 serving postgres.
type dnsBed struct {
	*Bed
	web1, db1 *Host
	pg        *pgListener
	// dbAddr is db1's address in segment db: the peer db1's allowed IP
	// on web1, which is where web1 reaches it.
	dbAddr netip.Addr
}

// newDNSBed forms the cluster (the first server bootstraps), applies
// dnsPolicy and waits until web1 resolves postgres.service to db1.
func newDNSBed(t *testing.T, servers, clients []string, tags map[string][]string) *dnsBed {
	t.Helper()
	b := &dnsBed{Bed: NewBed(t, slices.Concat(servers, clients)...)}
	b.web1, b.db1 = b.Host("web1"), b.Host("db1")
	b.pg = startPG(t, b.db1, 1)
	formServiceCluster(t, b.Select(servers...), b.Select(clients...), tags, map[string]string{"db1": pgService})
	s1 := b.Host(servers[0])
	v := applyPolicy(t, s1, "policy.hcl", dnsPolicy)
	applied := time.Now()
	Eventually(t, settleTimeout, func() (bool, string) {
		vs, err := policyVersions(s1)
		if err != nil {
			return false, err.Error()
		}
		for _, h := range b.Hosts() {
			if vs[h.Name] != v {
				return false, fmt.Sprintf("policy versions %v, want %d everywhere", vs, v)
			}
		}
		segs, err := b.web1.Segments()
		if err != nil {
			return false, err.Error()
		}
		for _, p := range peersOf(snapshot{"web1": segs}, "web1", "db") {
			if p.Name == "db1" && len(p.AllowedIPs) == 1 {
				pfx, err := netip.ParsePrefix(p.AllowedIPs[0])
				if err != nil {
					return false, err.Error()
				}
				b.dbAddr = pfx.Addr()
				return true, ""
			}
		}
		return false, fmt.Sprintf("web1 has no peer db1 in db: %+v", segs)
	})
	Eventually(t, upTimeout, func() (bool, string) {
		return answers(b.web1, fqdn("postgres", "service"), "A", b.dbAddr.String())
	})
	t.Logf("policy applied to postgres.service answered on web1: %v", time.Since(applied).Round(time.Millisecond))
	return b
}

// ---- scenarios ----

// 1. Each host learns what it may reach, at the address it reaches it
// through, and nothing about the rest.
func TestDNSFilteredByPolicy(t *testing.T) {
	t.Parallel()
	b := newDNSBed(t, []string{"s1"}, []string{"web1", "db1", "ops1"}, dnsTags)
	s1, web1, db1, ops1 := b.Host("s1"), b.web1, b.db1, b.Host("ops1")
	pg, db1Name := fqdn("postgres", "service"), fqdn("db1", "node")
	srvName := "_postgres._tcp.service." + dnsDomain + "."
	dbAddr := b.dbAddr.String()

	segs, err := db1.Segments()
	if err != nil {
		t.Fatal(err)
	}
	snap := snapshot{"db1": segs}
	if own := snap.addr("db1", "db"); own != b.dbAddr {
		t.Fatalf("db1's own address in db is %v, web1 reaches it at %v", own, b.dbAddr)
	}

	// web1 may reach postgres on db1.
	mustHold(t, func() (bool, string) { return answers(web1, pg, "A", dbAddr) })
	mustHold(t, func() (bool, string) { return answers(web1, db1Name, "A", dbAddr) })
	mustHold(t, func() (bool, string) { return answers(web1, fqdn("primary.postgres", "service"), "A", dbAddr) })
	mustHold(t, func() (bool, string) { return answers(web1, reverseName(b.dbAddr), "PTR", db1Name) })
	srv, err := ask(web1, srvName, "SRV")
	if err != nil {
		t.Fatal(err)
	}
	wantAdditional := []dnsRR{{Name: db1Name, Type: "A", Data: dbAddr}}
	if srv.Status != "NOERROR" || !slices.Equal(srv.data("SRV"), []string{"1 1 5432 " + db1Name}) || len(srv.Answer) != 1 {
		t.Errorf("web1: %s SRV: %s; want NOERROR and one SRV 1 1 5432 %s", srvName, srv, db1Name)
	}
	if diff := cmp.Diff(wantAdditional, srv.Additional); diff != "" {
		t.Errorf("web1: %s SRV: additional section (-want +got):\n%s", srvName, diff)
	}
	// The answer is where postgres really is, from web1.
	if out := web1.RunHelper(t, "connect", map[string]string{envHelperAddr: dbAddr + ":5432", envHelperDialTimeout: "3s"}); out != dbAddr+":5432 ok" {
		t.Errorf("web1 -> postgres at the address DNS gave (%s:5432): %q", dbAddr, out)
	}

	// `weft dns query` is the same resolver.
	var cliAns struct {
		Rcode  string   `json:"rcode"`
		Answer []string `json:"answer"`
	}
	// -json before NAME: flags stop at the first argument that is not one.
	web1.CLIJSON(t, &cliAns, "dns", "query", "-json", pg)
	viaDig, err := ask(web1, pg, "A")
	if err != nil {
		t.Fatal(err)
	}
	var viaCLI []dnsRR
	for _, line := range cliAns.Answer {
		f := strings.Fields(line)
		if len(f) < 5 {
			t.Fatalf("weft dns query: answer record %q", line)
		}
		viaCLI = append(viaCLI, dnsRR{Name: strings.ToLower(f[0]), Type: f[3], Data: strings.Join(f[4:], " ")})
	}
	if cliAns.Rcode != viaDig.Status {
		t.Errorf("weft dns query %s: rcode %s, dig says %s", pg, cliAns.Rcode, viaDig.Status)
	}
	if diff := cmp.Diff(viaDig.Answer, viaCLI, cmpEmpty); diff != "" {
		t.Errorf("weft dns query %s vs dig (-dig +weft):\n%s", pg, diff)
	}
	out, _, err := web1.CLI("dns", "query", pg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, ";; NOERROR from 127.0.0.1:8600") || !strings.Contains(out, dbAddr) {
		t.Errorf("weft dns query %s (table):\n%s", pg, out)
	}

	// web1 may not reach the ops hosts: nothing about them exists for it.
	for _, name := range []string{fqdn("s1", "node"), fqdn("ops1", "node")} {
		mustHold(t, func() (bool, string) { return answersNothing(web1, name, "A", "NXDOMAIN") })
	}

	// db1 knows itself.
	mustHold(t, func() (bool, string) { return answers(db1, db1Name, "A", dbAddr) })

	// The ops hosts may not reach db1: no address, no name, not even the
	// service. Their resolvers work (each resolves the other), so the
	// NXDOMAIN is the policy's and not a silent server's.
	for _, h := range []*Host{s1, ops1} {
		other := s1
		if h == s1 {
			other = ops1
		}
		opsSegs, err := other.Segments()
		if err != nil {
			t.Fatal(err)
		}
		otherAddr := snapshot{other.Name: opsSegs}.addr(other.Name, "ops")
		mustHold(t, func() (bool, string) { return answers(h, fqdn(other.Name, "node"), "A", otherAddr.String()) })
		for _, q := range []struct{ name, qtype string }{
			{pg, "A"}, {fqdn("primary.postgres", "service"), "A"}, {srvName, "SRV"}, {db1Name, "A"}, {db1Name, "AAAA"},
			{fqdn("web1", "node"), "A"},
		} {
			mustHold(t, func() (bool, string) { return answersNothing(h, q.name, q.qtype, "NXDOMAIN") })
		}
		// db1's address is not in its table: the reverse name is not the
		// mesh's, and with no upstreams it is refused.
		mustHold(t, func() (bool, string) { return answersNothing(h, reverseName(b.dbAddr), "PTR", "REFUSED", "NXDOMAIN") })
	}
}

// 2. A failing check takes the service's record away (the name stays, with
// no address), a passing one brings it back; the node's own record stays
// throughout.
func TestDNSHealth(t *testing.T) {
	t.Parallel()
	b := newDNSBed(t, []string{"s1"}, []string{"web1", "db1"}, dnsTags)
	web1 := b.web1
	pg, dbAddr := fqdn("postgres", "service"), b.dbAddr.String()

	b.pg.stop(t)
	stopped := time.Now()
	Eventually(t, 15*time.Second, func() (bool, string) { return answersNothing(web1, pg, "A", "NOERROR") })
	Figure(t, "dns_check_fail_to_record_gone", time.Since(stopped).Seconds(), "s")
	// The host is alive: its name still resolves, and the tagged and SRV
	// names of the service exist with nothing in them.
	mustHold(t, func() (bool, string) { return answers(web1, fqdn("db1", "node"), "A", dbAddr) })
	mustHold(t, func() (bool, string) {
		return answersNothing(web1, fqdn("primary.postgres", "service"), "A", "NOERROR", "NXDOMAIN")
	})
	mustHold(t, func() (bool, string) {
		return answersNothing(web1, "_postgres._tcp.service."+dnsDomain+".", "SRV", "NOERROR", "NXDOMAIN")
	})
	// And it stays gone while the check keeps failing.
	Consistently(t, 2*time.Second, func() (bool, string) { return answersNothing(web1, pg, "A", "NOERROR") })

	startPG(t, b.db1, 2)
	started := time.Now()
	Eventually(t, 15*time.Second, func() (bool, string) { return answers(web1, pg, "A", dbAddr) })
	Figure(t, "dns_check_pass_to_record_back", time.Since(started).Seconds(), "s")
	mustHold(t, func() (bool, string) { return answers(web1, fqdn("primary.postgres", "service"), "A", dbAddr) })
}

// 3. A host that dies (no leave) drops out of every answer once gossip
// declares it dead.
func TestDNSDeadHost(t *testing.T) {
	t.Parallel()
	b := newDNSBed(t, []string{"s1"}, []string{"web1", "db1"}, dnsTags)
	web1, db1 := b.web1, b.db1
	pg, db1Name := fqdn("postgres", "service"), fqdn("db1", "node")
	web1Segs, err := web1.Segments()
	if err != nil {
		t.Fatal(err)
	}
	var web1Addrs []string
	for _, x := range web1Segs {
		web1Addrs = append(web1Addrs, snapshot{"web1": web1Segs}.addr("web1", x.Name).String())
	}

	if err := db1.Kill(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, err := db1.Wait(killTimeout); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	Eventually(t, deadHostDeadline, func() (bool, string) {
		for _, q := range []struct{ name, qtype string }{{db1Name, "A"}, {pg, "A"}, {"_postgres._tcp.service." + dnsDomain + ".", "SRV"}} {
			if ok, seen := answersNothing(web1, q.name, q.qtype, "NXDOMAIN", "NOERROR"); !ok {
				return false, seen
			}
		}
		return true, ""
	})
	Figure(t, "dns_dead_host_records_gone", time.Since(killed).Seconds(), "s")
	// Gone from the answers because gossip says dead, not because web1's
	// resolver broke: web1 still resolves itself, and the PTR of db1's
	// address is no longer the mesh's.
	mustHold(t, func() (bool, string) { return answers(web1, fqdn("web1", "node"), "A", web1Addrs...) })
	mustHold(t, func() (bool, string) {
		return answersNothing(web1, reverseName(b.dbAddr), "PTR", "REFUSED", "NXDOMAIN")
	})
	ms, err := web1.Members()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Name == "db1" && m.Status != "dead" {
			t.Errorf("web1 no longer answers for db1, but its members say db1 is %q", m.Status)
		}
	}
}

// 4. Every server dies: a client's resolver keeps answering from its own
// state, the same records, never REFUSED or SERVFAIL.
func TestDNSServersDown(t *testing.T) {
	t.Parallel()
	b := newDNSBed(t, []string{"s1", "s2", "s3"}, []string{"web1", "db1"}, map[string][]string{
		"web1": {"web"}, "db1": {"postgres"},
	})
	web1, dbAddr := b.web1, b.dbAddr.String()
	type query struct{ name, qtype string }
	queries := []query{
		{fqdn("postgres", "service"), "A"},
		{fqdn("db1", "node"), "A"},
		{"_postgres._tcp.service." + dnsDomain + ".", "SRV"},
		{reverseName(b.dbAddr), "PTR"},
		{fqdn("s1", "node"), "A"}, // web1 may not reach the servers
	}
	before := map[query]dnsReply{}
	for _, q := range queries {
		r, err := ask(web1, q.name, q.qtype)
		if err != nil {
			t.Fatal(err)
		}
		before[q] = r
	}
	if r := before[queries[0]]; !slices.Equal(r.data("A"), []string{dbAddr}) {
		t.Fatalf("before: postgres.service: %s", r)
	}
	if r := before[queries[4]]; r.Status != "NXDOMAIN" {
		t.Fatalf("before: s1.node: %s, want NXDOMAIN", r)
	}

	for _, s := range b.Select("s1", "s2", "s3") {
		if err := s.Kill(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range b.Select("s1", "s2", "s3") {
		if _, err := s.Wait(killTimeout); err != nil {
			t.Fatal(err)
		}
	}
	// The answers must not change, from the kill until a while after
	// web1's gossip has declared every server dead, so that its table has
	// been rebuilt without them.
	same := func() (bool, string) {
		for _, q := range queries {
			r, err := ask(web1, q.name, q.qtype)
			if err != nil {
				return false, err.Error()
			}
			was := before[q]
			if r.Status != was.Status || !cmp.Equal(r.Answer, was.Answer, cmpEmpty) || !cmp.Equal(r.Additional, was.Additional, cmpEmpty) {
				return false, fmt.Sprintf("%s %s with every server down: %s; before: %s", q.name, q.qtype, r, was)
			}
		}
		return true, ""
	}
	serversDead := func() (bool, string) {
		ms, err := web1.Members()
		if err != nil {
			return false, err.Error()
		}
		dead := 0
		var seen []string
		for _, m := range ms {
			seen = append(seen, m.Name+":"+m.Status)
			if roleOf(m.Name) == "server" && m.Status == "dead" {
				dead++
			}
		}
		return dead == 3, "web1's members: " + strings.Join(seen, " ")
	}
	killed := time.Now()
	var deadAt time.Time
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for ; ; <-tick.C {
		if ok, seen := same(); !ok {
			t.Fatalf("after %v: %s", time.Since(killed).Round(time.Millisecond), seen)
		}
		if deadAt.IsZero() {
			ok, seen := serversDead()
			switch {
			case ok:
				deadAt = time.Now()
				t.Logf("web1 saw every server dead after %v", deadAt.Sub(killed).Round(time.Millisecond))
			case time.Since(killed) > deadHostDeadline:
				t.Fatalf("servers not declared dead within %v; %s", deadHostDeadline, seen)
			}
		} else if time.Since(deadAt) > 2*time.Second {
			break
		}
	}
}

// 5. Not an open resolver: names outside the mesh are refused (no
// upstreams), and nobody but the host itself gets an answer.
func TestDNSNotOpenResolver(t *testing.T) {
	t.Parallel()
	b := NewBed(t, "s1", "ops1")
	s1, ops1 := b.Host("s1"), b.Host("ops1")
	formTaggedCluster(t, b.Select("s1"), b.Select("ops1"), dnsTags)
	applyPolicy(t, s1, "policy.hcl", dnsPolicy)
	var opsAddr netip.Addr
	Eventually(t, settleTimeout, func() (bool, string) {
		segs, err := ops1.Segments()
		if err != nil {
			return false, err.Error()
		}
		opsAddr = snapshot{"ops1": segs}.addr("ops1", "ops")
		if !opsAddr.IsValid() {
			return false, fmt.Sprintf("ops1 has no address in ops: %+v", segs)
		}
		return answers(ops1, fqdn("ops1", "node"), "A", opsAddr.String())
	})

	// Outside the domain: refused, over UDP and TCP, forward and reverse.
	for _, q := range [][]string{
		{"example.com", "A"},
		{"+tcp", "example.com", "A"},
		{"example.com", "NS"},
		{"-x", "192.0.2.1"},
	} {
		r, err := dig(ops1, dnsListen, q...)
		if err != nil {
			t.Fatal(err)
		}
		if r.Status != "REFUSED" || len(r.Answer)+len(r.Additional) > 0 {
			t.Errorf("ops1: dig %s: %s; want REFUSED and no records", strings.Join(q, " "), r)
		}
	}

	// From another host, at ops1's underlay and overlay addresses (s1
	// reaches the latter: both are in ops): no reply with records. The
	// listener is on loopback only, so nothing should reply at all. Both
	// addresses do carry packets from s1 (so silence is not for want of a
	// route).
	for _, target := range []netip.Addr{ops1.IP, opsAddr} {
		Eventually(t, probeRetryFor, func() (bool, string) {
			return pingOnce(s1, target, 500*time.Millisecond), "s1 gets no ping answer from ops1 at " + target.String()
		})
	}
	for _, target := range []netip.Addr{ops1.IP, opsAddr} {
		for _, proto := range []string{"+notcp", "+tcp"} {
			r, err := dig(s1, target.String(), proto, fqdn("ops1", "node"), "A")
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("s1 asked ops1's resolver at %s (%s): %s", target, proto, r)
			if len(r.Answer)+len(r.Additional) > 0 || (r.Status != "" && r.Status != "REFUSED") {
				t.Errorf("s1 asked ops1's resolver at %s (%s): %s; want no reply, or REFUSED", target, proto, r)
			}
		}
	}
	// The question is answered where it may be asked: on ops1 itself.
	mustHold(t, func() (bool, string) { return answers(ops1, fqdn("ops1", "node"), "A", opsAddr.String()) })
}
