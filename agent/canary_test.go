package agent

import (
	"context"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weft-mesh/weft/client"
	"github.com/weft-mesh/weft/config"
)

// Canaries: secrets of our choosing, planted where real ones live, so that
// any copy of them that escapes can be found by a plain search.
const (
	// Private WireGuard keys of segment "s", 32 bytes each.
	canaryServerKey = "weft-canary-key-0123456789abcdef"
	canaryClientKey = "weft-canary-key-client-456789abc"
	// The secret of a join token that the servers never issued.
	canaryTokenSecret = "weftCanaryTokenSecret0123456789abcdefXYZ"
)

// startAgent runs an agent until the test ends, without waiting for it to
// be ready (a client that has not joined is not); it returns once the
// admin API answers.
func startAgent(t *testing.T, rt config.Runtime, b *Backends) (*Agent, *client.Client, *syncBuffer) {
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
	t.Cleanup(func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(15 * time.Second):
				t.Error("agent did not stop")
			}
		})
	})
	c := client.New(rt.Socket)
	waitFor(t, 20*time.Second, func() (bool, string) {
		_, err := c.Status(context.Background())
		return err == nil, fmt.Sprint(err)
	})
	return a, c, logs
}

// plantKey writes a private WireGuard key where the agent keeps the key of
// segment, before the agent starts.
func plantKey(t *testing.T, dataDir, segment, raw string) {
	t.Helper()
	if len(raw) != 32 {
		t.Fatalf("a WireGuard key is 32 bytes, %q is %d", raw, len(raw))
	}
	dir := filepath.Join(dataDir, "keys")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, segment+".key"), []byte(base64.StdEncoding.EncodeToString([]byte(raw))+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// forms are the ways a secret may be copied out: as is, and encoded.
func forms(secret string) []string {
	b := []byte(secret)
	return []string{
		secret,
		base64.StdEncoding.EncodeToString(b),
		base64.RawStdEncoding.EncodeToString(b),
		base64.RawURLEncoding.EncodeToString(b),
		hex.EncodeToString(b),
		fmt.Sprintf("%q", b)[1:20], // a Go-quoted prefix
	}
}

// secretLines returns the lines of a secret file worth searching for
// (PEM bodies, base64 keys), and for a base64 gossip keyring the raw keys.
func secretLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		line = strings.TrimSpace(line)
		if len(line) < 16 || strings.HasPrefix(line, "-----") {
			continue
		}
		out = append(out, line)
		if raw, err := base64.StdEncoding.DecodeString(line); err == nil && len(raw) == 32 {
			out = append(out, hex.EncodeToString(raw))
		}
	}
	return out
}

