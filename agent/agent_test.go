package agent

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weft-mesh/weft/client"
	"github.com/weft-mesh/weft/config"
	"github.com/weft-mesh/weft/overlay"
)

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// freePorts returns n distinct free TCP ports on 127.0.0.1 (also probed
// for UDP, which gossip needs).
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for len(ports) < n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		pc, err := net.ListenPacket("udp", ln.Addr().String())
		if err != nil {
			continue
		}
		pc.Close()
		ports = append(ports, port)
	}
	return ports
}

func waitFor(t *testing.T, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := ""
	for time.Now().Before(deadline) {
		ok, seen := cond()
		if ok {
			return
		}
		last = seen
		time.Sleep(50 * time.Millisecond) // polling interval, not a wait for an event
	}
	t.Fatalf("condition not met within %s; last seen: %s", timeout, last)
}

// startDev runs a single-node dev agent and returns its client and log.
func startDev(t *testing.T) (*client.Client, *syncBuffer, string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "wfa")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	rt := config.Dev(dir)
	p := freePorts(t, 3)
	rt.Ports = config.Ports{Gossip: p[0], RPC: p[1], Raft: p[2]}
	rt.NodeName = "dev"
	rt.DNS.Listen = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}
	c, logs, _ := runAgent(t, rt, fakeBackends())
	return c, logs, dir
}

// runAgent runs an agent until the returned stop function is called (or
// the test ends) and waits until it is ready.
func runAgent(t *testing.T, rt config.Runtime, b *Backends) (*client.Client, *syncBuffer, func()) {
	t.Helper()
	logs := &syncBuffer{}
	a, err := New(Options{Runtime: rt, LogOutput: logs, Backends: b})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("agent stopped with error: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Error("agent did not stop")
			}
		})
	}
	t.Cleanup(stop)
	c := client.New(rt.Socket)
	waitFor(t, 20*time.Second, func() (bool, string) {
		s, err := c.Status(context.Background())
		if err != nil {
			return false, err.Error()
		}
		return s.Ready, fmt.Sprintf("%s %s %+v", s.Leader, s.RaftState, s.Checks)
	})
	return c, logs, stop
}

func TestDevAgentAPI(t *testing.T) {
	c, logs, dir := startDev(t)
	ctx := context.Background()

	members, err := c.Members(ctx)
	if err != nil || len(members) != 1 || members[0].Status != "alive" || members[0].Role != "server" {
		t.Fatalf("members = %+v, %v; want one alive server", members, err)
	}
	tok, err := c.CreateToken(ctx, client.TokenRequest{TTL: "10m", Uses: 2})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok.Token, "weft1.") || tok.Uses != 2 {
		t.Fatalf("token = %+v", tok)
	}
	// Refusals are clear errors and change nothing.
	for _, req := range []client.TokenRequest{{TTL: "soon", Uses: 1}, {TTL: "1h", Uses: 0}, {TTL: "-1h", Uses: 1}} {
		if _, err := c.CreateToken(ctx, req); err == nil {
			t.Errorf("CreateToken(%+v) succeeded; want an error", req)
		}
	}
	var ae *client.APIError
	if err := c.RemoveNode(ctx, "nope"); !errors.As(err, &ae) || ae.Status != http.StatusNotFound {
		t.Errorf("RemoveNode(nope) = %v; want 404", err)
	}
	if err := c.RemoveNode(ctx, "dev"); err == nil {
		t.Error("a node removed itself")
	}
	if err := c.Join(ctx, client.JoinRequest{Token: "garbage", Addresses: []string{"127.0.0.1:1"}}); err == nil {
		t.Error("a joined agent joined again")
	}
	nodes, err := c.Nodes(ctx)
	if err != nil || len(nodes) != 1 || nodes[0].Name != "dev" || len(nodes[0].Serials) != 2 {
		t.Fatalf("nodes = %+v, %v", nodes, err)
	}

	// The token secret, the keys and the gossip key never reach the log.
	secrets := []string{tok.Token, strings.Split(tok.Token, ".")[3]}
	for _, name := range []string{"node.key", "server.key", "gossip.key"} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(b), "\n") {
			if len(line) >= 16 && !strings.HasPrefix(line, "-----") {
				secrets = append(secrets, line)
			}
		}
		if name == "gossip.key" {
			raw, _ := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b)))
			secrets = append(secrets, string(raw))
		}
	}
	log := logs.String()
	for _, s := range secrets {
		if strings.Contains(log, s) {
			t.Errorf("a secret (%d bytes) appears in the agent log", len(s))
		}
	}
}

