package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	mrand "math/rand/v2"
	"net"
	"net/http/httptrace"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const testDomain = "weft.test"

// converge bounds each wait for the in-process cluster to settle.
const converge = 20 * time.Second

// harness runs agents of one in-process cluster on loopback. Each agent
// has its own address 127.0.0.<n> (Linux routes all of 127/8 to lo).
type harness struct {
	t   *testing.T
	ctx context.Context
	log *testLog

	mu   sync.Mutex
	used map[netip.AddrPort]bool
}

func newHarness(t *testing.T, timeout time.Duration) *harness {
	t.Helper()
	h := &harness{t: t, log: newTestLog(t), used: map[netip.AddrPort]bool{}}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	t.Cleanup(cancel)
	h.ctx = ctx
	return h
}

// freePort returns a port that is free for TCP and UDP on ip. It picks
// below the kernel's ephemeral range, so that outgoing connections of the
// test do not take it between the probe and the agent's bind.
func (h *harness) freePort(t *testing.T, ip netip.Addr) int {
	t.Helper()
	h.mu.Lock()
	defer h.mu.Unlock()
	for range 200 {
		ap := netip.AddrPortFrom(ip, uint16(20000+mrand.IntN(12000)))
		if h.used[ap] {
			continue
		}
		l, err := net.Listen("tcp", ap.String())
		if err != nil {
			continue
		}
		u, err := net.ListenPacket("udp", ap.String())
		l.Close()
		if err != nil {
			continue
		}
		u.Close()
		h.used[ap] = true
		return int(ap.Port())
	}
	t.Fatalf("no free port on %s", ip)
	return 0
}

func (h *harness) options(t *testing.T, name string, host byte, server, bootstrap bool) Options {
	t.Helper()
	ip := netip.AddrFrom4([4]byte{127, 0, 0, host})
	o := Options{
		Name:          name,
		Domain:        testDomain,
		DataDir:       filepath.Join(h.t.TempDir(), name),
		BindAddr:      ip,
		AdvertiseAddr: ip,
		GossipPort:    h.freePort(t, ip),
		Server:        server,
		Bootstrap:     bootstrap,
		Logger:        h.log.logger(name),
	}
	if server {
		o.RPCPort, o.RaftPort = h.freePort(t, ip), h.freePort(t, ip)
	}
	return o
}

// start makes an agent with New and starts it; it is shut down when the
// whole test ends (not the subtest t), whatever happens.
func (h *harness) start(t *testing.T, o Options) *Cluster {
	t.Helper()
	c, err := New(o)
	if err != nil {
		t.Fatalf("New(%s): %v", o.Name, err)
	}
	h.t.Cleanup(func() {
		if err := c.Shutdown(); err != nil {
			h.t.Logf("shutdown %s: %v", o.Name, err)
		}
	})
	if err := c.Start(h.ctx); err != nil {
		t.Fatalf("Start(%s): %v", o.Name, err)
	}
	return c
}

func rpcAddr(o Options) string { return joinAddr(o.AdvertiseAddr.String(), o.RPCPort) }

func identSerial(c *Cluster) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ident == nil {
		return ""
	}
	return c.ident.nodeSerial()
}

// memberView is what the tests compare of a Member.
type memberView struct {
	Name   string
	Role   Role
	Status string
}

func members(c *Cluster) []memberView {
	var out []memberView
	for _, m := range c.Members() {
		out = append(out, memberView{m.Name, m.Role, m.Status})
	}
	return out
}

func waitMembers(t *testing.T, c *Cluster, name string, want []memberView) {
	t.Helper()
	waitFor(t, converge, func() (bool, string) {
		got := members(c)
		if d := cmp.Diff(want, got); d != "" {
			return false, fmt.Sprintf("members of %s (-want +got):\n%s", name, d)
		}
		return true, ""
	})
}

