package agent

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/weft-mesh/weft/client"
	"github.com/weft-mesh/weft/config"
)

// meshTestPolicy puts the hosts tagged "t" in segment backend and those
// tagged "db" in segment db, which backend may reach on tcp/5432.
const meshTestPolicy = `segment "backend" {
  cidr    = "10.90.9.0/24"
  port    = 51898
  members = ["tag:t"]
}
segment "db" {
  cidr    = "10.90.10.0/24"
  port    = 51897
  members = ["tag:db"]
}
rule "backend-to-db" {
  action = "allow"
  from   = ["segment:backend"]
  to     = ["segment:db"]
  ports  = ["tcp/5432"]
}
`

// startMeshAgent runs an agent like runAgent does, but also returns it, so
// that a test can read what it holds (its CA key, say).
func startMeshAgent(t *testing.T, rt config.Runtime) (*Agent, *client.Client) {
	t.Helper()
	a, err := New(Options{Runtime: rt, LogOutput: &syncBuffer{}, Backends: fakeBackends()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("agent %s stopped with error: %v", rt.NodeName, err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("agent %s did not stop", rt.NodeName)
		}
	})
	c := client.New(rt.Socket)
	waitFor(t, 20*time.Second, func() (bool, string) {
		s, err := c.Status(context.Background())
		if err != nil {
			return false, err.Error()
		}
		return s.Ready, fmt.Sprintf("%s %+v", rt.NodeName, s.Checks)
	})
	return a, c
}

// meshRuntime is a dev agent's configuration with its own ports, tagged
// "t"; server agents also get the metrics listener.
func meshRuntime(t *testing.T, name string, server bool) config.Runtime {
	t.Helper()
	dir, err := os.MkdirTemp("", "wfs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	rt := config.Dev(dir)
	p := freePorts(t, 4)
	rt.Ports = config.Ports{Gossip: p[0], RPC: p[1], Raft: p[2]}
	rt.NodeName, rt.Tags = name, []string{"t"}
	rt.DNS.Listen = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}
	if server {
		rt.Metrics.Listen = fmt.Sprintf("127.0.0.1:%d", p[3])
	} else {
		rt.Server, rt.Bootstrap = false, false
	}
	return rt
}

// getMesh fetches /v1/mesh and returns its body and decoded view.
func getMesh(t *testing.T, listen string) (string, meshView) {
	t.Helper()
	resp, err := http.Get("http://" + listen + "/v1/mesh")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/mesh: %d %s %v", resp.StatusCode, body, err)
	}
	var v meshView
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("GET /v1/mesh: %v\n%s", err, body)
	}
	return string(body), v
}

