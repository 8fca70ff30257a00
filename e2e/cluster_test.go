package e2e

// Control-plane scenarios: forming a cluster, losing its leader, leaving and
// rejoining, refusing bad credentials, and keeping secrets out of logs (bad
// configs are in config_test.go). Each runs on its own bed, in parallel, against the CLI
// contract of docs/cli.md.

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// Generous deadlines for liveness only; the measured times are figures.
const (
	upTimeout        = 30 * time.Second // one agent up and answering
	formTimeout      = 60 * time.Second // every agent agrees
	failoverDeadline = 30 * time.Second // a new leader after the old one died
	goneTimeout      = 30 * time.Second // a departure seen everywhere
)

// formation is the outcome of formCluster.
type formation struct {
	took   time.Duration     // from the first start until every agent agreed
	tokens map[string]string // join token used by each host
}

// formCluster brings up a cluster the way an operator does: the first
// server bootstraps; once it leads, it issues one single-use token per
// other host; each of those starts with a join block naming the servers.
// It returns once every agent agrees (see agreement).
func formCluster(t *testing.T, servers, clients []*Host) formation {
	t.Helper()
	return formTaggedCluster(t, servers, clients, nil)
}

// formTaggedCluster is formCluster with tags (the policy's selectors) in
// the config of the hosts named in tags.
func formTaggedCluster(t *testing.T, servers, clients []*Host, tags map[string][]string) formation {
	t.Helper()
	f := formation{tokens: map[string]string{}}
	start := time.Now()
	s1 := servers[0]
	bootstrap(t, s1, tags[s1.Name]...)
	for _, s := range servers[1:] {
		tok := createToken(t, s1, "-server")
		f.tokens[s.Name] = tok.Token
		s.WriteConfig(s.ConfigHCL(AgentConfig{Server: true, Tags: tags[s.Name], Token: tok.Token, JoinVia: servers}))
	}
	for _, c := range clients {
		tok := createToken(t, s1)
		f.tokens[c.Name] = tok.Token
		c.WriteConfig(c.ConfigHCL(AgentConfig{Tags: tags[c.Name], Token: tok.Token, JoinVia: servers}))
	}
	for _, h := range slices.Concat(servers[1:], clients) {
		h.Start(t)
	}
	all := slices.Concat(servers, clients)
	Eventually(t, formTimeout, func() (bool, string) { return agreement(all, names(all)) })
	f.took = time.Since(start)
	return f
}

// bootstrap starts s as the bootstrap server and waits until it leads.
func bootstrap(t *testing.T, s *Host, tags ...string) {
	t.Helper()
	s.WriteConfig(s.ConfigHCL(AgentConfig{Server: true, Bootstrap: true, Tags: tags}))
	s.Start(t)
	Eventually(t, upTimeout, func() (bool, string) {
		st, err := s.Status()
		if err != nil {
			return false, err.Error()
		}
		return st.Ready && st.Leader == s.Name, fmt.Sprintf("%+v", st)
	})
}

func createToken(t *testing.T, on *Host, flags ...string) Token {
	t.Helper()
	var tok Token
	on.CLIJSON(t, &tok, append([]string{"token", "create"}, flags...)...)
	if tok.Token == "" {
		t.Fatalf("%s: token create %v printed no token", on.Name, flags)
	}
	return tok
}

// registry returns serials by node name, from `node list` on h.
func registry(t *testing.T, h *Host) map[string][]string {
	t.Helper()
	nodes, err := h.Nodes()
	if err != nil {
		t.Fatal(err)
	}
	m := map[string][]string{}
	for _, n := range nodes {
		m[n.Name] = n.Serials
	}
	return m
}

func nodeNames(nodes []Node) []string {
	var ns []string
	for _, n := range nodes {
		ns = append(ns, n.Name)
	}
	sort.Strings(ns)
	return ns
}

func without(hosts []*Host, drop ...*Host) []*Host {
	var out []*Host
	for _, h := range hosts {
		if !slices.Contains(drop, h) {
			out = append(out, h)
		}
	}
	return out
}

func roleOf(name string) string {
	if strings.HasPrefix(name, "s") {
		return "server"
	}
	return "client"
}

func readFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// 1. Three servers and two clients form one cluster.
func TestClusterForms(t *testing.T) {
	t.Parallel()
	b := NewBed(t, "s1", "s2", "s3", "c1", "c2")
	servers, clients := b.Select("s1", "s2", "s3"), b.Select("c1", "c2")
	all := b.Hosts()

	f := formCluster(t, servers, clients)
	Figure(t, "cluster_formation_3s2c", f.took.Seconds(), "s")

	// Servers, and only servers, are Raft voters; clients are not in Raft.
	wantVoters := names(servers)
	Eventually(t, upTimeout, func() (bool, string) {
		for _, v := range observe(all) {
			if v.err != nil {
				return false, v.String()
			}
			if v.status.Role != roleOf(v.host.Name) {
				return false, fmt.Sprintf("%s: role %q", v.host.Name, v.status.Role)
			}
			if v.status.Role == "client" {
				if v.status.RaftState != "" || v.status.RaftPeers != nil {
					return false, fmt.Sprintf("client %s is in Raft: %q %v", v.host.Name, v.status.RaftState, v.status.RaftPeers)
				}
				continue
			}
			var voters []string
			for _, p := range v.status.RaftPeers {
				if p.Voter {
					voters = append(voters, p.ID)
				}
			}
			sort.Strings(voters)
			if !slices.Equal(voters, wantVoters) || len(v.status.RaftPeers) != len(wantVoters) {
				return false, fmt.Sprintf("%s: raft peers %+v", v.host.Name, v.status.RaftPeers)
			}
		}
		return true, ""
	})

	// Every agent sees the same registry: the five hosts with their roles,
	// each holding a certificate, and nothing else.
	for _, v := range observe(all) {
		for _, m := range v.members {
			if m.Role != roleOf(m.Name) {
				t.Errorf("%s sees member %s with role %q", v.host.Name, m.Name, m.Role)
			}
		}
	}
	for _, h := range all {
		nodes, err := h.Nodes()
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(names(all), nodeNames(nodes)); diff != "" {
			t.Errorf("%s: node list (-want +got):\n%s", h.Name, diff)
		}
		for _, n := range nodes {
			if n.Role != roleOf(n.Name) || len(n.Serials) == 0 {
				t.Errorf("%s: node %s: role %q, serials %v", h.Name, n.Name, n.Role, n.Serials)
			}
		}
	}
}