func waitReady(t *testing.T, c *Cluster, leader string) {
	t.Helper()
	waitFor(t, converge, func() (bool, string) {
		s := c.Status()
		return s.Ready() && s.Leader == leader, fmt.Sprintf("%s: leader %q, checks %+v", s.Node, s.Leader, s.Checks)
	})
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

func TestClusterJoinLeave(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-agent cluster on loopback")
	}
	h := newHarness(t, 60*time.Second)
	ctx := h.ctx

	s1o := h.options(t, "s1", 1, true, true)
	s1 := h.start(t, s1o)
	if !s1.Joined() {
		t.Fatal("the bootstrap server is not joined after Start")
	}
	serverTok, err := s1.CreateToken(ctx, TokenRequest{Server: true, TTL: time.Hour, Uses: 1})
	if err != nil {
		t.Fatalf("CreateToken(server): %v", err)
	}
	clientTok, err := s1.CreateToken(ctx, TokenRequest{TTL: time.Hour, Uses: 1})
	if err != nil {
		t.Fatalf("CreateToken(client): %v", err)
	}

	s2o := h.options(t, "s2", 2, true, false)
	s2 := h.start(t, s2o)
	if s2.Joined() {
		t.Fatal("a server without identity or bootstrap is joined after Start")
	}
	if err := s2.Join(ctx, serverTok.Token, []string{rpcAddr(s1o)}); err != nil {
		t.Fatalf("s2 Join: %v", err)
	}
	c1o := h.options(t, "c1", 3, false, false)
	c1 := h.start(t, c1o)
	if err := c1.Join(ctx, clientTok.Token, []string{rpcAddr(s1o)}); err != nil {
		t.Fatalf("c1 Join: %v", err)
	}
	if !s2.Joined() || !c1.Joined() {
		t.Fatalf("after Join: s2 joined %v, c1 joined %v", s2.Joined(), c1.Joined())
	}
	if err := c1.Join(ctx, clientTok.Token, []string{rpcAddr(s1o)}); !errors.Is(err, ErrAlreadyJoined) {
		t.Errorf("second Join of c1: %v, want ErrAlreadyJoined", err)
	}

	t.Run("second server becomes a voter", func(t *testing.T) {
		for _, s := range []*Cluster{s1, s2} {
			waitFor(t, converge, func() (bool, string) {
				st := s.Status()
				want := []RaftPeer{
					{ID: "s1", Address: joinAddr("127.0.0.1", s1o.RaftPort), Voter: true},
					{ID: "s2", Address: joinAddr("127.0.0.2", s2o.RaftPort), Voter: true},
				}
				got := slices.Clone(st.RaftPeers)
				slices.SortFunc(got, func(a, b RaftPeer) int { return strings.Compare(a.ID, b.ID) })
				if d := cmp.Diff(want, got); d != "" || st.Leader != "s1" {
					return false, fmt.Sprintf("%s: leader %q, raft peers (-want +got):\n%s", st.Node, st.Leader, d)
				}
				return true, ""
			})
		}
	})
	all := []memberView{{"c1", RoleClient, StatusAlive}, {"s1", RoleServer, StatusAlive}, {"s2", RoleServer, StatusAlive}}
	t.Run("every agent sees three alive members", func(t *testing.T) {
		for name, a := range map[string]*Cluster{"s1": s1, "s2": s2, "c1": c1} {
			waitMembers(t, a, name, all)
		}
	})
	t.Run("every agent holds the same state", func(t *testing.T) {
		waitFor(t, converge, func() (bool, string) {
			i1, i2, i3 := s1.State().Index, s2.State().Index, c1.State().Index
			return i1 > 0 && i1 == i2 && i2 == i3, fmt.Sprintf("indexes s1=%d s2=%d c1=%d", i1, i2, i3)
		})
		want := s1.State().Public()
		for name, a := range map[string]*Cluster{"s2": s2, "c1": c1} {
			if d := cmp.Diff(want, a.State().Public(), stateOpts...); d != "" {
				t.Errorf("state of %s (-s1 +%s):\n%s", name, name, d)
			}
		}
		if c1.State().CAKey != "" || len(c1.State().Tokens) != 0 || c1.State().GossipKeys != nil {
			t.Errorf("the client holds server-only secrets")
		}
		if s2.State().CAKey == "" {
			t.Errorf("the second server did not get the CA key")
		}
	})
	t.Run("client is healthy", func(t *testing.T) {
		waitReady(t, c1, "s1")
	})
	if t.Failed() {
		t.FailNow()
	}

	t.Run("used-up token is refused and changes nothing", func(t *testing.T) {
		before := s1.State()
		c2o := h.options(t, "c2", 4, false, false)
		c2 := h.start(t, c2o)
		err := c2.Join(ctx, clientTok.Token, []string{rpcAddr(s1o)})
		if !errors.Is(err, ErrTokenUsedUp) {
			t.Fatalf("Join with a used-up token: %v, want ErrTokenUsedUp", err)
		}
		if c2.Joined() {
			t.Errorf("c2 is joined after a refused join")
		}
		if li, err := c2.store.loadIdentity(); li != nil || err != nil {
			t.Errorf("a refused join left an identity: %v, %v", li != nil, err)
		}
		if d := cmp.Diff(before, s1.State(), sameContent...); d != "" {
			t.Errorf("a refused join changed the state (-before +after):\n%s", d)
		}
	})
	t.Run("garbled tokens are refused", func(t *testing.T) {
		good, err := ParseToken(clientTok.Token)
		if err != nil {
			t.Fatal(err)
		}
		fresh, err := s1.CreateToken(ctx, TokenRequest{TTL: time.Hour, Uses: 5})
		if err != nil {
			t.Fatal(err)
		}
		freshTok, err := ParseToken(fresh.Token)
		if err != nil {
			t.Fatal(err)
		}
		serverOnly, err := s1.CreateToken(ctx, TokenRequest{Server: true, TTL: time.Hour, Uses: 5})
		if err != nil {
			t.Fatal(err)
		}
		before := s1.State()
		tests := []struct {
			name  string
			token string
			via   string
			want  error
		}{
			{"random id and secret", JoinToken{good.CAFingerprint, randomHex(t, 8), randomHex(t, 32)}.String(), rpcAddr(s1o), ErrTokenUnknown},
			{"right id, wrong secret", JoinToken{good.CAFingerprint, freshTok.ID, randomHex(t, 32)}.String(), rpcAddr(s1o), ErrTokenUnknown},
			{"wrong secret through a follower", JoinToken{good.CAFingerprint, freshTok.ID, randomHex(t, 32)}.String(), rpcAddr(s2o), ErrTokenUnknown},
			{"server token for a client", serverOnly.Token, rpcAddr(s1o), ErrTokenWrongRole},
			// The host refuses the server before it sends the secret.
			{"another CA's fingerprint", JoinToken{randomHex(t, 32), freshTok.ID, freshTok.Secret}.String(), rpcAddr(s1o), ErrNoServerReached},
		}
		c3o := h.options(t, "c3", 5, false, false)
		c3 := h.start(t, c3o)
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				err := c3.Join(ctx, tt.token, []string{tt.via})
				if !errors.Is(err, tt.want) {
					t.Fatalf("Join: %v, want %v", err, tt.want)
				}
				if strings.Contains(err.Error(), tt.token) {
					t.Errorf("join error quotes the token: %v", err)
				}
				if c3.Joined() {
					t.Fatalf("c3 is joined after a refused join")
				}
			})
		}
		if d := cmp.Diff(before, s1.State(), sameContent...); d != "" {
			t.Errorf("refused joins changed the state (-before +after):\n%s", d)
		}
	})
	t.Run("name of a live node is refused", func(t *testing.T) {
		tok, err := s1.CreateToken(ctx, TokenRequest{TTL: time.Hour, Uses: 1})
		if err != nil {
			t.Fatal(err)
		}
		before := s1.State()
		impostor := h.start(t, h.options(t, "c1", 6, false, false))
		if err := impostor.Join(ctx, tok.Token, []string{rpcAddr(s1o)}); !errors.Is(err, ErrNameInUse) {
			t.Fatalf("Join as the live c1: %v, want ErrNameInUse", err)
		}
		if d := cmp.Diff(before, s1.State(), sameContent...); d != "" {
			t.Errorf("the refused join changed the state (-before +after):\n%s", d)
		}
	})
	t.Run("server-only operations", func(t *testing.T) {
		if _, err := c1.CreateToken(ctx, TokenRequest{TTL: time.Hour, Uses: 1}); !errors.Is(err, ErrNotServer) {
			t.Errorf("CreateToken on a client: %v, want ErrNotServer", err)
		}
		if err := c1.RemoveNode(ctx, "s2"); !errors.Is(err, ErrNotServer) {
			t.Errorf("RemoveNode on a client: %v, want ErrNotServer", err)
		}
		for name, s := range map[string]*Cluster{"s1": s1, "s2": s2} {
			if err := s.RemoveNode(ctx, "nope"); !errors.Is(err, ErrNodeUnknown) {
				t.Errorf("RemoveNode(nope) on %s: %v, want ErrNodeUnknown", name, err)
			}
		}
		// A token created on a follower is forwarded to the leader.
		tok, err := s2.CreateToken(ctx, TokenRequest{TTL: time.Minute, Uses: 1})
		if err != nil {
			t.Fatalf("CreateToken on the follower: %v", err)
		}
		pt, err := ParseToken(tok.Token)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := s1.State().Tokens[pt.ID]; !ok {
			t.Errorf("token created on the follower is not in the leader's state")
		}
	})

	t.Run("client leaves", func(t *testing.T) {
		node := s1.State().Nodes["c1"]
		if node == nil || len(node.Certs) == 0 {
			t.Fatalf("c1 is not registered with its certificates: %+v", node)
		}
		var serials []string
		for _, c := range node.Certs {
			serials = append(serials, c.Serial)
		}
		if serials[0] != identSerial(c1) {
			t.Errorf("registered serial %s, c1 holds %s", serials[0], identSerial(c1))
		}
		if err := c1.Leave(ctx); err != nil {
			t.Fatalf("Leave: %v", err)
		}
		if c1.Joined() {
			t.Errorf("c1 is joined after Leave")
		}
		for name, s := range map[string]*Cluster{"s1": s1, "s2": s2} {
			waitFor(t, converge, func() (bool, string) {
				st := s.State()
				var notRevoked []string
				for _, serial := range serials {
					if !st.IsRevoked(serial) {
						notRevoked = append(notRevoked, serial)
					}
				}
				var nodes []string
				for _, n := range s.Nodes() {
					nodes = append(nodes, n.Name)
				}
				tomb, tombstoned := st.Tombstones["c1"]
				ms := members(s)
				ok := len(notRevoked) == 0 && !slices.Contains(nodes, "c1") && tombstoned && tomb.Reason == "left" &&
					!slices.ContainsFunc(ms, func(m memberView) bool { return m.Name == "c1" })
				return ok, fmt.Sprintf("%s: not revoked %v, nodes %v, tombstone %v %+v, members %+v", name, notRevoked, nodes, tombstoned, tomb, ms)
			})
		}
		for _, f := range []string{fileNodeKey, fileNodeInfo, fileNodeCert, fileGossipKey, fileState} {
			if _, err := os.Stat(filepath.Join(c1o.DataDir, f)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s is still in the data dir after Leave (stat: %v)", f, err)
			}
		}
		// The servers carry on without it.
		rest := []memberView{{"s1", RoleServer, StatusAlive}, {"s2", RoleServer, StatusAlive}}
		waitMembers(t, s1, "s1", rest)
		waitMembers(t, s2, "s2", rest)
		if err := c1.Leave(ctx); !errors.Is(err, ErrNotJoined) {
			t.Errorf("second Leave: %v, want ErrNotJoined", err)
		}
	})

	t.Run("no secret reaches the logs", func(t *testing.T) {
		logs := h.log.String()
		if !strings.Contains(logs, "joined the cluster") {
			t.Fatalf("the logs were not captured")
		}
		st := s1.State()
		secrets := map[string]string{"server token": serverTok.Token, "client token": clientTok.Token, "gossip key": st.GossipKeys[0]}
		if pt, err := ParseToken(clientTok.Token); err == nil {
			secrets["client token secret"] = pt.Secret
		}
		if lines := strings.Split(st.CAKey, "\n"); len(lines) > 2 {
			secrets["CA key"] = lines[1]
		}
		for what, s := range secrets {
			if s != "" && strings.Contains(logs, s) {
				t.Errorf("the logs contain the %s", what)
			}
		}
	})
}

