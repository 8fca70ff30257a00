package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// weft's segment for the throughput run and the policy versions whose
// enforcement is timed. v1 lets a and b reach each other on the iperf3
// port only, so a ping is dropped by the receiver's firewall (after the
// tunnel is up); v2 adds icmp, so the first ping that gets through shows
// that both firewalls enforce v2.
const (
	weftSegment     = "bench"
	weftIface       = "wf-bench"
	weftSegmentCIDR = "10.214.2.0/24"
	weftSegmentPort = 51830
)

// policyV1 and policyV2 differ in one port spec: v2 allows icmp too.
var (
	policyV1 = benchPolicy(1, `"tcp/`+strconv.Itoa(iperfPort)+`"`)
	policyV2 = benchPolicy(2, `"tcp/`+strconv.Itoa(iperfPort)+`", "icmp"`)
)

func benchPolicy(v int, ports string) string {
	return fmt.Sprintf(`# bench: policy v%d. a and b share one segment, intra deny; one rule opens the ports below.
segment %q {
  cidr    = %q
  port    = %d
  members = ["tag:bench"]
  intra   = "deny"
}

rule "iperf3" {
  action = "allow"
  from   = ["segment:%s"]
  to     = ["segment:%s"]
  ports  = [%s]
}
`, v, weftSegment, weftSegmentCIDR, weftSegmentPort, weftSegment, weftSegment, ports)
}

const (
	agentStartTimeout = 60 * time.Second
	enforceTimeout    = 60 * time.Second
	// enforcePoll is how often each condition of an apply is checked: a
	// CLI call or a ping costs about 10 ms here, so this sets the
	// resolution of the figures.
	enforcePoll  = 20 * time.Millisecond
	enforcePing  = 100 * time.Millisecond // a veth round trip is well under 1 ms
	buildTimeout = 5 * time.Minute
)

// A weftAgent is the agent of one host. node is its node name: the
// host's name for a and b, c1, c2, ... for the agents that join and leave
// on host c.
type weftAgent struct {
	h      *host
	node   string
	dir    string
	socket string
	config string
	proc   *proc
}

// weftBed is the two agents: a is the bootstrap server, b a client that
// joins with a token.
type weftBed struct {
	b       *bed
	bin     string
	version string
	a, c    *weftAgent
	notes   []string
}

// enforceTiming is how long one policy version took to be enforced,
// counted from `weft policy apply` returning, with what was waited for.
type enforceTiming struct {
	What    string
	Version uint64
	Total   time.Duration // the longest of the parts
	Parts   []timingPart
}

type timingPart struct {
	Name string
	Took time.Duration
}

// buildWeft builds ./cmd/weft of the module this program is run from.
func buildWeft(ctx context.Context, dir string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, buildTimeout)
	defer cancel()
	gomod, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	mod := strings.TrimSpace(string(gomod))
	if err != nil || mod == "" || mod == os.DevNull {
		return "", errors.New("cannot find the weft module: run from the repository (go run ./bench) or give -weft BINARY")
	}
	bin := filepath.Join(dir, "weft")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/weft")
	cmd.Dir = filepath.Dir(mod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/weft: %w\n%s", err, out)
	}
	return bin, nil
}

