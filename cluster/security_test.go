package cluster

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hashicorp/memberlist"

	"github.com/weft-mesh/weft/identity"
	"github.com/weft-mesh/weft/policy"
)

// The security invariants of the cluster, each tested on its own. See also
// FuzzRPCHandlers, FuzzJoinCSR and FuzzNodeMeta, which check the same
// properties against random input.

// identityOf returns the identity agent c runs with.
func identityOf(t *testing.T, c *Cluster) *localIdentity {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ident == nil {
		t.Fatalf("%s has no identity", c.opts.Name)
	}
	return c.ident
}

// svidClient is an RPC client that presents cert and, like every weft
// client, accepts only a server SVID of c's CA.
func svidClient(t *testing.T, c *Cluster, cert tls.Certificate) *rpcClient {
	t.Helper()
	v := c.verifier(identity.KindServer)
	rc := newRPCClient(&tls.Config{
		MinVersion:            tls.VersionTLS13,
		InsecureSkipVerify:    true, // VerifyPeerCertificate checks the SPIFFE chain
		VerifyPeerCertificate: v.VerifyPeerCertificate,
		GetClientCertificate:  func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert, nil },
	})
	t.Cleanup(rc.close)
	return rc
}

// tlsCertOf returns the node (server false) or server SVID of li.
func tlsCertOf(t *testing.T, li *localIdentity, server bool) tls.Certificate {
	t.Helper()
	cert, err := li.tlsCert(server)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// raftRefuses dials a Raft port with cert and reports why the server
// refused it, or "" when the server kept the connection open for wait
// (accepted): with TLS 1.3 the client's side of the handshake may complete
// before the server has checked the client's certificate, so a refusal
// may show only at the first read; a read that times out means the server
// is waiting for Raft traffic, i.e. it accepted the certificate. Checks
// that expect a refusal wait long (a slow refusal is still one); the
// controls that expect acceptance need not.
func raftRefuses(t *testing.T, addr string, cert tls.Certificate, wait time.Duration) string {
	t.Helper()
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // this test checks the server's side only
		Certificates:       []tls.Certificate{cert},
	})
	if err != nil {
		return "handshake: " + err.Error()
	}
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(wait))
	_, err = conn.Read(make([]byte, 1))
	var ne net.Error
	switch {
	case err == nil:
		t.Fatalf("the Raft port of %s sent data to a client that sent nothing", addr)
	case errors.As(err, &ne) && ne.Timeout():
		return ""
	}
	return "first read: " + err.Error()
}

func remoteStatus(err error) int {
	var re *RemoteError
	if errors.As(err, &re) {
		return re.Status
	}
	return 0
}

