package overlay

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/wgctrl/wgtypes"

	"github.com/weft-mesh/weft/policy"
)

// The helper process: the test binary re-executed inside a namespace,
// selected by WEFT_OVERLAY_HELPER. It is a test only so that it lives in
// the test binary; run normally it does nothing.
//
//	node: applies WEFT_HELPER_PLAN (JSON) with the real WireGuard, Links and
//	      Firewall, listens on the TCP ports of WEFT_HELPER_LISTEN, prints
//	      READY, then serves stdin commands until EOF (then Cleanup, BYE).
//	listen: only the TCP listeners of node, READY, then waits for EOF.
//	dial: one TCP connection to WEFT_HELPER_DIAL (from WEFT_HELPER_SOURCE
//	      if set), prints CONNECTED or FAILED.
func TestHelperProcess(t *testing.T) {
	switch os.Getenv("WEFT_OVERLAY_HELPER") {
	case "node":
		os.Exit(helperNode())
	case "dial":
		os.Exit(helperDial())
	case "listen":
		os.Exit(helperListen())
	}
}

func helperNode() int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	fail := func(format string, args ...any) int {
		fmt.Printf("ERROR "+format+"\n", args...)
		return 1
	}
	// Bounded: whatever the parent does, the helper is gone in 90s.
	time.AfterFunc(90*time.Second, func() { fmt.Println("TIMEOUT"); os.Exit(3) })

	var plan, plan2 policy.Plan
	if err := json.Unmarshal([]byte(os.Getenv("WEFT_HELPER_PLAN")), &plan); err != nil {
		return fail("plan: %v", err)
	}
	if err := json.Unmarshal([]byte(os.Getenv("WEFT_HELPER_PLAN2")), &plan2); err != nil {
		return fail("plan2: %v", err)
	}
	wg, err := NewWireGuard(log)
	if err != nil {
		return fail("wireguard: %v", err)
	}
	defer wg.Close()
	ov, err := New(Options{
		WireGuard: wg, Links: NewLinks(), Firewall: NewFirewall(FirewallOptions{}),
		Keys: KeyStore{Dir: os.Getenv("WEFT_HELPER_KEYS")}, Logger: log,
	})
	if err != nil {
		return fail("overlay: %v", err)
	}
	if err := ov.Apply(&plan); err != nil {
		return fail("apply: %v", err)
	}
	if err := listen(); err != nil {
		return fail("listen: %v", err)
	}
	say("READY kind=%s", wg.Kind())

	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		switch sc.Text() {
		case "counters":
			cs, err := ov.fw.Counters()
			if err != nil {
				return fail("counters: %v", err)
			}
			for name, c := range cs {
				say("COUNTER %s %d %d", name, c.Packets, c.Bytes)
			}
			say("END")
		case "reapply":
			if err := ov.Apply(&plan2); err != nil {
				return fail("reapply: %v", err)
			}
			say("REAPPLIED")
		case "status":
			st, err := ov.Status()
			if err != nil {
				return fail("status: %v", err)
			}
			for _, s := range st {
				for _, p := range s.Peers {
					say("PEER %s %s handshake=%d rx=%d tx=%d", s.Interface, p.Name, p.LastHandshake.UnixNano(), p.RxBytes, p.TxBytes)
				}
			}
			say("END")
		}
	}
	if err := ov.Cleanup(); err != nil {
		return fail("cleanup: %v", err)
	}
	say("BYE")
	return 0
}

var stdout sync.Mutex

// say prints one line for the parent.
func say(format string, args ...any) {
	stdout.Lock()
	defer stdout.Unlock()
	fmt.Printf(format+"\n", args...)
}

// listen accepts on the ports of WEFT_HELPER_LISTEN, saying ACCEPT for
// each connection and answering "hello from <port>".
func listen() error {
	for _, port := range strings.Fields(os.Getenv("WEFT_HELPER_LISTEN")) {
		l, err := net.Listen("tcp", ":"+port)
		if err != nil {
			return err
		}
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				say("ACCEPT %s %s", port, c.RemoteAddr())
				io.WriteString(c, "hello from "+port+"\n")
				c.Close()
			}
		}()
	}
	return nil
}

func helperListen() int {
	time.AfterFunc(90*time.Second, func() { fmt.Println("TIMEOUT"); os.Exit(3) })
	if err := listen(); err != nil {
		say("ERROR listen: %v", err)
		return 1
	}
	say("READY")
	io.Copy(io.Discard, os.Stdin)
	say("BYE")
	return 0
}

func helperDial() int {
	d := net.Dialer{Timeout: 2 * time.Second}
	if src := os.Getenv("WEFT_HELPER_SOURCE"); src != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(src)}
	}
	c, err := d.Dial("tcp", os.Getenv("WEFT_HELPER_DIAL"))
	if err != nil {
		fmt.Printf("FAILED %v\n", err)
		return 0
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		fmt.Printf("FAILED read: %v\n", err)
		return 0
	}
	fmt.Printf("CONNECTED %s", line)
	return 0
}