// startWeft starts both agents and waits until b has joined and both see
// each other alive.
func (b *bed) startWeft(ctx context.Context, bin string) (*weftBed, error) {
	w := &weftBed{b: b}
	var err error
	if bin == "" {
		if bin, err = buildWeft(ctx, b.dir); err != nil {
			return nil, err
		}
	} else if bin, err = filepath.Abs(bin); err != nil {
		return nil, err
	}
	w.bin = bin
	w.version = version(bin, "version")
	if w.a, err = w.newAgent(b.a, b.a.name); err != nil {
		return nil, err
	}
	if w.c, err = w.newAgent(b.b, b.b.name); err != nil {
		return nil, err
	}

	if err := w.a.write(agentHCL(w.a, true, "")); err != nil {
		return nil, err
	}
	if err := w.start(w.a); err != nil {
		return nil, err
	}
	err = b.waitFor(ctx, agentStartTimeout, "agent a to lead its cluster", func() (bool, string) {
		var st agentStatus
		if err := w.cliJSON(ctx, w.a, &st, "status"); err != nil {
			return false, err.Error()
		}
		return st.Ready && st.Leader == "a", fmt.Sprintf("%+v", st)
	})
	if err != nil {
		return nil, err
	}
	var tok struct {
		Token string `json:"token"`
	}
	if err := w.cliJSON(ctx, w.a, &tok, "token", "create", "-ttl", "10m"); err != nil {
		return nil, err
	}
	if err := w.c.write(agentHCL(w.c, false, tok.Token)); err != nil {
		return nil, err
	}
	if err := w.start(w.c); err != nil {
		return nil, err
	}
	err = b.waitFor(ctx, agentStartTimeout, "agent b to join and both to see each other alive", func() (bool, string) {
		var seen []string
		for _, ag := range []*weftAgent{w.a, w.c} {
			ms, err := w.members(ctx, ag)
			if err != nil {
				return false, err.Error()
			}
			alive := 0
			for _, m := range ms {
				if m.Status == "alive" {
					alive++
				}
			}
			seen = append(seen, fmt.Sprintf("%s sees %+v", ag.h.name, ms))
			if alive != 2 {
				return false, strings.Join(seen, "; ")
			}
		}
		return true, ""
	})
	if err != nil {
		return nil, err
	}
	return w, nil
}

func (w *weftBed) newAgent(h *host, node string) (*weftAgent, error) {
	dir := filepath.Join(w.b.dir, "weft-"+node)
	if err := os.Mkdir(dir, 0o700); err != nil {
		return nil, err
	}
	return &weftAgent{h: h, node: node, dir: dir, socket: filepath.Join(dir, "weft.sock"), config: filepath.Join(dir, "weft.hcl")}, nil
}

func (ag *weftAgent) write(hcl string) error { return os.WriteFile(ag.config, []byte(hcl), 0o600) }

// agentHCL is one agent's config. Paths and the token are quoted with
// strconv.Quote: they hold no backslash, quote, "${" or "%{", where HCL's
// escapes differ from Go's.
func agentHCL(ag *weftAgent, server bool, token string) string {
	var s strings.Builder
	fmt.Fprintf(&s, "node_name = %q\n", ag.node)
	fmt.Fprintf(&s, "data_dir  = %q\n", filepath.Join(ag.dir, "data"))
	fmt.Fprintf(&s, "socket    = %q\n", ag.socket)
	fmt.Fprintf(&s, "bind_addr = %q\n", ag.h.ip.String())
	fmt.Fprintf(&s, "server    = %t\n", server)
	if server {
		s.WriteString("bootstrap = true\n")
	}
	s.WriteString("tags      = [\"bench\"]\nlog_level = \"info\"\n")
	if token != "" {
		fmt.Fprintf(&s, "\njoin {\n  token     = %q\n  addresses = [%q]\n}\n", token, underlayA.String()+":7947")
	}
	return s.String()
}

// start runs the agent in its host's namespace and a private mount
// namespace (embedded wireguard-go's UAPI sockets live in /run/wireguard).
func (w *weftBed) start(ag *weftAgent) error {
	p, err := w.b.start("weft-"+ag.node, nil, ag.h.inNSPrivateMount(w.bin, "agent", "-config-file", ag.config)...)
	ag.proc = p
	return err
}

// cli runs the weft CLI against an agent. The admin socket is a file, so
// the CLI needs no namespace of its own.
func (w *weftBed) cli(ctx context.Context, ag *weftAgent, args ...string) (string, error) {
	return w.cliFor(ctx, cmdTimeout, ag, args...)
}