// TestInvariantCanary: canary secrets planted in a join token and in
// private keys, and the real secrets (the token a server issued, the node,
// server and gossip keys, the CA key), appear in no log line (debug level,
// both agents), in no answer of any GET endpoint of the admin API
// (including /debug/pprof/cmdline) and of the metrics listener, and in no
// error a refused join returns.
func TestInvariantCanary(t *testing.T) {
	ctx := context.Background()

	// The server: a dev agent whose key of segment "s" is a canary.
	sdir, err := os.MkdirTemp("", "wfs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sdir) })
	plantKey(t, sdir, "s", canaryServerKey)
	srt := config.Dev(sdir)
	p := freePorts(t, 5)
	srt.Ports = config.Ports{Gossip: p[0], RPC: p[1], Raft: p[2]}
	srt.NodeName, srt.Tags, srt.LogLevel = "dev", []string{"t"}, slog.LevelDebug
	srt.DNS.Listen = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}
	srt.Metrics.Listen = fmt.Sprintf("127.0.0.1:%d", p[3])
	sa, sc, slogs := startAgent(t, srt, fakeBackends())
	waitFor(t, 20*time.Second, func() (bool, string) {
		s, err := sc.Status(ctx)
		return err == nil && s.Ready, fmt.Sprintf("%+v %v", s, err)
	})
	src := "segment \"s\" {\n  cidr    = \"10.90.7.0/24\"\n  port    = 51899\n  members = [\"tag:t\"]\n}\n"
	if _, err := sc.ApplyPolicy(ctx, client.PolicyRequest{Filename: "p.hcl", Source: src, By: "test"}); err != nil {
		t.Fatal(err)
	}
	tok, err := sc.CreateToken(ctx, client.TokenRequest{TTL: "10m", Uses: 1})
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(tok.Token, ".")
	if len(parts) != 4 {
		t.Fatalf("token %d parts", len(parts))
	}
	// Well-formed, pinned to the real CA, so that the client sends it.
	canaryToken := strings.Join([]string{parts[0], parts[1], "0123456789abcdef", canaryTokenSecret}, ".")

	// The client: its key of "s" is a canary too, and its config joins
	// with the canary token, which the server refuses.
	cdir, err := os.MkdirTemp("", "wfc")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(cdir) })
	plantKey(t, cdir, "s", canaryClientKey)
	crt := config.Dev(cdir)
	cp := freePorts(t, 2)
	crt.Server, crt.Bootstrap = false, false
	crt.Ports = config.Ports{Gossip: cp[0], RPC: srt.Ports.RPC, Raft: srt.Ports.Raft}
	crt.NodeName, crt.Tags, crt.LogLevel = "c1", []string{"t"}, slog.LevelDebug
	crt.DNS.Listen = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}
	crt.Metrics.Listen = fmt.Sprintf("127.0.0.1:%d", cp[1])
	serverAddr := fmt.Sprintf("127.0.0.1:%d", srt.Ports.RPC)
	crt.Join = config.Join{Token: canaryToken, Addresses: []string{serverAddr}}
	_, cc, clogs := startAgent(t, crt, fakeBackends())
	waitFor(t, 20*time.Second, func() (bool, string) {
		s, err := cc.Status(ctx)
		if err != nil || len(s.Checks) == 0 {
			return false, fmt.Sprint(err)
		}
		return strings.HasPrefix(s.Checks[0].Reason, "join failed"), fmt.Sprintf("%+v", s.Checks)
	})
	var refusals []string
	err = cc.Join(ctx, client.JoinRequest{Token: canaryToken, Addresses: []string{serverAddr}})
	if err == nil {
		t.Fatal("a join with a token the server never issued succeeded")
	}
	refusals = append(refusals, err.Error())
	if err := cc.Join(ctx, client.JoinRequest{Token: tok.Token, Addresses: []string{serverAddr}}); err != nil {
		t.Fatalf("join with the real token: %v", err)
	}
	waitFor(t, 20*time.Second, func() (bool, string) {
		segs, err := cc.Segments(ctx)
		if err != nil || len(segs) != 1 || len(segs[0].Peers) != 1 {
			return false, fmt.Sprintf("%+v %v", segs, err)
		}
		ssegs, err := sc.Segments(ctx)
		return err == nil && len(ssegs) == 1 && len(ssegs[0].Peers) == 1, fmt.Sprintf("server %+v %v", ssegs, err)
	})
	// A second use of the spent token, through the admin API.
	if err := cc.Join(ctx, client.JoinRequest{Token: tok.Token, Addresses: []string{serverAddr}}); err != nil {
		refusals = append(refusals, err.Error())
	}

	// Every secret there is.
	secrets := map[string][]string{
		"canary server key": forms(canaryServerKey),
		"canary client key": forms(canaryClientKey),
		"canary token":      append(forms(canaryTokenSecret), canaryToken),
		"real token":        append(forms(parts[3]), tok.Token),
	}
	for _, dir := range []string{sdir, cdir} {
		for _, name := range []string{"node.key", "server.key", "gossip.key"} {
			if path := filepath.Join(dir, name); fileExists(path) {
				secrets[dir+"/"+name] = secretLines(t, path)
			}
		}
	}
	secrets["CA key"] = secretLinesOf(sa.cluster.State().CAKey)

	// Every GET endpoint, on both agents; every metrics listener path.
	outputs := map[string]string{"refused joins": strings.Join(refusals, "\n")}
	gets := []string{
		"/v1/members", "/v1/status", "/v1/nodes", "/v1/policy", "/v1/segments", "/v1/flows",
		"/v1/health", "/v1/ready", "/v1/policy/explain?from=dev&to=c1&port=tcp/22",
		"/v1/dns/query?name=c1.node.weft.internal&type=A", "/v1/mesh",
		"/debug/pprof/cmdline", "/debug/pprof/", "/debug/pprof/goroutine?debug=1",
	}
	for agent, sock := range map[string]string{"server": srt.Socket, "client": crt.Socket} {
		hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", sock)
		}}}
		for _, path := range gets {
			outputs[agent+" admin GET "+path] = get(t, hc, "http://weft"+path)
		}
	}
	for agent, addr := range map[string]string{"server": srt.Metrics.Listen, "client": crt.Metrics.Listen} {
		for _, path := range []string{"/metrics", "/v1/health", "/v1/ready", "/", "/ui/", "/ui/app.js", "/v1/mesh"} {
			outputs[agent+" metrics GET "+path] = get(t, http.DefaultClient, "http://"+addr+path)
		}
	}
	if !strings.Contains(outputs["server metrics GET /metrics"], "weft_members") {
		t.Fatalf("the metrics were not read: %.200s", outputs["server metrics GET /metrics"])
	}
	outputs["server log"], outputs["client log"] = slogs.String(), clogs.String()
	if !strings.Contains(outputs["server log"], "refused a join") || !strings.Contains(outputs["client log"], "joined the cluster") {
		t.Fatalf("the logs miss the joins: the test would prove nothing")
	}

	// The controls: the planted keys are the ones in use (their public
	// halves are shown), and the outputs were read.
	for what, raw := range map[string]string{"server": canaryServerKey, "client": canaryClientKey} {
		var k wgtypes.Key
		copy(k[:], raw)
		if pub := k.PublicKey().String(); !strings.Contains(outputs[what+" admin GET /v1/segments"], pub) {
			t.Fatalf("the %s does not use its planted key: %s lacks %s", what, outputs[what+" admin GET /v1/segments"], pub)
		}
	}

	for what, ss := range secrets {
		for _, s := range ss {
			if len(s) < 12 {
				continue
			}
			for where, out := range outputs {
				if strings.Contains(out, s) {
					t.Errorf("the %s (form %.12q…) appears in the %s", what, s, where)
				}
			}
		}
	}
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func secretLinesOf(pemText string) []string {
	var out []string
	for _, line := range strings.Split(pemText, "\n") {
		if line = strings.TrimSpace(line); len(line) >= 16 && !strings.HasPrefix(line, "-----") {
			out = append(out, line)
		}
	}
	return out
}

// get returns the status line, headers and body of a GET.
func get(t *testing.T, hc *http.Client, url string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n", resp.Status)
	resp.Header.Write(&b)
	b.Write(body)
	return b.String()
}