func TestAPIRejectsBadInput(t *testing.T) {
	c, _, dir := startDev(t)
	_ = c
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", filepath.Join(dir, "weft.sock"))
	}}}
	for _, tc := range []struct{ method, path, body string }{
		{"POST", "/v1/tokens", "{not json"},
		{"POST", "/v1/tokens", `{"ttl": 5}`},
		{"POST", "/v1/tokens", `{"unknown": true}`},
		{"POST", "/v1/join", "\x00\x01\x02"},
		{"POST", "/v1/join", `{"token": ["a"]}`},
	} {
		req, _ := http.NewRequest(tc.method, "http://weft"+tc.path, strings.NewReader(tc.body))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", tc.method, tc.path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s %s %q: status %d, want 400", tc.method, tc.path, tc.body, resp.StatusCode)
		}
	}
	if _, err := c.Status(context.Background()); err != nil {
		t.Fatalf("agent unhealthy after bad input: %v", err)
	}
}

func fakeBackends() *Backends {
	return &Backends{WireGuard: overlay.NewFakeWireGuard(), Links: overlay.NewFakeLinks(), Firewall: overlay.NewFakeFirewall()}
}

// TestDevAgentPolicy: a policy applied through the API reaches the
// dataplane (fake backends), is persisted, and an agent restarted with
// the same data dir rebuilds its interfaces from the persisted plan before
// anything else.
func TestDevAgentPolicy(t *testing.T) {
	dir, err := os.MkdirTemp("", "wfa")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	rt := config.Dev(dir)
	p := freePorts(t, 3)
	rt.Ports = config.Ports{Gossip: p[0], RPC: p[1], Raft: p[2]}
	rt.NodeName, rt.Tags = "dev", []string{"t"}
	rt.DNS.Listen = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}
	rt.Metrics.Listen = fmt.Sprintf("127.0.0.1:%d", freePorts(t, 1)[0])
	svc, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer svc.Close()
	rt.Services = []config.Service{{Name: "web", Port: 8080, Tags: []string{"blue"},
		Check: &config.Check{TCP: svc.Addr().String(), Interval: 200 * time.Millisecond, Timeout: 100 * time.Millisecond}}}
	c, _, stop := runAgent(t, rt, fakeBackends())
	ctx := context.Background()

	src := `segment "s" {
  cidr    = "10.90.7.0/24"
  port    = 51899
  members = ["tag:t"]
}
`
	if _, err := c.ApplyPolicy(ctx, client.PolicyRequest{Filename: "p.hcl", Source: "segment {"}); err == nil {
		t.Fatal("a broken policy was applied")
	}
	res, err := c.ApplyPolicy(ctx, client.PolicyRequest{Filename: "p.hcl", Source: src, By: "test"})
	if err != nil || res.Version != 1 {
		t.Fatalf("ApplyPolicy = %+v, %v", res, err)
	}
	waitFor(t, 10*time.Second, func() (bool, string) {
		m, err := c.Members(ctx)
		if err != nil || len(m) != 1 {
			return false, fmt.Sprint(m, err)
		}
		return m[0].PolicyVersion == 1, fmt.Sprintf("policy_version %d", m[0].PolicyVersion)
	})
	segs, err := c.Segments(ctx)
	if err != nil || len(segs) != 1 || segs[0].Interface != "wf-s" || segs[0].Address != "10.90.7.1/24" || segs[0].Role != "member" {
		t.Fatalf("segments = %+v, %v", segs, err)
	}
	e, err := c.Explain(ctx, "dev", "dev", "tcp/22")
	if err != nil || !e.Allowed {
		t.Fatalf("explain = %+v, %v", e, err)
	}
	if _, err := c.Explain(ctx, "dev", "dev", "tcp/99999"); err == nil {
		t.Fatal("explain accepted a bad port")
	}

	// Mesh DNS through the agent's own resolver: the node, the healthy
	// service (by name, tag and SRV), and the record gone once its check
	// fails.
	answer := func(name, qtype string) string {
		a, err := c.DNSQuery(ctx, name, qtype)
		if err != nil {
			return err.Error()
		}
		return a.Rcode + " " + strings.Join(a.Answer, " | ") + " + " + strings.Join(a.Additional, " | ")
	}
	waitFor(t, 10*time.Second, func() (bool, string) {
		got := answer("web.service.weft.internal", "A")
		return strings.Contains(got, "10.90.7.1"), got + " / node: " + answer("dev.node.weft.internal", "A")
	})
	for _, q := range []struct{ name, qtype, want string }{
		{"dev.node.weft.internal", "A", "10.90.7.1"},
		{"blue.web.service.weft.internal", "A", "10.90.7.1"},
		{"_web._tcp.service.weft.internal", "SRV", "8080 dev.node.weft.internal."},
		{"nope.node.weft.internal", "A", "NXDOMAIN"},
		{"example.com", "A", "REFUSED"},
	} {
		if got := answer(q.name, q.qtype); !strings.Contains(got, q.want) {
			t.Errorf("dns %s %s = %q, want %q in it", q.name, q.qtype, got, q.want)
		}
	}
	if _, err := c.DNSQuery(ctx, "bad name..", "A"); err == nil {
		t.Error("a malformed name was queried")
	}
	svc.Close()
	waitFor(t, 10*time.Second, func() (bool, string) {
		got := answer("web.service.weft.internal", "A")
		return strings.HasPrefix(got, "NOERROR") && !strings.Contains(got, "10.90.7.1"), got
	})

	// The metrics listener: Prometheus text with the cluster, the
	// dataplane, DNS and certificate expiry; health and readiness too.
	resp, err := http.Get("http://" + rt.Metrics.Listen + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`weft_members{status="alive"} 1`,
		`weft_raft_state{state="leader"} 1`,
		`weft_policy_version_applied 1`,
		`weft_dns_queries_total{rcode="NXDOMAIN",type="A"}`,
		`weft_cert_expiry_seconds{cert="ca"}`,
		`weft_raft_commit_duration_seconds_count`,
		`weft_rule_packets_total`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	if resp, err := http.Get("http://" + rt.Metrics.Listen + "/v1/ready"); err != nil || resp.StatusCode != 200 {
		t.Errorf("/v1/ready = %v, %v", resp, err)
	}
	stop()

	// Restart: the fake WireGuard is new and empty; the persisted plan
	// recreates the interface before the cluster is even started.
	wg := overlay.NewFakeWireGuard()
	b := &Backends{WireGuard: wg, Links: overlay.NewFakeLinks(), Firewall: overlay.NewFakeFirewall()}
	a, err := New(Options{Runtime: rt, LogOutput: &syncBuffer{}, Backends: b})
	if err != nil {
		t.Fatal(err)
	}
	a.dataplane.restore()
	if _, err := wg.Device("wf-s"); err != nil {
		t.Fatalf("after restore: %v", err)
	}
}

// TestSDNotify: with $NOTIFY_SOCKET set, the agent tells systemd it is
// ready once it runs, and that it stops.
func TestSDNotify(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify.sock")
	ln, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	got := make(chan string, 8)
	go func() {
		buf := make([]byte, 256)
		for {
			n, err := ln.Read(buf)
			if err != nil {
				return
			}
			got <- string(buf[:n])
		}
	}()
	startDev(t)
	select {
	case msg := <-got:
		if !strings.HasPrefix(msg, "READY=1") {
			t.Fatalf("first notification %q, want READY=1", msg)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no READY=1 from the agent")
	}
}