// secretsOf lists what must never leave an agent: its private keys (TLS,
// gossip, WireGuard), the CA key, and the given tokens with their secrets.
func secretsOf(t *testing.T, a *Agent, dir string, tokens ...string) []string {
	t.Helper()
	secrets := []string{"PRIVATE KEY"}
	for _, tok := range tokens {
		secrets = append(secrets, tok)
		if parts := strings.Split(tok, "."); len(parts) == 4 {
			secrets = append(secrets, parts[3])
		}
	}
	pemLines := func(s string) {
		for _, line := range strings.Split(s, "\n") {
			if len(line) >= 16 && !strings.HasPrefix(line, "-----") {
				secrets = append(secrets, line)
			}
		}
	}
	ca := a.cluster.State().CAKey
	if ca == "" {
		t.Fatal("a server without its CA key")
	}
	pemLines(ca)
	files, _ := filepath.Glob(filepath.Join(dir, "keys", "*.key"))
	files = append(files, filepath.Join(dir, "node.key"), filepath.Join(dir, "server.key"), filepath.Join(dir, "gossip.key"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		pemLines(string(b))
		if raw, err := base64.StdEncoding.DecodeString(strings.TrimSpace(string(b))); err == nil && len(raw) >= 16 {
			secrets = append(secrets, string(raw))
		}
	}
	if len(files) < 4 {
		t.Fatalf("found %d key files, want a WireGuard key too", len(files))
	}
	return secrets
}

// TestStatusPageMesh: /v1/mesh shows the member, its segment with its
// overlay address, and carries no secret; the page itself is served with
// headers that keep it to its own origin; nothing but GET is answered.
func TestStatusPageMesh(t *testing.T) {
	rt := meshRuntime(t, "dev", true)
	a, c := startMeshAgent(t, rt)
	ctx := context.Background()
	tok, err := c.CreateToken(ctx, client.TokenRequest{TTL: "10m", Uses: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.ApplyPolicy(ctx, client.PolicyRequest{Filename: "mesh.hcl", Source: meshTestPolicy, By: "statuspage test"}); err != nil {
		t.Fatal(err)
	}
	var body string
	var v meshView
	waitFor(t, 10*time.Second, func() (bool, string) {
		body, v = getMesh(t, rt.Metrics.Listen)
		return len(v.Members) == 1 && v.Members[0].PolicyVersion == 1 && len(v.Dataplane.Segments) == 1, body
	})
	m := v.Members[0]
	if m.Name != "dev" || m.Status != "alive" || m.Role != "server" || !m.Self || m.Addr != "127.0.0.1" {
		t.Errorf("member = %+v", m)
	}
	if v.Policy == nil || v.Policy.Version != 1 || v.Policy.AppliedBy != "statuspage test" || v.Policy.AppliedOn != 1 {
		t.Errorf("policy = %+v", v.Policy)
	}
	if len(v.Segments) != 2 || v.Segments[0].Name != "backend" || v.Segments[0].CIDR != "10.90.9.0/24" ||
		len(v.Segments[0].Hosts) != 1 || v.Segments[0].Hosts[0] != (meshHost{Name: "dev", Role: "member", Addr: "10.90.9.1"}) ||
		len(v.Segments[1].Hosts) != 0 {
		t.Errorf("segments = %+v", v.Segments)
	}
	if !v.Reach.Computed || len(v.Reach.Edges) != 0 || v.Reach.Hosts != 1 {
		t.Errorf("reach = %+v", v.Reach)
	}
	if d := v.Dataplane; !d.Available || d.Segments[0].Interface != "wf-backend" || d.Segments[0].Address != "10.90.9.1/24" {
		t.Errorf("dataplane = %+v", d)
	}
	if v.Agent.Node != "dev" || !v.Agent.Ready || v.Agent.Domain != "weft.internal" {
		t.Errorf("agent = %+v", v.Agent)
	}
	for _, s := range secretsOf(t, a, rt.DataDir, tok.Token) {
		if strings.Contains(body, s) {
			t.Errorf("/v1/mesh carries a secret (%d bytes)", len(s))
		}
	}
	if strings.Contains(body, "public_key") || strings.Contains(body, "source") {
		t.Error("/v1/mesh carries keys or the policy source")
	}

	// The page, its script and the JSON: own origin only, no sniffing.
	for _, tc := range []struct{ path, ctype, want string }{
		{"/", "text/html", `<script src="/ui/app.js">`},
		{"/ui/", "text/html", `id="reach-h"`},
		{"/ui/app.js", "text/javascript", "/v1/mesh"},
		{"/v1/mesh", "application/json", `"members"`},
	} {
		resp, err := http.Get("http://" + rt.Metrics.Listen + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		h := resp.Header
		if resp.StatusCode != 200 || !strings.HasPrefix(h.Get("Content-Type"), tc.ctype) || !strings.Contains(string(b), tc.want) {
			t.Errorf("GET %s: %d %q, body lacks %q", tc.path, resp.StatusCode, h.Get("Content-Type"), tc.want)
		}
		csp := h.Get("Content-Security-Policy")
		if !strings.Contains(csp, "default-src 'self'") || !strings.Contains(csp, "script-src 'self';") || h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET %s: CSP %q, nosniff %q", tc.path, csp, h.Get("X-Content-Type-Options"))
		}
	}
	for _, method := range []string{"POST", "PUT", "DELETE"} {
		for _, path := range []string{"/", "/v1/mesh"} {
			req, _ := http.NewRequest(method, "http://"+rt.Metrics.Listen+path, strings.NewReader("{}"))
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusMethodNotAllowed {
				t.Errorf("%s %s: %d, want 405", method, path, resp.StatusCode)
			}
		}
	}
	if resp, err := http.Get("http://" + rt.Metrics.Listen + "/ui/nope.js"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /ui/nope.js = %v, %v; want 404", resp, err)
	}
}

// TestStatusPageReachCache: repeated polls of one state reuse the edges;
// a new state recomputes them; past the limit, none are computed.
func TestStatusPageReachCache(t *testing.T) {
	rt := meshRuntime(t, "dev", true)
	a, c := startMeshAgent(t, rt)
	if _, err := c.ApplyPolicy(context.Background(), client.PolicyRequest{Filename: "mesh.hcl", Source: meshTestPolicy}); err != nil {
		t.Fatal(err)
	}
	p := &statusPage{a: a}
	st := a.cluster.State()
	doc, err := st.Document()
	if err != nil || doc == nil {
		t.Fatalf("document: %v", err)
	}
	first := p.reachOf(st, doc, st.PolicyHosts())
	if again := p.reachOf(st, doc, st.PolicyHosts()); again != first {
		t.Error("a poll of the same state recomputed the edges")
	}
	next := *st
	next.Index++
	if p.reachOf(&next, doc, next.PolicyHosts()) == first {
		t.Error("a new state reused the old edges")
	}
	hosts := st.PolicyHosts()
	for len(hosts) <= maxGraphHosts {
		hosts = append(hosts, hosts[0])
		hosts[len(hosts)-1].Name = fmt.Sprintf("h%03d", len(hosts))
	}
	if r := computeReach(st, doc, hosts); r.Computed || len(r.Edges) != 0 || !strings.Contains(r.Reason, "up to 200") {
		t.Errorf("reach of %d hosts = computed %v, %d edges, %q", len(hosts), r.Computed, len(r.Edges), r.Reason)
	}
}

// TestStatusPageNoDataplane: a host without a dataplane says so, and why.
func TestStatusPageNoDataplane(t *testing.T) {
	a := &Agent{dataplaneErr: "overlay: operation not permitted"}
	d := a.dataplaneView(time.Now())
	if d.Available || d.Reason != "overlay: operation not permitted" || d.Segments == nil {
		t.Errorf("dataplane = %+v", d)
	}
}

// TestStatusPageBrowser renders the page in headless Chromium against
// three agents (server dev and client c1 in segment backend, client c2 in
// segment db, which backend may reach), checks the DOM for the members,
// the segments and the graph, and keeps a screenshot.
func TestStatusPageBrowser(t *testing.T) {
	chromium := "/usr/bin/chromium"
	if _, err := os.Stat(chromium); err != nil {
		if os.Getenv("WEFT_E2E_REQUIRED") == "1" {
			t.Fatalf("chromium is required (WEFT_E2E_REQUIRED=1): %v", err)
		}
		t.Skipf("no chromium: %v", err)
	}
	rt := meshRuntime(t, "dev", true)
	_, c := startMeshAgent(t, rt)
	ctx := context.Background()
	tok, err := c.CreateToken(ctx, client.TokenRequest{TTL: "10m", Uses: 2})
	if err != nil {
		t.Fatal(err)
	}
	join := config.Join{Token: tok.Token, Addresses: []string{fmt.Sprintf("127.0.0.1:%d", rt.Ports.RPC)}}
	c1 := meshRuntime(t, "c1", false)
	c1.Join = join
	// A service whose check fails: nothing listens on port 1.
	c1.Services = []config.Service{{Name: "api", Port: 8080,
		Check: &config.Check{TCP: "127.0.0.1:1", Interval: 200 * time.Millisecond, Timeout: 100 * time.Millisecond}}}
	startMeshAgent(t, c1)
	c2 := meshRuntime(t, "c2", false)
	c2.Join, c2.Tags = join, []string{"db"}
	startMeshAgent(t, c2)
	// The policy comes after the joins: a client that joins a cluster
	// whose policy already selects it may register its segment key
	// before cluster.startJoined has made its RPC client (a nil
	// dereference in cluster.RegisterSegmentKey, a bug of cluster's).
	if _, err := c.ApplyPolicy(ctx, client.PolicyRequest{Filename: "mesh.hcl", Source: meshTestPolicy, By: "statuspage test"}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, func() (bool, string) {
		body, v := getMesh(t, rt.Metrics.Listen)
		failing := len(v.Members) == 3 && len(v.Members[0].Failing) == 1 // c1, first by name
		return len(v.Reach.Edges) == 4 && v.Policy != nil && v.Policy.AppliedOn == 3 && failing, body
	})

	url := "http://" + rt.Metrics.Listen + "/"
	dom := runChromium(t, chromium, "--dump-dom", url)
	for _, want := range []string{
		// members, their status and c1's failing check
		`data-member="dev"`, `data-member="c1"`, `data-member="c2"`, ">alive<", ">api<",
		// the segments with their hosts' addresses
		`data-segment="backend"`, `data-segment="db"`, ">10.90.9.2<", ">10.90.10.1<",
		// the graph: its hosts and edges, and the same as a table
		`id="graph"`, `class="node self" data-host="dev"`, `class="node" data-host="c2"`,
		`class="edge" data-from="dev" data-to="c1"`, `class="edge" data-from="c1" data-to="c2" data-segment="db"`,
		`data-from="c1" data-to="c2"><td>c1</td>`, "rule/backend-to-db tcp/5432",
		// this host's WireGuard peers, and the policy
		`data-peer="c1"`, "Policy v1", "statuspage test",
	} {
		if !strings.Contains(dom, want) {
			t.Errorf("the page lacks %q", want)
		}
	}
	if t.Failed() {
		t.Logf("DOM:\n%s", dom)
	}

	artifacts := os.Getenv("WEFT_ARTIFACTS")
	if artifacts == "" {
		artifacts = t.TempDir()
	} else if err := os.MkdirAll(artifacts, 0o755); err != nil {
		t.Fatal(err)
	}
	shot := filepath.Join(artifacts, "statuspage.png")
	runChromium(t, chromium, "--screenshot="+shot, "--window-size=1280,900", url)
	if fi, err := os.Stat(shot); err != nil || fi.Size() == 0 {
		t.Fatalf("no screenshot: %v", err)
	}
	t.Logf("screenshot: %s", shot)
}

// runChromium runs headless Chromium once on url, bounded in time, and
// returns what it printed. Its whole process group is killed at the end.
func runChromium(t *testing.T, chromium string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir(), "--virtual-time-budget=5000"}
	cmd := exec.CommandContext(ctx, chromium, append(base, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var once sync.Once
	killGroup := func() {
		once.Do(func() {
			if cmd.Process != nil {
				_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			}
		})
	}
	cmd.Cancel = func() error { killGroup(); return nil }
	cmd.WaitDelay = 5 * time.Second
	t.Cleanup(killGroup)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	killGroup() // helpers it left behind
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			t.Fatalf("chromium did not finish within 60 s: %s", stderr.String())
		}
		t.Fatalf("chromium: %v: %s", err, stderr.String())
	}
	return string(out)
}
