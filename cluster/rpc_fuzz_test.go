package cluster

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/weft-mesh/weft/identity"
)

// The fuzz targets of the server's RPC surface. Their seeds are also
// committed under testdata/fuzz/<Target>, so that they run as ordinary
// tests; FuzzJoinCSR and FuzzRPCJoin bootstrap a one-server cluster on
// loopback for that, once per process.

// Join tokens planted in the fuzz leader's state, so that the committed
// corpus can hold requests that pass the token check.
var (
	fuzzClientTok = fixtureToken{"f0f0f0f0f0f0f0f0", "fuzz-client-secret-fuzz-client-01"}
	fuzzServerTok = fixtureToken{"f5f5f5f5f5f5f5f5", "fuzz-server-secret-fuzz-server-01"}
)

// tcpUDPPort returns a port free for TCP and UDP on ip, below the
// ephemeral range (see harness.freePort).
func tcpUDPPort(tb testing.TB, ip netip.Addr, used map[int]bool) int {
	tb.Helper()
	for range 200 {
		p := 20000 + mrand.IntN(12000)
		if used[p] {
			continue
		}
		ap := netip.AddrPortFrom(ip, uint16(p)).String()
		l, err := net.Listen("tcp", ap)
		if err != nil {
			continue
		}
		u, err := net.ListenPacket("udp", ap)
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		used[p] = true
		return p
	}
	tb.Fatalf("no free port on %s", ip)
	return 0
}

// fuzzLeader bootstraps a one-server cluster "s1" on 127.0.0.1 and plants
// the fuzz tokens in its state. It is shut down when tb ends.
func fuzzLeader(tb testing.TB) *Cluster {
	tb.Helper()
	ip := netip.MustParseAddr("127.0.0.1")
	used := map[int]bool{}
	// Raft's fsync per successful join dominates a fuzz run: keep the
	// data dir in memory where there is a tmpfs.
	dir := tb.TempDir()
	if d, err := os.MkdirTemp("/dev/shm", "weft-fuzz-"); err == nil {
		dir = d
		tb.Cleanup(func() { os.RemoveAll(d) })
	}
	o := Options{
		Name: "s1", Domain: testDomain, DataDir: filepath.Join(dir, "s1"),
		BindAddr: ip, AdvertiseAddr: ip,
		GossipPort: tcpUDPPort(tb, ip, used), RPCPort: tcpUDPPort(tb, ip, used), RaftPort: tcpUDPPort(tb, ip, used),
		Server: true, Bootstrap: true,
		Logger: slog.New(slog.DiscardHandler),
	}
	c, err := New(o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Shutdown() })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.Start(ctx); err != nil {
		tb.Fatal(err)
	}
	for _, tok := range []struct {
		fixtureToken
		server bool
	}{{fuzzClientTok, false}, {fuzzServerTok, true}} {
		t := &Token{ID: tok.id, SecretHash: tok.hash(), Server: tok.server, Expires: time.Now().Add(24 * time.Hour), UsesLeft: 100000}
		if _, err := c.apply(ctx, &Command{Op: OpToken, Token: t}); err != nil {
			tb.Fatal(err)
		}
	}
	return c
}