// helper is a running node helper.
type helper struct {
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	stderr *syncBuffer
	seen   []string
}

// startNode runs the node helper in network namespace ns, in a mount
// namespace of its own with a private tmpfs on /run/wireguard (the UAPI
// sockets of two embedded devices named alike would collide otherwise).
func startNode(t *testing.T, ns string, env ...string) *helper {
	t.Helper()
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	script := `mkdir -p /run/wireguard && mount -t tmpfs tmpfs /run/wireguard && exec "$0" "$@"`
	cmd := exec.Command("ip", "netns", "exec", ns, "unshare", "--mount", "--propagation", "private",
		"sh", "-c", script, bin, "-test.run=^TestHelperProcess$", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), append([]string{"WEFT_OVERLAY_HELPER=node"}, env...)...)
	return startHelper(t, ns, cmd)
}

// startListener runs the listen helper in network namespace ns.
func startListener(t *testing.T, ns string, ports string) *helper {
	t.Helper()
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", ns, bin, "-test.run=^TestHelperProcess$", "-test.timeout=2m")
	cmd.Env = append(os.Environ(), "WEFT_OVERLAY_HELPER=listen", "WEFT_HELPER_LISTEN="+ports)
	return startHelper(t, ns, cmd)
}

// startHelper starts cmd and stops it when the test ends: stdin closed
// (the helper's signal to clean up and exit), then killed if it is not
// gone within 10s.
func startHelper(t *testing.T, ns string, cmd *exec.Cmd) *helper {
	t.Helper()
	h := &helper{name: ns, cmd: cmd, lines: make(chan string, 100), stderr: &syncBuffer{}}
	cmd.Stderr = h.stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if h.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(h.lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			h.lines <- sc.Text()
		}
	}()
	go func() {
		cmd.Wait()
		close(done)
	}()
	t.Cleanup(func() {
		h.stdin.Close()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("%s helper stdout:\n%s\n%s helper stderr:\n%s", ns, strings.Join(h.seen, "\n"), ns, h.stderr.String())
		}
	})
	return h
}

// expect waits, bounded, for a line starting with prefix and returns it.
func (h *helper) expect(t *testing.T, prefix string, within time.Duration) string {
	t.Helper()
	deadline := time.After(within)
	for {
		select {
		case l, ok := <-h.lines:
			if !ok {
				t.Fatalf("%s helper exited before %q; saw:\n%s\nstderr:\n%s", h.name, prefix, strings.Join(h.seen, "\n"), h.stderr.String())
			}
			h.seen = append(h.seen, l)
			if strings.HasPrefix(l, "ERROR") || strings.HasPrefix(l, "TIMEOUT") {
				t.Fatalf("%s helper: %s\nstderr:\n%s", h.name, l, h.stderr.String())
			}
			if strings.HasPrefix(l, prefix) {
				return l
			}
		case <-deadline:
			t.Fatalf("%s helper: no %q within %v; saw:\n%s\nstderr:\n%s", h.name, prefix, within, strings.Join(h.seen, "\n"), h.stderr.String())
		}
	}
}

// saw says whether any line so far, or arriving within d, starts with
// prefix.
func (h *helper) saw(prefix string, d time.Duration) bool {
	deadline := time.After(d)
	for {
		if slices.ContainsFunc(h.seen, func(l string) bool { return strings.HasPrefix(l, prefix) }) {
			return true
		}
		select {
		case l, ok := <-h.lines:
			if !ok {
				return false
			}
			h.seen = append(h.seen, l)
		case <-deadline:
			return false
		}
	}
}

func (h *helper) send(t *testing.T, cmd string) {
	t.Helper()
	if _, err := io.WriteString(h.stdin, cmd+"\n"); err != nil {
		t.Fatalf("%s helper: %v", h.name, err)
	}
}

// counters asks the helper for its firewall counters.
func (h *helper) counters(t *testing.T) map[string]Counter {
	t.Helper()
	h.send(t, "counters")
	out := map[string]Counter{}
	for {
		l := h.expect(t, "", 10*time.Second)
		if l == "END" {
			return out
		}
		var name string
		var c Counter
		if _, err := fmt.Sscanf(l, "COUNTER %s %d %d", &name, &c.Packets, &c.Bytes); err == nil {
			out[name] = c
		}
	}
}