// TestInvariantNodeCertIsNotServer: a client's node certificate cannot
// speak the server-only RPC (apply: 403, nothing applied) nor Raft (the
// handshake, or the first read, fails).
func TestInvariantNodeCertIsNotServer(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster on loopback")
	}
	h := newHarness(t, 60*time.Second)
	ctx := h.ctx
	s1o := h.options(t, "s1", 1, true, true)
	s1 := h.start(t, s1o)
	tok, err := s1.CreateToken(ctx, TokenRequest{TTL: time.Hour, Uses: 1})
	if err != nil {
		t.Fatal(err)
	}
	c1 := h.start(t, h.options(t, "c1", 3, false, false))
	if err := c1.Join(ctx, tok.Token, []string{rpcAddr(s1o)}); err != nil {
		t.Fatal(err)
	}
	c1id := identityOf(t, c1)
	node := svidClient(t, s1, tlsCertOf(t, c1id, false))

	// The node certificate is good for what nodes may do...
	var st State
	if err := node.do(ctx, "GET", rpcAddr(s1o), rpcState, nil, &st); err != nil {
		t.Fatalf("GET %s with c1's node certificate: %v", rpcState, err)
	}
	// ...and for nothing a server does.
	before := s1.State()
	for _, cmd := range []*Command{
		{Op: OpToken, Now: time.Now().UTC(), Token: &Token{ID: "abababababababab", SecretHash: hashSecret("x"), Expires: time.Now().Add(time.Hour), UsesLeft: 100}},
		{Op: OpToken, Now: time.Now().UTC(), Token: &Token{ID: "cdcdcdcdcdcdcdcd", SecretHash: hashSecret("x"), Server: true, Expires: time.Now().Add(time.Hour), UsesLeft: 100}},
		{Op: OpDeregister, Now: time.Now().UTC(), Deregister: &DeregisterCmd{Name: "s1", Reason: "removed"}},
		{Op: OpLocal, Now: time.Now().UTC(), Local: &LocalCmd{Name: "s1", Tags: []string{"pwned"}}},
		{Op: OpPolicy, Now: time.Now().UTC(), Policy: &PolicyCmd{Filename: "p.hcl", Source: metaPolicy, By: "c1"}},
	} {
		err := node.do(ctx, "POST", rpcAddr(s1o), rpcApply, cmd, nil)
		if got := remoteStatus(err); got != http.StatusForbidden {
			t.Errorf("POST %s (%s) with c1's node certificate: %v (status %d), want 403", rpcApply, cmd.Op, err, got)
		}
	}
	if d := cmp.Diff(before, s1.State(), stateOpts...); d != "" {
		t.Errorf("refused applies changed the state (-before +after):\n%s", d)
	}

	raftAddr := joinAddr(s1o.AdvertiseAddr.String(), s1o.RaftPort)
	// The control: s1's own server SVID is accepted on its Raft port.
	if why := raftRefuses(t, raftAddr, tlsCertOf(t, identityOf(t, s1), true), time.Second); why != "" {
		t.Fatalf("s1's Raft port refused s1's own server certificate: %s", why)
	}
	for what, cert := range map[string]tls.Certificate{
		"c1's node certificate": tlsCertOf(t, c1id, false),
		"s1's node certificate": tlsCertOf(t, identityOf(t, s1), false),
	} {
		if why := raftRefuses(t, raftAddr, cert, 5*time.Second); why == "" {
			t.Errorf("s1's Raft port accepted %s", what)
		} else {
			t.Logf("Raft port refused %s: %s", what, why)
		}
	}
}