func TestClusterRestart(t *testing.T) {
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
	c1o := h.options(t, "c1", 3, false, false)
	c1 := h.start(t, c1o)
	if err := c1.Join(ctx, tok.Token, []string{rpcAddr(s1o)}); err != nil {
		t.Fatalf("Join: %v", err)
	}
	both := []memberView{{"c1", RoleClient, StatusAlive}, {"s1", RoleServer, StatusAlive}}
	waitMembers(t, s1, "s1", both)
	waitReady(t, c1, "s1")
	serial := identSerial(c1)
	registered := s1.State().Nodes["c1"]
	if serial == "" || registered == nil {
		t.Fatalf("c1 has serial %q, registry entry %+v", serial, registered)
	}

	t.Run("client comes back without a token", func(t *testing.T) {
		before := c1.State()
		if err := c1.Shutdown(); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		if c1.Joined() {
			t.Errorf("joined after Shutdown")
		}
		again := h.start(t, c1o)
		if !again.Joined() {
			t.Fatal("not joined after a restart from the data dir")
		}
		if got := identSerial(again); got != serial {
			t.Errorf("serial after restart = %s, want %s", got, serial)
		}
		// Fail static: it has its state before any server answers.
		if got := again.State(); got.Index < before.Index || got.Nodes["s1"] == nil {
			t.Errorf("restarted client holds index %d (nodes %v), want at least %d with s1", got.Index, nodeNames(got), before.Index)
		}
		waitMembers(t, s1, "s1", both)
		waitMembers(t, again, "c1", both)
		waitReady(t, again, "s1")
		if got := s1.State().Nodes["c1"]; got == nil || got.RegisteredIndex != registered.RegisteredIndex {
			t.Errorf("the restart re-registered c1: %+v", got)
		}
		c1 = again
	})
	if t.Failed() {
		t.FailNow()
	}

	t.Run("server comes back and the client keeps its state meanwhile", func(t *testing.T) {
		before := s1.State()
		// Put a long poll in flight on s1 (the client's sync loop is in one
		// nearly all the time; the probe makes sure of it). Shutdown must
		// end it, not wait for it nor leave it running against a stopped
		// server. The probe has a connection of its own: a request written
		// on an idle keep-alive connection may be cut by Shutdown before
		// the server reads it, which would prove nothing.
		c1.mu.Lock()
		li := c1.ident
		c1.mu.Unlock()
		conf, err := c1.clientTLS(li)
		if err != nil {
			t.Fatal(err)
		}
		probe := newRPCClient(conf)
		t.Cleanup(probe.close)
		var once sync.Once
		wrote, probeDone := make(chan struct{}), make(chan error, 1)
		trace := &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) { once.Do(func() { close(wrote) }) }}
		go func() {
			var st State
			path := fmt.Sprintf("%s?index=%d&wait=30s", rpcState, before.Index)
			probeDone <- probe.do(httptrace.WithClientTrace(ctx, trace), "GET", rpcAddr(s1o), path, nil, &st)
		}()
		select {
		case <-wrote:
		case err := <-probeDone:
			t.Fatalf("long poll ended before the server stopped: %v", err)
		case <-ctx.Done():
			t.Fatal("long poll was never sent")
		}
		if err := s1.Shutdown(); err != nil {
			t.Errorf("Shutdown of a server with a long poll in flight: %v", err)
		}
		waitFor(t, converge, func() (bool, string) {
			select {
			case <-probeDone:
				return true, ""
			default:
				return false, "a long poll still runs on the stopped server"
			}
		})
		if got := c1.State(); got.Index != before.Index || got.Nodes["c1"] == nil {
			t.Errorf("client state while the server is down: index %d, nodes %v", got.Index, nodeNames(got))
		}
		s1b := h.start(t, s1o)
		if !s1b.Joined() {
			t.Fatal("server not joined after a restart")
		}
		waitFor(t, converge, func() (bool, string) {
			st := s1b.Status()
			return st.Leader == "s1" && s1b.State().Index >= before.Index, fmt.Sprintf("leader %q, index %d, want >= %d", st.Leader, s1b.State().Index, before.Index)
		})
		if d := cmp.Diff(before, s1b.State(), sameContent...); d != "" {
			t.Errorf("state after the server restart (-before +after):\n%s", d)
		}
		// New writes still work, and reach the client.
		if _, err := s1b.CreateToken(ctx, TokenRequest{TTL: time.Hour, Uses: 1}); err != nil {
			t.Fatalf("CreateToken after restart: %v", err)
		}
		waitFor(t, converge, func() (bool, string) {
			a, b := s1b.State().Index, c1.State().Index
			return a == b, fmt.Sprintf("server index %d, client index %d", a, b)
		})
		waitMembers(t, s1b, "s1", both)
		waitReady(t, c1, "s1")
	})
}