// cliFor is cli with a time limit other than cmdTimeout.
func (w *weftBed) cliFor(ctx context.Context, limit time.Duration, ag *weftAgent, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	cmd := exec.CommandContext(ctx, w.bin, args...)
	cmd.Env = append(os.Environ(), "WEFT_SOCKET="+ag.socket)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s: weft %s: %w: %s", ag.node, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

func (w *weftBed) cliJSON(ctx context.Context, ag *weftAgent, v any, args ...string) error {
	out, err := w.cli(ctx, ag, append(args, "-json")...)
	if err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		return fmt.Errorf("%s: weft %s -json: %w: %q", ag.node, strings.Join(args, " "), err, out)
	}
	return nil
}

// The parts of the CLI's JSON (docs/cli.md) used here.
type agentStatus struct {
	Joined bool   `json:"joined"`
	Leader string `json:"leader"`
	Ready  bool   `json:"ready"`
}

type member struct {
	Name          string `json:"name"`
	Status        string `json:"status"`
	PolicyVersion uint64 `json:"policy_version"`
}

type segment struct {
	Name      string `json:"name"`
	Interface string `json:"interface"`
	Address   string `json:"address"`
	PublicKey string `json:"public_key"`
	Peers     []struct {
		Name          string    `json:"name"`
		PublicKey     string    `json:"public_key"`
		Endpoint      string    `json:"endpoint"`
		AllowedIPs    []string  `json:"allowed_ips"`
		LastHandshake time.Time `json:"last_handshake"`
	} `json:"peers"`
}

func (w *weftBed) members(ctx context.Context, ag *weftAgent) ([]member, error) {
	var ms []member
	err := w.cliJSON(ctx, ag, &ms, "members")
	return ms, err
}

// segment returns the agent's segment of that name, nil if it has none.
func (w *weftBed) segment(ctx context.Context, ag *weftAgent, name string) (*segment, error) {
	var segs []segment
	if err := w.cliJSON(ctx, ag, &segs, "segments"); err != nil {
		return nil, err
	}
	for i := range segs {
		if segs[i].Name == name {
			return &segs[i], nil
		}
	}
	return nil, nil
}

// apply runs `weft policy apply` on a and returns the new version.
func (w *weftBed) apply(ctx context.Context, name, src string) (uint64, error) {
	file := filepath.Join(w.b.dir, name)
	if err := os.WriteFile(file, []byte(src), 0o600); err != nil {
		return 0, err
	}
	out, err := w.cli(ctx, w.a, "policy", "apply", file)
	if err != nil {
		return 0, err
	}
	// "policy version N applied"
	var v uint64
	if _, err := fmt.Sscanf(strings.TrimSpace(out), "policy version %d applied", &v); err != nil {
		return 0, fmt.Errorf("weft policy apply: unexpected output %q", out)
	}
	return v, nil
}

// membersAt says whether both agents list both hosts at policy version v
// or later: what an operator running `weft members` on either sees. With
// selfOnly it looks only at each agent's own entry, which its dataplane
// sets when it has applied the plan; the other entries come by gossip.
func (w *weftBed) membersAt(ctx context.Context, v uint64, selfOnly bool) (bool, string) {
	var seen []string
	for _, ag := range []*weftAgent{w.a, w.c} {
		ms, err := w.members(ctx, ag)
		if err != nil {
			return false, err.Error()
		}
		want, n := 2, 0
		if selfOnly {
			want = 1
		}
		for _, m := range ms {
			if selfOnly && m.Name != ag.h.name {
				continue
			}
			if m.PolicyVersion >= v {
				n++
			}
			seen = append(seen, fmt.Sprintf("%s sees %s at v%d", ag.h.name, m.Name, m.PolicyVersion))
		}
		if n != want || len(ms) != 2 {
			return false, strings.Join(seen, ", ")
		}
	}
	return true, ""
}