// csrPEM makes a CSR for id with a fresh P-256 key.
func csrPEM(tb testing.TB, id identity.ID) []byte {
	tb.Helper()
	k, err := identity.NewKey()
	if err != nil {
		tb.Fatal(err)
	}
	b, err := identity.NewCSR(k, id)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// oddCSR makes a CSR by hand: for the URIs given, with extra SANs or a
// CA request, and with a key of the given curve.
func oddCSR(tb testing.TB, curve elliptic.Curve, uris []string, dns []string, caExt bool) []byte {
	tb.Helper()
	k, err := ecdsa.GenerateKey(curve, rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.CertificateRequest{DNSNames: dns}
	for _, s := range uris {
		u, err := url.Parse(s)
		if err != nil {
			tb.Fatal(err)
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	if caExt {
		// basicConstraints, cA TRUE
		tmpl.ExtraExtensions = append(tmpl.ExtraExtensions, pkix.Extension{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Value: []byte{0x30, 0x03, 0x01, 0x01, 0xff}})
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, k)
	if err != nil {
		tb.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
}

// joinSeeds are CSR pairs for FuzzJoinCSR: right ones, and the ways a
// request can ask for more or for someone else.
func joinSeeds(tb testing.TB) []struct {
	name             string
	server           bool
	nodeCSR, servCSR []byte
} {
	node := func(n string) identity.ID { return identity.ID{Domain: testDomain, Kind: identity.KindNode, Name: n} }
	server := func(n string) identity.ID { return identity.ID{Domain: testDomain, Kind: identity.KindServer, Name: n} }
	return []struct {
		name             string
		server           bool
		nodeCSR, servCSR []byte
	}{
		{"web-1", false, csrPEM(tb, node("web-1")), nil},
		{"s2", true, csrPEM(tb, node("s2")), csrPEM(tb, server("s2"))},
		{"web-1", false, csrPEM(tb, node("web-2")), nil},             // someone else
		{"web-1", false, csrPEM(tb, server("web-1")), nil},           // a server SVID through a client join
		{"s3", true, csrPEM(tb, node("s3")), csrPEM(tb, node("s3"))}, // node CSR as the server CSR
		{"s3", true, csrPEM(tb, node("s3")), nil},
		{"web-1", false, csrPEM(tb, identity.ID{Domain: "other.test", Kind: identity.KindNode, Name: "web-1"}), nil},
		{"web-1", false, oddCSR(tb, elliptic.P256(), []string{"spiffe://weft.test/node/web-1"}, []string{"evil.example"}, false), nil},
		{"web-1", false, oddCSR(tb, elliptic.P256(), []string{"spiffe://weft.test/node/web-1", "spiffe://weft.test/server/web-1"}, nil, false), nil},
		{"web-1", false, oddCSR(tb, elliptic.P256(), []string{"spiffe://weft.test/node/web-1"}, nil, true), nil},
		{"web-1", false, oddCSR(tb, elliptic.P384(), []string{"spiffe://weft.test/node/web-1"}, nil, false), nil},
		{"web-1", false, oddCSR(tb, elliptic.P256(), []string{"spiffe://WEFT.test/node/web-1"}, nil, false), nil},
		{"Web-1", false, csrPEM(tb, node("web-1")), nil},
		{"web-1/../s1", false, csrPEM(tb, node("web-1")), nil},
		{"s1", true, csrPEM(tb, node("s1")), csrPEM(tb, server("s1"))}, // the live leader's name
		{"", false, []byte("garbage"), nil},
	}
}

// checkIssued verifies what a successful join returned for req: exactly
// the requested identities, for the keys of the CSRs, chaining to the
// cluster's CA, recorded in the registry; and no server secret beyond the
// gossip keyring.
func checkIssued(t *testing.T, c *Cluster, req *joinRequest, resp *joinResponse) {
	t.Helper()
	st := c.State()
	check := func(what, certPEM, csr string, kind identity.Kind) string {
		want := identity.ID{Domain: st.Domain, Kind: kind, Name: req.Name}
		cert, err := identity.ParseCertPEM([]byte(certPEM))
		if err != nil {
			t.Fatalf("join of %q: %s certificate: %v", req.Name, what, err)
		}
		if len(cert.URIs) != 1 || cert.URIs[0].String() != want.String() {
			t.Fatalf("join of %q (%s): signed a %s certificate for %v, want exactly %s", req.Name, req.Role, what, cert.URIs, want)
		}
		if cert.IsCA || len(cert.DNSNames)+len(cert.IPAddresses)+len(cert.EmailAddresses) > 0 {
			t.Fatalf("join of %q: the %s certificate is more than a leaf with one URI SAN", req.Name, what)
		}
		blk, _ := pem.Decode([]byte(csr))
		if blk == nil {
			t.Fatalf("join of %q: signed a %s certificate for a request that is not PEM", req.Name, what)
		}
		cr, err := x509.ParseCertificateRequest(blk.Bytes)
		if err != nil {
			t.Fatalf("join of %q: signed a %s certificate for an unparseable CSR: %v", req.Name, what, err)
		}
		if pub, ok := cert.PublicKey.(*ecdsa.PublicKey); !ok || !pub.Equal(cr.PublicKey) {
			t.Fatalf("join of %q: the %s certificate is not for the CSR's key", req.Name, what)
		}
		id, _, err := c.verifier(kind).Verify([][]byte{cert.Raw})
		if err != nil || id != want {
			t.Fatalf("join of %q: the %s certificate does not verify as %s: %v, %v", req.Name, what, want, id, err)
		}
		return identity.SerialString(cert)
	}
	serials := []string{check("node", resp.NodeCert, req.NodeCSR, identity.KindNode)}
	switch {
	case req.Role == RoleServer:
		serials = append(serials, check("server", resp.ServerCert, req.ServerCSR, identity.KindServer))
	case resp.ServerCert != "":
		t.Fatalf("join of client %q returned a server certificate", req.Name)
	}
	n, ok := st.Nodes[req.Name]
	if !ok {
		t.Fatalf("join of %q succeeded but it is not registered", req.Name)
	}
	var got []string
	for _, cr := range n.Certs {
		got = append(got, cr.Serial)
	}
	if n.Role != req.Role || !slices.Equal(got, serials) {
		t.Fatalf("registry entry of %q: role %s, serials %v; issued %s certificates %v", req.Name, n.Role, got, req.Role, serials)
	}
	if s := resp.State; s == nil || s.CAKey != "" || len(s.Tokens) != 0 || len(s.GossipKeys) != 0 {
		t.Fatalf("join of %q: the state sent back holds server secrets", req.Name)
	}
}

// FuzzJoinCSR sends random names and CSRs through the leader's join path
// (serveJoin: the token check, the name checks, identity.CA.Sign and the
// registration) with a valid token. Whatever it is sent, it never panics,
// never signs a certificate for an identity other than the requested
// name's node (and, for a server, server) SVID, never signs a key other
// than the CSR's, and a refused join changes nothing.
func FuzzJoinCSR(f *testing.F) {
	for _, s := range joinSeeds(f) {
		f.Add(s.name, s.server, s.nodeCSR, s.servCSR)
	}
	c := fuzzLeader(f)
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, name string, server bool, nodeCSR, serverCSR []byte) {
		tok, role := fuzzClientTok, RoleClient
		if server {
			tok, role = fuzzServerTok, RoleServer
		}
		req := &joinRequest{
			TokenID: tok.id, Secret: tok.secret, Name: name, Role: role, Addr: "127.0.0.9",
			GossipPort: 7946, RPCPort: 7947, RaftPort: 7948, NodeCSR: string(nodeCSR), ServerCSR: string(serverCSR),
		}
		before := c.State()
		resp, err := c.serveJoin(ctx, req)
		if err != nil {
			if d := cmp.Diff(before, c.State(), sameContent...); d != "" {
				t.Fatalf("a refused join (%v) changed the state (-before +after):\n%s", err, d)
			}
			return
		}
		checkIssued(t, c, req, resp)
	})
}

// FuzzRPCJoin sends random bodies to POST /rpc/v1/join of a running
// leader, through its real handler. The answer is always one JSON value;
// a body that does not decode is a 400; nothing is a 500; a refused join
// changes nothing; an accepted one got exactly the identities it asked for.
func FuzzRPCJoin(f *testing.F) {
	for _, s := range joinSeeds(f) {
		tok, role := fuzzClientTok, RoleClient
		if s.server {
			tok, role = fuzzServerTok, RoleServer
		}
		b, err := json.Marshal(joinRequest{
			TokenID: tok.id, Secret: tok.secret, Name: s.name, Role: role, Addr: "127.0.0.9",
			GossipPort: 7946, RPCPort: 7947, RaftPort: 7948, Tags: []string{"web"},
			Services: []Service{{Name: "http", Port: 80}}, NodeCSR: string(s.nodeCSR), ServerCSR: string(s.servCSR),
		})
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, s := range []string{
		"", "{}", "null", "[]", `{"role": "client"}`, `{"unknown": 1}`, "{", `"x"`,
		`{"token_id": "f0f0f0f0f0f0f0f0", "secret": "wrong", "name": "web-9", "role": "client", "addr": "127.0.0.9"}`,
		`{"token_id": "f0f0f0f0f0f0f0f0", "secret": "fuzz-client-secret-fuzz-client-01", "name": "web-9", "role": "server", "addr": "127.0.0.9"}`,
		`{"token_id": "f0f0f0f0f0f0f0f0", "secret": "fuzz-client-secret-fuzz-client-01", "name": "web-9", "role": "client", "addr": "0.0.0.0"}`,
		`{"token_id": "f0f0f0f0f0f0f0f0", "secret": "fuzz-client-secret-fuzz-client-01", "name": "web-9", "role": "client", "addr": "127.0.0.9", "tags": ["Bad Tag"]}`,
		`{"token_id": "f0f0f0f0f0f0f0f0", "secret": "fuzz-client-secret-fuzz-client-01", "name": "web-9", "role": "client", "addr": "127.0.0.9", "services": [{"name": "a", "port": 0}]}`,
		`{"gossip_port": 1e400}`, `{"tags": [null]}`, `{"name": "\u0000"}`,
	} {
		f.Add([]byte(s))
	}
	c := fuzzLeader(f)
	h := c.rpcHandler()
	f.Fuzz(func(t *testing.T, body []byte) {
		var req joinRequest
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		decodeErr := dec.Decode(&req)

		before := c.State()
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", rpcJoin, bytes.NewReader(body)))
		res := rec.Result()
		got, _ := io.ReadAll(res.Body)
		if !isOneJSONValue(got) || res.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("status %d, answer is not JSON: %q", res.StatusCode, got)
		}
		switch {
		case decodeErr != nil && res.StatusCode != http.StatusBadRequest:
			t.Fatalf("a body that does not decode (%v): status %d, want 400: %s", decodeErr, res.StatusCode, got)
		case res.StatusCode >= 500:
			t.Fatalf("status %d for a join request: %s", res.StatusCode, got)
		case res.StatusCode != http.StatusOK:
			if d := cmp.Diff(before, c.State(), sameContent...); d != "" {
				t.Fatalf("a refused join (%d %s) changed the state (-before +after):\n%s", res.StatusCode, got, d)
			}
			var e rpcError
			if json.Unmarshal(got, &e) != nil || e.Error == "" {
				t.Fatalf("status %d without an error: %s", res.StatusCode, got)
			}
			if strings.Contains(string(got), fuzzClientTok.secret) || strings.Contains(string(got), fuzzServerTok.secret) {
				t.Fatalf("an error quotes the token secret: %s", got)
			}
			return
		}
		var resp joinResponse
		if err := json.Unmarshal(got, &resp); err != nil {
			t.Fatal(err)
		}
		checkIssued(t, c, &req, &resp)
	})
}

// rpcFuzzPKI is a server "s1" of weft.test that has not started, with a
// state in which c9 was removed (its certificate revoked), and the client
// certificates FuzzRPCHandlers presents.
type rpcFuzzPKI struct {
	c       *Cluster
	callers []rpcCaller
}

// rpcCaller is one client certificate chain and what the server must
// make of it.
type rpcCaller struct {
	name  string
	noTLS bool                // no TLS at all
	chain []*x509.Certificate // the chain presented (empty: none)
	// fuzz puts the fuzz input in the chain: "leaf" alone, "leaf+ca" as
	// the leaf before the CA, "c1+" after c1's certificate.
	fuzz string
	// kind is the identity the chain proves (node or server), "" when it
	// proves none; revoked and wrongKind say it is refused with 403.
	kind               identity.Kind
	revoked, wrongKind bool
}

func newRPCFuzzPKI(tb testing.TB) *rpcFuzzPKI {
	tb.Helper()
	now := t0.Add(time.Minute)
	ca, err := identity.NewCA(testDomain, t0, 24*time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	issue := func(ca *identity.CA, id identity.ID, at time.Time) (*x509.Certificate, []byte, *ecdsa.PrivateKey) {
		k, err := identity.NewKey()
		if err != nil {
			tb.Fatal(err)
		}
		csr, err := identity.NewCSR(k, id)
		if err != nil {
			tb.Fatal(err)
		}
		certPEM, cert, err := ca.Sign(csr, id, time.Hour, at)
		if err != nil {
			tb.Fatal(err)
		}
		return cert, certPEM, k
	}
	id := func(kind identity.Kind, name string) identity.ID {
		return identity.ID{Domain: testDomain, Kind: kind, Name: name}
	}
	// The server's own identity, persisted so that New loads it.
	li := &localIdentity{Info: nodeInfo{Name: "s1", Domain: testDomain, Role: RoleServer}, CABundle: ca.CertPEM, GossipKeys: [][]byte{bytes.Repeat([]byte{7}, 32)}}
	_, li.NodeCert, li.NodeKey = issue(ca, id(identity.KindNode, "s1"), now)
	_, li.ServerCert, li.ServerKey = issue(ca, id(identity.KindServer, "s1"), now)
	dir := filepath.Join(tb.TempDir(), "s1")
	if err := (store{dir: dir}).saveIdentity(li); err != nil {
		tb.Fatal(err)
	}
	c, err := New(Options{
		Name: "s1", Domain: testDomain, DataDir: dir, BindAddr: netip.MustParseAddr("127.0.0.1"),
		AdvertiseAddr: netip.MustParseAddr("127.0.0.1"), Server: true,
		Logger: slog.New(slog.DiscardHandler), Now: func() time.Time { return now },
	})
	if err != nil {
		tb.Fatal(err)
	}

	c1, _, _ := issue(ca, id(identity.KindNode, "c1"), now)
	s2, _, _ := issue(ca, id(identity.KindServer, "s2"), now)
	s2node, _, _ := issue(ca, id(identity.KindNode, "s2"), now)
	c9, _, _ := issue(ca, id(identity.KindNode, "c9"), now)
	svc, _, _ := issue(ca, id(identity.KindService, "web"), now)
	expired, _, _ := issue(ca, id(identity.KindNode, "c1"), now.Add(-3*time.Hour))
	otherCA, err := identity.NewCA(testDomain, t0, 24*time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	forged, _, _ := issue(otherCA, id(identity.KindServer, "s2"), now)
	otherDomainCA, err := identity.NewCA("other.test", t0, 24*time.Hour)
	if err != nil {
		tb.Fatal(err)
	}
	otherDomain, _, _ := issue(otherDomainCA, identity.ID{Domain: "other.test", Kind: identity.KindServer, Name: "s2"}, now)

	st := emptyState()
	st.Index, st.Domain, st.CACert, st.CAKey = 10, testDomain, string(ca.CertPEM), string(ca.KeyPEM)
	st.GossipKeys = []string{encodeKey(li.GossipKeys[0])}
	for _, n := range []Node{
		{Name: "s1", Role: RoleServer, Addr: "127.0.0.1"},
		{Name: "s2", Role: RoleServer, Addr: "127.0.0.2", Certs: []CertRef{{identity.SerialString(s2), s2.NotAfter}, {identity.SerialString(s2node), s2node.NotAfter}}},
		{Name: "c1", Role: RoleClient, Addr: "127.0.0.3", Certs: []CertRef{{identity.SerialString(c1), c1.NotAfter}}},
	} {
		st.Nodes[n.Name] = &n
	}
	st.Revoked[identity.SerialString(c9)] = c9.NotAfter
	st.Tombstones["c9"] = Tombstone{Reason: "removed", Index: 9, RemovedAt: t0}
	st.Tokens[fuzzClientTok.id] = &Token{ID: fuzzClientTok.id, SecretHash: fuzzClientTok.hash(), Expires: now.Add(time.Hour), UsesLeft: 5}
	c.fsm.publish(st)

	return &rpcFuzzPKI{c: c, callers: []rpcCaller{
		{name: "no TLS", noTLS: true},
		{name: "TLS without a certificate", chain: []*x509.Certificate{}},
		{name: "client c1", chain: []*x509.Certificate{c1}, kind: identity.KindNode},
		{name: "server s2", chain: []*x509.Certificate{s2}, kind: identity.KindServer},
		{name: "node SVID of server s2", chain: []*x509.Certificate{s2node}, kind: identity.KindNode},
		{name: "removed c9", chain: []*x509.Certificate{c9}, kind: identity.KindNode, revoked: true},
		{name: "service SVID", chain: []*x509.Certificate{svc}, wrongKind: true},
		{name: "expired c1", chain: []*x509.Certificate{expired}},
		{name: "s2 by another CA", chain: []*x509.Certificate{forged}},
		{name: "s2 of another domain", chain: []*x509.Certificate{otherDomain}},
		{name: "the CA itself", chain: []*x509.Certificate{ca.Cert}},
		{name: "another CA as intermediate", chain: []*x509.Certificate{forged, otherCA.Cert}},
		{name: "fuzz leaf", fuzz: "leaf"},
		{name: "c1 + fuzz", fuzz: "c1+", chain: []*x509.Certificate{c1}, kind: identity.KindNode},
		{name: "fuzz leaf + the CA", fuzz: "leaf+ca", chain: []*x509.Certificate{ca.Cert}},
	}}
}

// rpcRoutes are the calls FuzzRPCHandlers makes; the last is a raw path.
var rpcRoutes = []struct{ method, path string }{
	{"POST", rpcJoin}, {"GET", rpcState}, {"POST", rpcLeave}, {"POST", rpcApply},
	{"POST", rpcSegmentKey}, {"POST", rpcLocal}, {"GET", rpcJoin}, {"DELETE", rpcApply}, {"", ""},
}

// FuzzRPCHandlers sends random requests to the RPC handler of a server
// that has not started (no Raft): every call, from every kind of caller,
// with random queries and bodies. Nothing may panic or change the state;
// every routed answer is one JSON value; callers without a valid
// certificate get 401, revoked ones and the wrong kinds 403 (a node SVID
// on the server-only apply above all); a body that does not decode is a
// 400 once the caller is authenticated.
func FuzzRPCHandlers(f *testing.F) {
	f.Add(uint8(0), uint8(0), "", []byte(`{"token_id": "f0f0f0f0f0f0f0f0", "secret": "x", "name": "web-1", "role": "client", "addr": "127.0.0.9"}`), []byte(nil))
	f.Add(uint8(1), uint8(2), "index=3&wait=10ms", []byte(nil), []byte(nil))
	f.Add(uint8(1), uint8(2), "index=-1", []byte(nil), []byte(nil))
	f.Add(uint8(1), uint8(2), "wait=-5s", []byte(nil), []byte(nil))
	f.Add(uint8(1), uint8(5), "", []byte(nil), []byte(nil))
	f.Add(uint8(2), uint8(2), "", []byte(`{}`), []byte(nil))
	f.Add(uint8(3), uint8(2), "", []byte(`{"op": "deregister", "deregister": {"name": "s1"}}`), []byte(nil))
	f.Add(uint8(3), uint8(4), "", []byte(`{"op": "token", "token": {"id": "x", "secret_hash": "y", "uses_left": 1}}`), []byte(nil))
	f.Add(uint8(3), uint8(3), "", []byte(`{"op": "init"}`), []byte(nil))
	f.Add(uint8(3), uint8(3), "", []byte(`{"op": 1}`), []byte(nil))
	f.Add(uint8(4), uint8(2), "", []byte(`{"name": "s1", "segment": "web", "public_key": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="}`), []byte(nil))
	f.Add(uint8(5), uint8(2), "", []byte(`{"tags": ["Bad"], "services": []}`), []byte(nil))
	f.Add(uint8(5), uint8(4), "", []byte(`{"name": "s2", "tags": ["web"], "services": [{"name": "db", "port": 5432}]}`), []byte(nil))
	f.Add(uint8(5), uint8(6), "", []byte(`{}`), []byte(nil))
	f.Add(uint8(1), uint8(12), "", []byte(nil), []byte("\x30\x03\x02\x01\x01"))
	f.Add(uint8(1), uint8(13), "", []byte(nil), []byte("garbage"))
	f.Add(uint8(6), uint8(0), "", []byte(nil), []byte(nil))
	f.Add(uint8(8), uint8(2), "rpc/v1/../v1/apply", []byte(nil), []byte(nil))

	pki := newRPCFuzzPKI(f)
	c := pki.c
	h := c.rpcHandler()
	mux := h.(*http.ServeMux)
	before := c.State()
	f.Fuzz(func(t *testing.T, route, who uint8, query string, body, raw []byte) {
		rt := rpcRoutes[int(route)%len(rpcRoutes)]
		caller := pki.callers[int(who)%len(pki.callers)]
		u := &url.URL{Path: rt.path, RawQuery: query}
		method := rt.method
		if rt.path == "" {
			p, q, _ := strings.Cut(query, "?")
			u.Path, u.RawQuery, method = "/"+p, q, []string{"GET", "POST"}[len(body)%2]
		}
		req, err := http.NewRequest(method, u.String(), bytes.NewReader(body))
		if err != nil {
			t.Skip("not a request")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
		defer cancel()
		req = req.WithContext(ctx)
		if !caller.noTLS {
			chain := slices.Clone(caller.chain)
			switch caller.fuzz {
			case "leaf", "leaf+ca":
				chain = slices.Insert(chain, 0, &x509.Certificate{Raw: raw})
			case "c1+":
				chain = append(chain, &x509.Certificate{Raw: raw})
			}
			req.TLS = &tls.ConnectionState{Version: tls.VersionTLS13, HandshakeComplete: true, PeerCertificates: chain}
		}

		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		res := rec.Result()
		got, _ := io.ReadAll(res.Body)

		if c.State() != before {
			t.Fatalf("%s %s as %s changed the state of a server that is not running", method, u, caller.name)
		}
		if res.StatusCode == http.StatusTemporaryRedirect || res.StatusCode == http.StatusMovedPermanently {
			return
		}
		if _, pattern := mux.Handler(req); pattern == "" {
			if res.StatusCode != http.StatusNotFound && res.StatusCode != http.StatusMethodNotAllowed {
				t.Fatalf("%s %s: no route, status %d", method, u, res.StatusCode)
			}
			return
		}
		_, pattern := mux.Handler(req)
		var e rpcError
		if !isOneJSONValue(got) || res.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("%s %s as %s: status %d, answer is not JSON: %q", method, u, caller.name, res.StatusCode, got)
		}
		if res.StatusCode != http.StatusOK && (json.Unmarshal(got, &e) != nil || e.Error == "") {
			t.Fatalf("%s %s as %s: status %d without an error: %s", method, u, caller.name, res.StatusCode, got)
		}
		want := expectRPC(pattern, caller, raw, body)
		if !slices.Contains(want, res.StatusCode) {
			t.Fatalf("%s %s as %s: status %d (%s), want one of %v", method, u, caller.name, res.StatusCode, got, want)
		}
		// A server whose Raft is not running answers the calls that need
		// it with ErrNotServer (503); that state is never served (the
		// listener starts after Raft), but the answer says what it is.
		if res.StatusCode == http.StatusServiceUnavailable && e.Code != "not_server" && e.Code != "not_leader" {
			t.Fatalf("%s %s as %s: 503 %s", method, u, caller.name, got)
		}
		if res.StatusCode >= 500 && res.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("%s %s as %s: %d %s", method, u, caller.name, res.StatusCode, got)
		}
		if res.StatusCode == http.StatusOK && pattern == "GET "+rpcState {
			var st State
			if err := json.Unmarshal(got, &st); err != nil || st.CAKey != "" || len(st.Tokens) != 0 || len(st.GossipKeys) != 0 {
				t.Fatalf("GET %s as %s: the state holds server secrets (or does not decode: %v)", u, caller.name, err)
			}
		}
	})
}

// expectRPC says which statuses a call may get.
func expectRPC(pattern string, caller rpcCaller, raw, body []byte) []int {
	decodes := func(v any) bool {
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.DisallowUnknownFields()
		return dec.Decode(v) == nil
	}
	if pattern == "POST "+rpcJoin {
		if !decodes(&joinRequest{}) {
			return []int{http.StatusBadRequest}
		}
		return []int{http.StatusServiceUnavailable} // not_server: no Raft
	}
	_, rawErr := x509.ParseCertificate(raw)
	switch {
	case caller.noTLS:
		return []int{http.StatusUnauthorized}
	case caller.fuzz == "leaf" || caller.fuzz == "leaf+ca":
		// A leaf the fuzzer made cannot carry the CA's signature: refused
		// as unauthenticated, or as forbidden when it is not even a
		// weft identity of the right kind.
		if rawErr != nil {
			return []int{http.StatusUnauthorized}
		}
		return []int{http.StatusUnauthorized, http.StatusForbidden}
	case caller.fuzz == "c1+" && rawErr != nil:
		return []int{http.StatusUnauthorized} // every certificate presented must parse
	case caller.wrongKind, caller.revoked:
		return []int{http.StatusForbidden}
	case caller.kind == "":
		return []int{http.StatusUnauthorized}
	case pattern == "POST "+rpcApply && caller.kind != identity.KindServer:
		return []int{http.StatusForbidden}
	}
	switch pattern {
	case "GET " + rpcState:
		return []int{http.StatusOK, http.StatusBadRequest}
	case "POST " + rpcLeave:
		return []int{http.StatusServiceUnavailable}
	case "POST " + rpcApply:
		if !decodes(&Command{}) {
			return []int{http.StatusBadRequest}
		}
		return []int{http.StatusServiceUnavailable} // not the leader
	case "POST " + rpcSegmentKey:
		if !decodes(&SegmentKeyCmd{}) {
			return []int{http.StatusBadRequest}
		}
		return []int{http.StatusServiceUnavailable}
	case "POST " + rpcLocal:
		var lc LocalCmd
		if !decodes(&lc) || validateLocal(lc.Tags, lc.Services) != nil {
			return []int{http.StatusBadRequest}
		}
		return []int{http.StatusServiceUnavailable}
	}
	panic(fmt.Sprintf("no expectation for %s", pattern))
}

// isOneJSONValue reports whether b is exactly one JSON value.
func isOneJSONValue(b []byte) bool {
	dec := json.NewDecoder(bytes.NewReader(b))
	var v any
	if err := dec.Decode(&v); err != nil {
		return false
	}
	_, err := dec.Token()
	return errors.Is(err, io.EOF)
}

// TestJoinFuzzReachesSigning keeps FuzzJoinCSR honest: its well-formed
// seeds do get certificates, so the fuzzer starts from the signing path
// and not only from refusals.
func TestJoinFuzzReachesSigning(t *testing.T) {
	if testing.Short() {
		t.Skip("bootstraps a server on loopback")
	}
	c := fuzzLeader(t)
	seeds := joinSeeds(t)
	for _, s := range seeds[:2] {
		tok, role := fuzzClientTok, RoleClient
		if s.server {
			tok, role = fuzzServerTok, RoleServer
		}
		req := &joinRequest{TokenID: tok.id, Secret: tok.secret, Name: s.name, Role: role, Addr: "127.0.0.9", NodeCSR: string(s.nodeCSR), ServerCSR: string(s.servCSR)}
		resp, err := c.serveJoin(context.Background(), req)
		if err != nil {
			t.Fatalf("join of %s %q: %v", role, s.name, err)
		}
		checkIssued(t, c, req, resp)
	}
	for _, s := range seeds[2:] {
		tok, role := fuzzClientTok, RoleClient
		if s.server {
			tok, role = fuzzServerTok, RoleServer
		}
		req := &joinRequest{TokenID: tok.id, Secret: tok.secret, Name: s.name, Role: role, Addr: "127.0.0.9", NodeCSR: string(s.nodeCSR), ServerCSR: string(s.servCSR)}
		if _, err := c.serveJoin(context.Background(), req); err == nil {
			t.Errorf("join of %s %q with a bad CSR or name was accepted", role, s.name)
		}
	}
}