// TestInvariantRemovedCertRefused: once a node has left, or was removed,
// every certificate it was issued is refused by every server, on every
// RPC that takes a certificate, and on Raft if it was a server.
func TestInvariantRemovedCertRefused(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a four-agent cluster on loopback")
	}
	h := newHarness(t, 90*time.Second)
	ctx := h.ctx
	s1o := h.options(t, "s1", 1, true, true)
	s1 := h.start(t, s1o)
	serverTok, err := s1.CreateToken(ctx, TokenRequest{Server: true, TTL: time.Hour, Uses: 2})
	if err != nil {
		t.Fatal(err)
	}
	clientTok, err := s1.CreateToken(ctx, TokenRequest{TTL: time.Hour, Uses: 1})
	if err != nil {
		t.Fatal(err)
	}
	s2o, s3o := h.options(t, "s2", 2, true, false), h.options(t, "s3", 4, true, false)
	s2, s3 := h.start(t, s2o), h.start(t, s3o)
	c1 := h.start(t, h.options(t, "c1", 3, false, false))
	for _, j := range []struct {
		c   *Cluster
		tok string
	}{{s2, serverTok.Token}, {s3, serverTok.Token}, {c1, clientTok.Token}} {
		if err := j.c.Join(ctx, j.tok, []string{rpcAddr(s1o)}); err != nil {
			t.Fatalf("%s Join: %v", j.c.opts.Name, err)
		}
	}
	waitFor(t, converge, func() (bool, string) {
		st := s1.Status()
		voters := 0
		for _, p := range st.RaftPeers {
			if p.Voter {
				voters++
			}
		}
		return voters == 3, fmt.Sprintf("raft peers %+v", st.RaftPeers)
	})
	waitReady(t, c1, "s1")

	// What the two victims hold, and the serials the registry has of them.
	c1id, s3id := identityOf(t, c1), identityOf(t, s3)
	var serials []string
	for _, name := range []string{"c1", "s3"} {
		for _, cr := range s1.State().Nodes[name].Certs {
			serials = append(serials, cr.Serial)
		}
	}
	if len(serials) != 3 {
		t.Fatalf("registered serials of c1 and s3: %v, want 1 + 2", serials)
	}
	certs := map[string]tls.Certificate{
		"c1's node certificate":   tlsCertOf(t, c1id, false),
		"s3's node certificate":   tlsCertOf(t, s3id, false),
		"s3's server certificate": tlsCertOf(t, s3id, true),
	}
	servers := map[string]Options{"s1": s1o, "s2": s2o}
	// The control: before, every one of them is accepted.
	for sname, so := range servers {
		for what, cert := range certs {
			var st State
			if err := svidClient(t, s1, cert).do(ctx, "GET", rpcAddr(so), rpcState, nil, &st); err != nil {
				t.Fatalf("before the removal, %s refused %s: %v", sname, what, err)
			}
		}
		if why := raftRefuses(t, joinAddr(so.AdvertiseAddr.String(), so.RaftPort), certs["s3's server certificate"], time.Second); why != "" {
			t.Fatalf("before the removal, %s's Raft port refused s3: %s", sname, why)
		}
	}

	if err := c1.Leave(ctx); err != nil {
		t.Fatalf("c1 Leave: %v", err)
	}
	if err := s1.RemoveNode(ctx, "s3"); err != nil {
		t.Fatalf("RemoveNode(s3): %v", err)
	}
	for sname, s := range map[string]*Cluster{"s1": s1, "s2": s2} {
		waitFor(t, converge, func() (bool, string) {
			st := s.State()
			var missing []string
			for _, serial := range serials {
				if !st.IsRevoked(serial) {
					missing = append(missing, serial)
				}
			}
			return len(missing) == 0, fmt.Sprintf("%s has not revoked %v", sname, missing)
		})
	}

	before := map[string]*State{"s1": s1.State(), "s2": s2.State()}
	calls := []struct {
		method, path string
		body         any
	}{
		{"GET", rpcState, nil},
		{"GET", rpcState + "?index=0&wait=1s", nil},
		{"POST", rpcLeave, struct{}{}},
		{"POST", rpcLocal, &LocalCmd{Tags: []string{"back"}}},
		{"POST", rpcSegmentKey, &SegmentKeyCmd{Segment: "web", PublicKey: "c3J2MS1wdWJsaWMta2V5LXNydjEtcHVibGljLWtleSE="}},
		{"POST", rpcApply, &Command{Op: OpToken, Token: &Token{ID: "efefefefefefefef", SecretHash: hashSecret("x"), Server: true, Expires: time.Now().Add(time.Hour), UsesLeft: 9}}},
	}
	for sname, so := range servers {
		for what, cert := range certs {
			rc := svidClient(t, s1, cert)
			for _, call := range calls {
				err := rc.do(ctx, call.method, rpcAddr(so), call.path, call.body, nil)
				if got := remoteStatus(err); got != http.StatusForbidden {
					t.Errorf("%s %s on %s with %s: %v (status %d), want 403", call.method, call.path, sname, what, err, got)
				}
			}
		}
		for what, cert := range certs {
			if why := raftRefuses(t, joinAddr(so.AdvertiseAddr.String(), so.RaftPort), cert, 5*time.Second); why == "" {
				t.Errorf("%s's Raft port accepted %s after its removal", sname, what)
			}
		}
	}
	for sname, s := range map[string]*Cluster{"s1": s1, "s2": s2} {
		if d := cmp.Diff(before[sname], s.State(), sameContent...); d != "" {
			t.Errorf("calls with removed certificates changed the state of %s (-before +after):\n%s", sname, d)
		}
	}
}