// dial connects from namespace ns to addr through the dial helper, from
// source if given.
func dial(t *testing.T, ns, addr string, source ...string) string {
	t.Helper()
	bin, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", ns, bin, "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), "WEFT_OVERLAY_HELPER=dial", "WEFT_HELPER_DIAL="+addr)
	if len(source) > 0 {
		cmd.Env = append(cmd.Env, "WEFT_HELPER_SOURCE="+source[0])
	}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("dial helper: %v: %s", err, out)
	}
	for _, l := range strings.Split(string(out), "\n") {
		if strings.HasPrefix(l, "CONNECTED") || strings.HasPrefix(l, "FAILED") {
			return l
		}
	}
	t.Fatalf("dial helper said nothing useful: %s", out)
	return ""
}

// TestEmbeddedWireGuardRealPackets: two hosts (network namespaces joined
// by a veth underlay) each run an Overlay with the embedded wireguard-go,
// the real links and the real nftables table, in a process of their own.
// Pings and TCP cross the tunnel; a port the firewall does not allow does
// not get through, and arrives once a re-apply allows it, with counters
// kept and no handshake lost.
func TestEmbeddedWireGuardRealPackets(t *testing.T) {
	requireNetns(t, "unshare", "ping", "sh")
	nsA, nsB := newNetns(t, "a"), newNetns(t, "b")
	vethA, vethB := fmt.Sprintf("wfov%da", os.Getpid()), fmt.Sprintf("wfov%db", os.Getpid())
	run(t, "ip", "link", "add", vethA, "netns", nsA, "type", "veth", "peer", "name", vethB, "netns", nsB)
	run(t, "ip", "-n", nsA, "addr", "add", "10.77.0.1/24", "dev", vethA)
	run(t, "ip", "-n", nsB, "addr", "add", "10.77.0.2/24", "dev", vethB)
	run(t, "ip", "-n", nsA, "link", "set", vethA, "up")
	run(t, "ip", "-n", nsB, "link", "set", vethB, "up")

	// Keys are made here and planted in each host's key store, as if a
	// previous run had made them; the helpers load them.
	dirA, dirB := t.TempDir(), t.TempDir()
	pubA := plantKey(t, dirA, "t")
	pubB := plantKey(t, dirB, "t")

	seg := func(self, peerName, peerIP string, peerKey wgtypes.Key, underlay string) policy.SegmentPlan {
		return policy.SegmentPlan{
			Name: "t", Interface: "wf-t", Role: policy.Member,
			CIDR:       netip.MustParsePrefix("10.90.9.0/24"),
			Address:    netip.MustParsePrefix(self + "/24"),
			ListenPort: 51900,
			Peers: []policy.Peer{{
				Name: peerName, PublicKey: peerKey.String(),
				Endpoint:   netip.MustParseAddrPort(underlay + ":51900"),
				AllowedIPs: []netip.Prefix{netip.MustParsePrefix(peerIP + "/32")},
			}},
		}
	}
	fromA := []netip.Prefix{netip.MustParsePrefix("10.90.9.1/32")}
	// A accepts nothing new from B: replies reach it only through the
	// ct established rule.
	planA := policy.Plan{Self: "a", Segments: []policy.SegmentPlan{seg("10.90.9.1", "b", "10.90.9.2", pubB, "10.77.0.2")}}
	planB := policy.Plan{Self: "b", Segments: []policy.SegmentPlan{seg("10.90.9.2", "a", "10.90.9.1", pubA, "10.77.0.1")},
		Firewall: []policy.FirewallRule{
			{Counter: "rule/ping", Action: policy.Allow, Interface: "wf-t", Sources: fromA, Proto: "icmp"},
			{Counter: "rule/web", Action: policy.Allow, Interface: "wf-t", Sources: fromA, Proto: "tcp", Ports: []policy.PortRange{{Lo: 8080, Hi: 8080}}},
		}}
	planB2 := planB
	planB2.Firewall = append(slices.Clone(planB.Firewall),
		policy.FirewallRule{Counter: "rule/admin", Action: policy.Allow, Interface: "wf-t", Sources: fromA, Proto: "tcp", Ports: []policy.PortRange{{Lo: 8081, Hi: 8081}}})

	a := startNode(t, nsA, "WEFT_HELPER_KEYS="+dirA, "WEFT_HELPER_PLAN="+mustJSON(t, planA), "WEFT_HELPER_PLAN2="+mustJSON(t, planA))
	b := startNode(t, nsB, "WEFT_HELPER_KEYS="+dirB, "WEFT_HELPER_PLAN="+mustJSON(t, planB), "WEFT_HELPER_PLAN2="+mustJSON(t, planB2),
		"WEFT_HELPER_LISTEN=8080 8081")
	for _, h := range []*helper{a, b} {
		l := h.expect(t, "READY", 30*time.Second)
		if l != "READY kind="+KindEmbedded {
			t.Logf("%s: %s (this kernel has WireGuard)", h.name, l)
		}
	}

	// Ping across the tunnel: the first packets wait for the handshake.
	var last string
	deadline := time.Now().Add(15 * time.Second)
	for {
		out, err := tryRun("ip", "netns", "exec", nsA, "ping", "-c", "1", "-W", "1", "10.90.9.2")
		if err == nil {
			break
		}
		last = out
		if time.Now().After(deadline) {
			t.Fatalf("no ping through the tunnel within 15s; last:\n%s", last)
		}
	}
	out := run(t, "ip", "netns", "exec", nsA, "ping", "-c", "3", "-i", "0.2", "-W", "1", "10.90.9.2")
	if !strings.Contains(out, "3 received") {
		t.Fatalf("ping:\n%s", out)
	}
	t.Logf("ping A→B over wf-t: %s; %s", grep(out, "packets transmitted"), grep(out, "rtt"))

	// The allowed port connects, the other one does not, and B's
	// listener never sees it.
	if got := dial(t, nsA, "10.90.9.2:8080"); got != "CONNECTED hello from 8080" {
		t.Fatalf("allowed port 8080: %s", got)
	}
	b.expect(t, "ACCEPT 8080", 5*time.Second)
	if got := dial(t, nsA, "10.90.9.2:8081"); !strings.HasPrefix(got, "FAILED") {
		t.Fatalf("denied port 8081: %s", got)
	}
	if b.saw("ACCEPT 8081", time.Second) {
		t.Fatal("B accepted a connection on 8081, which the firewall does not allow")
	}
	before := b.counters(t)
	t.Logf("B counters after ping, 8080 and a refused 8081: %v", before)
	for _, name := range []string{"rule/ping", "rule/web", DefaultDenyCounter} {
		if before[name].Packets == 0 {
			t.Errorf("counter %s counted nothing: %v", name, before)
		}
	}
	if ca := a.counters(t); ca[DefaultDenyCounter].Packets != 0 {
		t.Errorf("A dropped replies (default-deny %v): the ct rule does not pass them", ca[DefaultDenyCounter])
	}

	// Re-apply with 8081 allowed: the table is replaced, counters carry
	// over, and the tunnel is not touched (same handshake).
	b.send(t, "status")
	hs1 := b.expect(t, "PEER wf-t a", 5*time.Second)
	b.expect(t, "END", 5*time.Second)
	b.send(t, "reapply")
	b.expect(t, "REAPPLIED", 10*time.Second)
	if got := dial(t, nsA, "10.90.9.2:8081"); got != "CONNECTED hello from 8081" {
		t.Fatalf("8081 after it was allowed: %s", got)
	}
	after := b.counters(t)
	for _, name := range []string{"rule/ping", "rule/web", DefaultDenyCounter} {
		if after[name].Packets < before[name].Packets {
			t.Errorf("counter %s went back from %d to %d packets across a re-apply", name, before[name].Packets, after[name].Packets)
		}
	}
	if after["rule/admin"].Packets == 0 {
		t.Errorf("the new rule counted nothing: %v", after)
	}
	b.send(t, "status")
	hs2 := b.expect(t, "PEER wf-t a", 5*time.Second)
	b.expect(t, "END", 5*time.Second)
	if handshake(hs1) != handshake(hs2) || handshake(hs1) == "0" {
		t.Errorf("handshake changed across a firewall-only re-apply: %q → %q", hs1, hs2)
	}
	nft := run(t, "ip", "netns", "exec", nsB, "nft", "list", "table", "inet", "weft")
	if n := strings.Count(nft, "ct state established,related accept"); n != 1 {
		t.Errorf("%d ct rules after the re-apply, want 1:\n%s", n, nft)
	}

	// EOF: each helper cleans up (interfaces and table gone) and exits.
	for _, h := range []*helper{a, b} {
		h.stdin.Close()
		h.expect(t, "BYE", 15*time.Second)
	}
	if out, err := tryRun("ip", "netns", "exec", nsB, "nft", "list", "table", "inet", "weft"); err == nil {
		t.Errorf("table still there after Cleanup:\n%s", out)
	}
	if out := run(t, "ip", "-n", nsB, "link", "show"); strings.Contains(out, "wf-t") {
		t.Errorf("wf-t still there after Cleanup:\n%s", out)
	}
}

var handshakeRe = regexp.MustCompile(`handshake=(\d+)`)

func handshake(line string) string {
	m := handshakeRe.FindStringSubmatch(line)
	if m == nil {
		return ""
	}
	return m[1]
}

func grep(text, substr string) string {
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, substr) {
			return strings.TrimSpace(l)
		}
	}
	return ""
}

func plantKey(t *testing.T, dir, segment string) wgtypes.Key {
	t.Helper()
	k, err := wgtypes.GeneratePrivateKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir+"/"+segment+".key", []byte(k.String()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return k.PublicKey()
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