// 2. kill -9 of the leader: the survivors elect another, writes go on, and
// the old leader comes back with its own identity, without a token.
func TestLeaderFailover(t *testing.T) {
	t.Parallel()
	b := NewBed(t, "s1", "s2", "s3", "c1")
	servers, clients := b.Select("s1", "s2", "s3"), b.Select("c1")
	all := b.Hosts()
	formCluster(t, servers, clients)

	var st Status
	servers[0].CLIJSON(t, &st, "status")
	old := b.Host(st.Leader)
	survivors := without(servers, old)
	before := registry(t, servers[0])
	oldCert := readFile(t, old.DataFile("node.crt"))

	killed := time.Now()
	if err := old.Kill(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, err := old.Wait(killTimeout); err != nil {
		t.Fatal(err)
	}

	var newLeader string
	Eventually(t, failoverDeadline, func() (bool, string) {
		vs := observe(survivors)
		seen := describe(vs)
		var leaders []string
		for _, v := range vs {
			if v.err != nil || v.status.Leader == "" || v.status.Leader != vs[0].status.Leader {
				return false, seen
			}
			if v.status.RaftState == "Leader" {
				leaders = append(leaders, v.host.Name)
			}
		}
		l := vs[0].status.Leader
		if l == old.Name || len(leaders) != 1 || leaders[0] != l {
			return false, fmt.Sprintf("raft leaders %v; %s", leaders, seen)
		}
		newLeader = l
		return true, seen
	})
	Figure(t, "leader_failover", time.Since(killed).Seconds(), "s")
	t.Logf("leader %s killed, %s took over", old.Name, newLeader)

	// Writes work again, on the leader and through a follower.
	for _, s := range survivors {
		createToken(t, s)
	}

	// A crash is not a leave: the old leader stays registered, not alive.
	Eventually(t, goneTimeout, func() (bool, string) {
		vs := observe(without(all, old))
		for _, v := range vs {
			m, ok := v.member(old.Name)
			if v.err != nil || !ok || m.Status == "alive" {
				return false, describe(vs)
			}
		}
		return true, ""
	})
	if _, ok := registry(t, survivors[0])[old.Name]; !ok {
		t.Fatalf("%s was dropped from the registry after a crash", old.Name)
	}

	// The old leader restarts with the same config. It already has an
	// identity, so it must not use a token: the harness never runs `join`
	// for it, its certificate file is untouched and the registry holds the
	// same serials for every node as before.
	old.Start(t)
	Eventually(t, formTimeout, func() (bool, string) { return agreement(all, names(all)) })
	for _, h := range []*Host{survivors[0], old} {
		if diff := cmp.Diff(before, registry(t, h)); diff != "" {
			t.Errorf("registry on %s changed across the failover (-before +after):\n%s", h.Name, diff)
		}
	}
	if !bytes.Equal(oldCert, readFile(t, old.DataFile("node.crt"))) {
		t.Errorf("%s got a new node.crt on restart", old.Name)
	}
	// It is a voter again.
	Eventually(t, upTimeout, func() (bool, string) {
		st, err := b.Host(newLeader).Status()
		if err != nil {
			return false, err.Error()
		}
		if st.RaftState != "Leader" {
			// Leadership may have moved; ask whoever leads now.
			if st.Leader == "" {
				return false, fmt.Sprintf("%+v", st)
			}
			if st, err = b.Host(st.Leader).Status(); err != nil {
				return false, err.Error()
			}
		}
		for _, p := range st.RaftPeers {
			if p.ID == old.Name && p.Voter {
				return true, ""
			}
		}
		return false, fmt.Sprintf("raft peers %+v", st.RaftPeers)
	})
}

// 3. A graceful leave forgets the identity everywhere; a rejoin needs a new
// token and yields a new certificate.
func TestLeaveAndRejoin(t *testing.T) {
	t.Parallel()
	b := NewBed(t, "s1", "c1", "c2")
	s1, c1 := b.Host("s1"), b.Host("c1")
	all := b.Hosts()
	others := without(all, c1)
	formCluster(t, b.Select("s1"), b.Select("c1", "c2"))
	oldSerials := registry(t, s1)["c1"]
	if len(oldSerials) == 0 {
		t.Fatalf("c1 has no serial in the registry")
	}

	if _, _, err := c1.CLI("leave"); err != nil {
		t.Fatal(err)
	}
	code, err := c1.Wait(upTimeout)
	if err != nil {
		t.Fatal(err)
	}
	if code != 0 {
		t.Errorf("agent exited %d after leave, want 0", code)
	}
	for _, f := range []string{"node.key", "node.crt"} {
		if _, err := os.Stat(c1.DataFile(f)); !os.IsNotExist(err) {
			t.Errorf("%s still in c1's data dir after leave (stat: %v)", f, err)
		}
	}

	// Gone from gossip and from the registry on every other agent, which
	// keep seeing each other.
	Eventually(t, goneTimeout, func() (bool, string) {
		for _, h := range others {
			ms, err := h.Members()
			if err != nil {
				return false, err.Error()
			}
			nodes, err := h.Nodes()
			if err != nil {
				return false, err.Error()
			}
			v := view{host: h, members: ms}
			if _, listed := v.member("c1"); listed || slices.Contains(nodeNames(nodes), "c1") {
				return false, fmt.Sprintf("%s still lists c1: members %v nodes %v", h.Name, v.memberNames(), nodeNames(nodes))
			}
			if !slices.Equal(v.memberNames(), names(others)) {
				return false, fmt.Sprintf("%s: members %v", h.Name, v.memberNames())
			}
			for _, m := range ms {
				if m.Status != "alive" {
					return false, fmt.Sprintf("%s sees %s %s", h.Name, m.Name, m.Status)
				}
			}
		}
		return true, ""
	})

	// Restarted without a join block, it stays out.
	c1.WriteConfig(c1.ConfigHCL(AgentConfig{}))
	c1.Start(t)
	Eventually(t, upTimeout, func() (bool, string) {
		st, err := c1.Status()
		if err != nil {
			return false, err.Error()
		}
		return !st.Joined, fmt.Sprintf("%+v", st)
	})
	for _, h := range others {
		ms, err := h.Members()
		if err != nil {
			t.Fatal(err)
		}
		if _, listed := (view{members: ms}).member("c1"); listed {
			t.Errorf("%s lists the unjoined c1", h.Name)
		}
	}

	// A new token lets it back in, under a new certificate.
	tok := createToken(t, s1)
	if _, _, err := c1.CLI("join", "-token", tok.Token, s1.Addr(rpcPort)); err != nil {
		t.Fatal(err)
	}
	Eventually(t, formTimeout, func() (bool, string) { return agreement(all, names(all)) })
	for _, h := range all {
		serials := registry(t, h)["c1"]
		if len(serials) == 0 {
			t.Errorf("%s: c1 rejoined without a serial", h.Name)
		}
		for _, s := range serials {
			if slices.Contains(oldSerials, s) {
				t.Errorf("%s: c1 rejoined with its old serial %s", h.Name, s)
			}
		}
	}
}

// 4. What must be refused: a reused, an expired and a forged token, a wrong
// gossip key, and a client certificate on the Raft port.
func TestBadCredentials(t *testing.T) {
	t.Parallel()
	b := NewBed(t, "s1", "s2", "s3", "c1", "c2")
	servers := b.Select("s1", "s2", "s3")
	s1, s2, c1, c2 := b.Host("s1"), b.Host("s2"), b.Host("c1"), b.Host("c2")
	formCluster(t, servers, nil)

	// c1 joins legitimately with a single-use token.
	single := createToken(t, s1, "-uses", "1")
	c1.WriteConfig(c1.ConfigHCL(AgentConfig{Token: single.Token, JoinVia: servers}))
	c1.Start(t)
	joined := slices.Concat(servers, []*Host{c1})
	Eventually(t, formTimeout, func() (bool, string) { return agreement(joined, names(joined)) })
	c1Serials := registry(t, s1)["c1"]

	// c2 runs unjoined and tries its luck.
	c2.WriteConfig(c2.ConfigHCL(AgentConfig{}))
	c2.Start(t)
	Eventually(t, upTimeout, func() (bool, string) {
		st, err := c2.Status()
		if err != nil {
			return false, err.Error()
		}
		return !st.Joined, fmt.Sprintf("%+v", st)
	})
	refused := func(what, token, mention string) {
		t.Helper()
		out, stderr, err := c2.CLI("join", "-token", token, s1.Addr(rpcPort))
		if err == nil {
			t.Fatalf("c2 joined with %s; stdout: %s", what, out)
		}
		if code := exitCode(err); code != 1 {
			t.Errorf("join with %s: exit %d, want 1", what, code)
		}
		if !strings.Contains(strings.ToLower(stderr), mention) {
			t.Errorf("join with %s: stderr %q does not mention %q", what, stderr, mention)
		}
		if !c2.Running() {
			t.Fatalf("c2's agent exited after a join with %s", what)
		}
		for _, v := range observe(joined) {
			if v.err != nil {
				t.Fatal(v.err)
			}
			if diff := cmp.Diff(names(joined), v.memberNames()); diff != "" {
				t.Errorf("after join with %s, %s's members changed (-want +got):\n%s", what, v.host.Name, diff)
			}
		}
		for _, h := range joined {
			if _, ok := registry(t, h)["c2"]; ok {
				t.Errorf("after join with %s, %s has c2 in its registry", what, h.Name)
			}
		}
	}

	// (a) The single-use token is spent.
	refused("a used single-use token", single.Token, "token")

	// (b) An expired token.
	expiring := createToken(t, s1, "-ttl", "1s")
	// A deliberate sleep: the token's lifetime has to pass, and there is
	// nothing to poll for. Bounded by the TTL plus a margin.
	wait := 2 * time.Second
	if w := time.Until(expiring.Expires) + 500*time.Millisecond; !expiring.Expires.IsZero() && w > wait && w < 10*time.Second {
		wait = w
	}
	time.Sleep(wait)
	refused("an expired token", expiring.Token, "expir")

	// (c) A forged secret, and a token that is noise altogether. spare stays
	// valid: it is the positive control below.
	spare := createToken(t, s1)
	refused("a token with a garbled secret", garble(spare.Token), "token")
	refused("a random token", "weft1"+randomLower(52), "token")

	// (e) The Raft port admits server identities only. The positive control
	// (s2's server certificate, dialled from the same namespace) shows that
	// a refusal is about the certificate, not the network.
	raftAddr := s1.Addr(raftPort)
	if out := tlsDial(t, c1, raftAddr, c1.DataFile("node.crt"), c1.DataFile("node.key")); !strings.HasPrefix(out, "refused:") {
		t.Errorf("c1's node certificate on %s's Raft port: %s, want refused", s1.Name, out)
	}
	if out := tlsDial(t, c1, raftAddr, s2.DataFile("server.crt"), s2.DataFile("server.key")); out != "handshake-ok" {
		t.Errorf("s2's server certificate on %s's Raft port: %s, want handshake-ok", s1.Name, out)
	}

	// (d) A wrong gossip key keeps c1 out of the pool even though it still
	// holds a valid certificate.
	c1.Stop(t)
	Eventually(t, goneTimeout, func() (bool, string) {
		vs := observe(servers)
		for _, v := range vs {
			if m, ok := v.member("c1"); v.err != nil || (ok && m.Status == "alive") {
				return false, describe(vs)
			}
		}
		return true, ""
	})
	key := make([]byte, 32)
	rand.Read(key)
	if err := os.WriteFile(c1.DataFile("gossip.key"), []byte(base64.StdEncoding.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c1.Start(t)
	Eventually(t, upTimeout, func() (bool, string) {
		_, err := c1.Status()
		return err == nil, fmt.Sprint(err)
	})
	Consistently(t, 10*time.Second, func() (bool, string) {
		if !c1.Running() {
			return false, "c1's agent exited"
		}
		vs := observe(servers)
		for _, v := range vs {
			if v.err != nil {
				return false, v.String()
			}
			if m, ok := v.member("c1"); ok && m.Status == "alive" {
				return false, "c1 is alive with a wrong gossip key: " + describe(vs)
			}
			for _, n := range v.memberNames() {
				if !slices.Contains(names(joined), n) {
					return false, "new member: " + describe(vs)
				}
			}
		}
		return true, ""
	})

	// Positive control for (a)-(c): c2 itself can join with a good token,
	// and the failed attempts did not spend it.
	if _, _, err := c2.CLI("join", "-token", spare.Token, s1.Addr(rpcPort)); err != nil {
		t.Fatal(err)
	}
	Eventually(t, formTimeout, func() (bool, string) {
		vs := observe(servers)
		for _, v := range vs {
			if m, ok := v.member("c2"); v.err != nil || !ok || m.Status != "alive" {
				return false, describe(vs)
			}
		}
		return true, ""
	})

	// The registry holds exactly the nodes that joined legitimately, and c1
	// kept its one certificate throughout.
	reg := registry(t, s1)
	var got []string
	for n := range reg {
		got = append(got, n)
	}
	sort.Strings(got)
	if diff := cmp.Diff([]string{"c1", "c2", "s1", "s2", "s3"}, got); diff != "" {
		t.Errorf("registry on s1 (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(c1Serials, reg["c1"]); diff != "" {
		t.Errorf("c1's serials changed (-before +after):\n%s", diff)
	}
}

// garble changes one character in the middle of the token's secret (its
// last "."-separated part, or all of it after the "weft1" prefix) to another
// of the same kind, so the token still parses but no longer matches. The
// middle, not the end: a last base64 character may carry only padding bits.
func garble(tok string) string {
	start := strings.LastIndex(tok, ".") + 1
	if start == 0 && strings.HasPrefix(tok, "weft1") {
		start = len("weft1")
	}
	i := start + (len(tok)-start)/2
	c := tok[i]
	switch {
	case c >= '0' && c <= '9':
		c = '0' + (c-'0'+1)%10
	case c >= 'a' && c <= 'z':
		c = 'a' + (c-'a'+1)%26
	case c >= 'A' && c <= 'Z':
		c = 'A' + (c-'A'+1)%26
	default:
		c = 'A'
	}
	return tok[:i] + string(c) + tok[i+1:]
}

// tokenSecret is the part of a token that must never be logged. The token
// format (docs/cli.md) is "weft1...", carrying the CA fingerprint (public)
// and a secret; the secret is taken to be the last "."-separated part. If
// the token has no separator, the whole token is the secret.
func tokenSecret(tok string) string {
	if i := strings.LastIndex(tok, "."); i >= 0 {
		return tok[i+1:]
	}
	return strings.TrimPrefix(tok, "weft1")
}

func randomLower(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	for i := range b {
		b[i] = 'a' + b[i]%26
	}
	return string(b)
}

// agentWroteLog reports whether log has lines besides the harness's own
// start markers.
func agentWroteLog(log string) bool {
	for _, line := range strings.Split(log, "\n") {
		if line != "" && !strings.HasPrefix(line, "=== e2e:") {
			return true
		}
	}
	return false
}

// 6. Keys and tokens never reach a log line, and secret files are private.
func TestNoSecretsInLogs(t *testing.T) {
	t.Parallel()
	b := NewBed(t, "s1", "c1")
	all := b.Hosts()
	f := formCluster(t, b.Select("s1"), b.Select("c1"))

	// state.json is written once applied state exists.
	Eventually(t, upTimeout, func() (bool, string) {
		for _, h := range all {
			if _, err := os.Stat(h.DataFile("state.json")); err != nil {
				return false, err.Error()
			}
		}
		return true, ""
	})
	modes := map[string]fs.FileMode{
		".": 0o700, "node.json": 0o600, "node.key": 0o600, "node.crt": 0o600,
		"ca.pem": 0o600, "gossip.key": 0o600, "state.json": 0o600,
	}
	for _, h := range all {
		want := maps.Clone(modes)
		if h.Name == "s1" {
			want["server.key"], want["server.crt"], want["raft"] = 0o600, 0o600, 0o700
		}
		for name, mode := range want {
			fi, err := os.Stat(h.DataFile(name))
			if err != nil {
				t.Errorf("%s: %v", h.Name, err)
				continue
			}
			if got := fi.Mode().Perm(); got != mode {
				t.Errorf("%s: %s has mode %#o, want %#o", h.Name, name, got, mode)
			}
		}
	}

	// Stop the agents so their shutdown logging is included too.
	for _, h := range slices.Backward(all) {
		h.Stop(t)
	}

	secrets := map[string]string{} // what → value
	for host, tok := range f.tokens {
		secrets["join token of "+host] = tok
		secrets["secret part of the join token of "+host] = tokenSecret(tok)
	}
	for _, h := range all {
		for i, line := range strings.Split(string(readFile(t, h.DataFile("gossip.key"))), "\n") {
			line = strings.TrimSpace(line)
			if line == "" {
				continue
			}
			secrets[fmt.Sprintf("gossip key %d of %s", i, h.Name)] = line
			if raw, err := base64.StdEncoding.DecodeString(line); err == nil {
				secrets[fmt.Sprintf("gossip key %d of %s, in hex", i, h.Name)] = hex.EncodeToString(raw)
			}
		}
		filepath.WalkDir(h.DataDir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".key") || d.Name() == "gossip.key" {
				return err
			}
			for i, line := range strings.Split(string(readFile(t, path)), "\n") {
				line = strings.TrimSpace(line)
				// PEM body lines; short ones (the tail of the last line) could
				// match by chance.
				if len(line) >= 16 && !strings.HasPrefix(line, "-----") && !strings.Contains(line, ":") {
					secrets[fmt.Sprintf("line %d of %s's %s", i+1, h.Name, d.Name())] = line
				}
			}
			return nil
		})
	}
	if len(secrets) < 4 {
		t.Fatalf("found only %d secrets to look for; the data dirs are not what the test expects", len(secrets))
	}
	t.Logf("looking for %d secrets in %d agent logs", len(secrets), len(all))
	for _, h := range all {
		log := h.Log()
		if !agentWroteLog(log) {
			t.Errorf("%s: the agent logged nothing; nothing to check", h.Name)
		}
		for what, s := range secrets {
			if strings.Contains(log, s) {
				t.Errorf("%s's agent.log contains the %s", h.Name, what)
			}
		}
	}
}