// TestInvariantGossipNeverInstallsKeys: a host that announces keys,
// addresses, tags or services in its gossip meta (a registered one, and
// one that holds the gossip key but never joined) changes neither the
// registry nor the hosts the policy compiler sees nor any plan: keys come
// from the registry, which only an authenticated host writes for itself.
func TestInvariantGossipNeverInstallsKeys(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster on loopback")
	}
	h := newHarness(t, 60*time.Second)
	ctx := h.ctx
	s1o := h.options(t, "s1", 1, true, true)
	s1o.Tags = []string{"t"}
	s1 := h.start(t, s1o)
	tok, err := s1.CreateToken(ctx, TokenRequest{TTL: time.Hour, Uses: 1})
	if err != nil {
		t.Fatal(err)
	}
	c1o := h.options(t, "c1", 3, false, false)
	c1o.Tags = []string{"t"}
	c1 := h.start(t, c1o)
	if err := c1.Join(ctx, tok.Token, []string{rpcAddr(s1o)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s1.ApplyPolicy(ctx, "p.hcl", metaPolicy, "test"); err != nil {
		t.Fatal(err)
	}
	for c, key := range map[*Cluster]string{s1: metaKeys["srv1"], c1: metaKeys["web"]} {
		waitFor(t, converge, func() (bool, string) {
			err := c.RegisterSegmentKey(ctx, "web", key)
			return err == nil, fmt.Sprint(err)
		})
	}
	waitFor(t, converge, func() (bool, string) {
		a, b := s1.State(), c1.State()
		ok := a.Index == b.Index
		for _, n := range a.Nodes {
			ok = ok && n.Segments["web"].PublicKey != "" && n.Segments["web"].Addr != ""
		}
		return ok, fmt.Sprintf("s1 at %d, c1 at %d, hosts %+v", a.Index, b.Index, a.PolicyHosts())
	})
	waitMembers(t, s1, "s1", []memberView{{"c1", RoleClient, StatusAlive}, {"s1", RoleServer, StatusAlive}})

	type snapshot struct {
		hosts []policy.Host
		plans map[string]*policy.Plan
	}
	take := func(c *Cluster) snapshot {
		st := c.State()
		doc, err := st.Document()
		if err != nil || doc == nil {
			t.Fatalf("policy: %v %v", doc, err)
		}
		return snapshot{st.PolicyHosts(), plans(t, doc, st)}
	}
	before := map[string]snapshot{"s1": take(s1), "c1": take(c1)}
	stateBefore := s1.State()

	const evilKey = "ZXZpbC1wdWJsaWMta2V5LWV2aWwtcHVibGljLWtleSE="
	evilMeta := func(index int) []byte {
		return []byte(fmt.Sprintf(`{"r":"server","i":%d,"l":"c1","public_key":%q,"addr":"10.90.1.200","tags":["t"],`+
			`"services":[{"name":"db","port":5432}],"segments":{"web":{"public_key":%q,"addr":"10.90.1.200"}},`+
			`"nodes":{"c1":{"segments":{"web":{"public_key":%q}}}}}`, index, evilKey, evilKey, evilKey))
	}

	// An impostor that has the gossip key (a copy of a keyring, say) but no
	// certificate and no registry entry.
	evilIP := s1o.AdvertiseAddr.Next().Next().Next().Next().Next().Next() // 127.0.0.7
	evil, err := newGossip(gossipConfig{
		Name: "evil", BindAddr: evilIP.String(), AdvertiseAddr: evilIP.String(), Port: h.freePort(t, evilIP),
		Keys: identityOf(t, s1).GossipKeys, Meta: nodeMeta{Role: RoleServer},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { evil.shutdown() })
	if _, err := evil.join([]string{joinAddr(s1o.AdvertiseAddr.String(), s1o.GossipPort)}); err != nil {
		t.Fatalf("the impostor could not join gossip: %v", err)
	}
	// And the registered c1 announcing the same (its meta loop only
	// rewrites the meta when something changes: plant it until s1 sees it).
	waitFor(t, converge, func() (bool, string) {
		planted := evilMeta(777777)
		evil.meta.Store(&planted)
		_ = evil.ml.UpdateNode(100 * time.Millisecond)
		m := evilMeta(424242)
		c1.mu.Lock()
		g := c1.gossip
		c1.mu.Unlock()
		g.meta.Store(&m)
		_ = g.ml.UpdateNode(100 * time.Millisecond)
		view := s1.gossipView()
		return view["c1"].Meta.Index == 424242 && view["evil"].Meta.Index == 777777 && view["evil"].Status == StatusAlive,
			fmt.Sprintf("s1 sees c1 %+v, evil %+v", view["c1"], view["evil"])
	})

	if s1.State() != stateBefore {
		t.Errorf("gossip changed s1's replicated state")
	}
	for name, c := range map[string]*Cluster{"s1": s1, "c1": c1} {
		got := take(c)
		if d := cmp.Diff(before[name].hosts, got.hosts, cmpNetip); d != "" {
			t.Errorf("%s: gossip changed the hosts the policy sees (-before +after):\n%s", name, d)
		}
		if d := cmp.Diff(before[name].plans, got.plans, cmpNetip); d != "" {
			t.Errorf("%s: gossip changed a plan (-before +after):\n%s", name, d)
		}
		for _, hst := range got.hosts {
			for seg, hs := range hst.Segments {
				if hs.PublicKey == evilKey || strings.HasPrefix(hs.Addr.String(), "10.90.1.200") {
					t.Errorf("%s: the announced key or address reached host %s in %s", name, hst.Name, seg)
				}
			}
		}
	}
	for _, m := range s1.Members() {
		if m.Name == "c1" && (m.Role != RoleClient || m.Addr != c1o.AdvertiseAddr.String()) {
			t.Errorf("s1 shows c1 as %+v: role and address must come from the registry", m)
		}
	}
}

// TestInvariantGossipMetaNeverReachesPolicy is the same property without
// a network, for metas of every shape the registry has fields for.
func TestInvariantGossipMetaNeverReachesPolicy(t *testing.T) {
	c := metaCluster(t)
	st := c.State()
	doc, err := st.Document()
	if err != nil {
		t.Fatal(err)
	}
	hosts, want := st.PolicyHosts(), plans(t, doc, st)
	key := "ZXZpbC1wdWJsaWMta2V5LWV2aWwtcHVibGljLWtleSE="
	for _, name := range []string{"srv1", "web", "spent", "old", "evil"} {
		for _, meta := range []string{
			`{"r":"server","public_key":"` + key + `"}`,
			`{"r":"client","segments":{"web":{"public_key":"` + key + `","addr":"10.90.1.250"}}}`,
			`{"r":"client","name":"web","addr":"10.9.9.9","tags":["t"],"services":[{"name":"db","port":1}],"certs":[]}`,
			`{"Role":"server","Segments":{"web":{"PublicKey":"` + key + `"}}}`,
		} {
			g := resetGossip(c)
			n := &memberlist.Node{Name: name, Addr: net.IPv4(10, 9, 9, 9), Port: 7946, Meta: []byte(meta)}
			if g.NotifyAlive(n) == nil {
				g.NotifyJoin(n)
				g.NotifyUpdate(n)
			}
			if c.State() != st {
				t.Fatalf("meta %s of %s changed the state", meta, name)
			}
			if d := cmp.Diff(hosts, c.State().PolicyHosts(), cmpNetip); d != "" {
				t.Fatalf("meta %s of %s changed the policy hosts:\n%s", meta, name, d)
			}
			if d := cmp.Diff(want, plans(t, doc, c.State()), cmpNetip); d != "" {
				t.Fatalf("meta %s of %s changed a plan:\n%s", meta, name, d)
			}
		}
	}
}