// overlayAddrs returns a's and b's addresses in the segment, once both
// list the other as a peer with an endpoint.
func (w *weftBed) overlayAddrs(ctx context.Context, seg string) (a, b netip.Addr, ok bool, seen string) {
	var addrs []netip.Addr
	for _, ag := range []*weftAgent{w.a, w.c} {
		s, err := w.segment(ctx, ag, seg)
		if err != nil {
			return a, b, false, err.Error()
		}
		if s == nil {
			return a, b, false, ag.h.name + " has no segment " + seg
		}
		if len(s.Peers) != 1 || s.Peers[0].Endpoint == "" {
			return a, b, false, fmt.Sprintf("%s: segment %s has peers %+v", ag.h.name, seg, s.Peers)
		}
		p, err := netip.ParsePrefix(s.Address)
		if err != nil {
			return a, b, false, fmt.Sprintf("%s: segment %s address %q: %v", ag.h.name, seg, s.Address, err)
		}
		addrs = append(addrs, p.Addr())
	}
	return addrs[0], addrs[1], true, ""
}

// timeApply applies src and waits for every check at once, each timed
// from the apply's return.
func (w *weftBed) timeApply(ctx context.Context, what, file, src string, checks []namedCheck) (enforceTiming, error) {
	v, err := w.apply(ctx, file, src)
	if err != nil {
		return enforceTiming{}, err
	}
	et, err := w.b.timeChecks(ctx, fmt.Sprintf("policy v%d", v), v, checks)
	et.What = what
	return et, err
}

type namedCheck struct {
	name string
	cond func(version uint64) (bool, string)
}

// run applies v1 and v2, timing each, and returns the path over the
// segment for iperf3.
func (w *weftBed) run(ctx context.Context) (*path, []enforceTiming, error) {
	var addrA, addrB netip.Addr
	self := namedCheck{"each host's own entry in weft members", func(v uint64) (bool, string) { return w.membersAt(ctx, v, true) }}
	members := namedCheck{"weft members on a and b, all entries", func(v uint64) (bool, string) { return w.membersAt(ctx, v, false) }}
	peers := namedCheck{"peers configured", func(uint64) (bool, string) {
		a, b, ok, seen := w.overlayAddrs(ctx, weftSegment)
		if ok {
			addrA, addrB = a, b
		}
		return ok, seen
	}}
	v1, err := w.timeApply(ctx, "v1: first policy (a new segment: keys, interfaces, peers)", "policy-v1.hcl", policyV1, []namedCheck{self, members, peers})
	if err != nil {
		return nil, nil, err
	}

	// v1 allows only tcp/5201: this ping must not get an answer. It also
	// makes the tunnel's first handshake, which should not be counted in
	// v2's time.
	if w.b.a.ping(ctx, addrB, time.Second) {
		w.notes = append(w.notes, "a ping over the weft segment got an answer under v1, which allows only tcp/5201: the v2 time below does not measure enforcement")
	}
	err = w.b.waitFor(ctx, 20*time.Second, "a WireGuard handshake on the weft segment", func() (bool, string) {
		for _, ag := range []*weftAgent{w.a, w.c} {
			s, err := w.segment(ctx, ag, weftSegment)
			if err != nil {
				return false, err.Error()
			}
			if s == nil || len(s.Peers) != 1 || s.Peers[0].LastHandshake.IsZero() {
				_ = w.b.a.ping(ctx, addrB, 200*time.Millisecond) // nudge; dropped by the firewall
				return false, fmt.Sprintf("%s: %+v", ag.h.name, s)
			}
		}
		return true, ""
	})
	if err != nil {
		return nil, nil, err
	}

	pingBoth := namedCheck{"ping a→b and b→a", func(uint64) (bool, string) {
		if !w.b.a.ping(ctx, addrB, enforcePing) {
			return false, "no answer from b's " + addrB.String()
		}
		if !w.b.b.ping(ctx, addrA, enforcePing) {
			return false, "no answer from a's " + addrA.String()
		}
		return true, ""
	}}
	v2, err := w.timeApply(ctx, "v2: a rule gains icmp (firewall change)", "policy-v2.hcl", policyV2, []namedCheck{self, members, pingBoth})
	if err != nil {
		return nil, nil, err
	}
	return &path{Name: pathWeft, Iface: weftIface, Dest: addrB.String(),
		Note: "segment " + weftSegmentCIDR + ", firewall allows tcp/5201 and icmp"}, []enforceTiming{v1, v2}, nil
}
