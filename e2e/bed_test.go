package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// The agent's default underlay ports; the config template leaves them unset.
const (
	gossipPort = 7946
	rpcPort    = 7947
	raftPort   = 7948
)

const (
	cliTimeout  = 30 * time.Second
	killTimeout = 10 * time.Second
	logTail     = 60 // lines of agent.log shown per host when a test fails
)

// bedCounter hands out bed indexes, which pick the underlay subnet
// 10.213.<index>.0/24 and appear in namespace and link names, so parallel
// beds of one process never collide.
var bedCounter atomic.Int32

var hostNameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,30}$`)

// A Bed is one scenario's private network: an underlay namespace holding a
// bridge, and one namespace per host with an eth0 on that bridge. Nothing is
// routed out of it; the root namespace gets no address and no route.
type Bed struct {
	t      testing.TB
	Index  int
	Subnet netip.Prefix

	underlay string // namespace holding the bridge
	bridge   string

	hosts  []*Host
	byName map[string]*Host

	mu         sync.Mutex
	namespaces []string // created so far, in order
	dirs       []string
}

// A Host is one namespace of a Bed and the weft agent that may run in it.
type Host struct {
	Name string
	IP   netip.Addr
	NS   string // network namespace

	Dir        string // short temp dir; unix socket paths must stay < 108 bytes
	DataDir    string // <Dir>/data; created by the agent, never by the harness
	Socket     string // <Dir>/weft.sock
	ConfigPath string // <Dir>/weft.hcl
	LogPath    string // <Dir>/agent.log: stdout+stderr of every run, appended

	bed *Bed

	mu   sync.Mutex
	proc *agentProc // current or last agent process
}

type agentProc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once the process has been waited for
	code int           // exit code; -1 when killed by a signal
	err  error         // from Wait
}

func (p *agentProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// NewBed makes a bed with one host per name, at 10.213.<bed>.11, .12, ... in
// the order given. Everything it creates is removed when the test ends,
// whether it passed or not.
func NewBed(t testing.TB, names ...string) *Bed {
	t.Helper()
	needNetns(t)
	idx := int(bedCounter.Add(1)) - 1
	if idx > 255 {
		t.Fatalf("bed index %d does not fit the 10.213.x.0/24 scheme", idx)
	}
	if len(names) > 200 {
		t.Fatalf("%d hosts do not fit one /24", len(names))
	}
	b := &Bed{
		t:      t,
		Index:  idx,
		Subnet: netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 213, byte(idx), 0}), 24),
		byName: map[string]*Host{},
	}
	// Registered before anything exists, so a failure half-way through
	// still removes whatever was made.
	t.Cleanup(b.cleanup)

	b.underlay = nsName(idx, "")
	b.bridge = bridgeName(os.Getpid(), idx)
	b.addNS(b.underlay)
	b.ip("-n", b.underlay, "link", "add", b.bridge, "type", "bridge")
	b.ip("-n", b.underlay, "link", "set", b.bridge, "up")

	for i, name := range names {
		if !hostNameRE.MatchString(name) {
			t.Fatalf("host name %q: want %s", name, hostNameRE)
		}
		if _, dup := b.byName[name]; dup {
			t.Fatalf("host name %q given twice", name)
		}
		dir, err := os.MkdirTemp("", "wf")
		if err != nil {
			t.Fatalf("bed: %v", err)
		}
		b.mu.Lock()
		b.dirs = append(b.dirs, dir)
		b.mu.Unlock()
		// Lets the sweeper of a later run remove this dir if we crash.
		if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o600); err != nil {
			t.Fatalf("bed: %v", err)
		}
		h := &Host{
			Name:       name,
			IP:         netip.AddrFrom4([4]byte{10, 213, byte(idx), byte(11 + i)}),
			NS:         nsName(idx, name),
			Dir:        dir,
			DataDir:    filepath.Join(dir, "data"),
			Socket:     filepath.Join(dir, "weft.sock"),
			ConfigPath: filepath.Join(dir, "weft.hcl"),
			LogPath:    filepath.Join(dir, "agent.log"),
			bed:        b,
		}
		b.hosts = append(b.hosts, h)
		b.byName[name] = h

		b.addNS(h.NS)
		veth := vethName(os.Getpid(), idx, i)
		// Both ends are created inside namespaces of this bed, never in the
		// root namespace.
		b.ip("-n", b.underlay, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", h.NS)
		b.ip("-n", b.underlay, "link", "set", veth, "master", b.bridge, "up")
		b.ip("-n", h.NS, "link", "set", "lo", "up")
		b.ip("-n", h.NS, "addr", "add", netip.PrefixFrom(h.IP, 24).String(), "dev", "eth0")
		b.ip("-n", h.NS, "link", "set", "eth0", "up")
	}
	return b
}

// nsName is the namespace of host (or of the underlay when host is "").
func nsName(idx int, host string) string {
	ns := fmt.Sprintf("%s%db%d", nsPrefix, os.Getpid(), idx)
	if host != "" {
		ns += "." + host
	}
	return ns
}

// vethName is the bridge-side end of host i's veth. Link names are limited
// to 15 bytes, so all numbers are in hex: pid < 2^22 is at most 6 digits,
// bed ≤ 255 and host < 200 two each.
func vethName(pid, idx, i int) string {
	return fmt.Sprintf("wv%xb%xh%x", pid, idx, i)
}

func bridgeName(pid, idx int) string {
	return fmt.Sprintf("wbr%xb%x", pid, idx)
}

func (b *Bed) addNS(ns string) {
	b.t.Helper()
	// Recorded first: if `ip netns add` half-succeeds, cleanup still tries.
	b.mu.Lock()
	b.namespaces = append(b.namespaces, ns)
	b.mu.Unlock()
	b.ip("netns", "add", ns)
}

func (b *Bed) ip(args ...string) {
	b.t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		b.t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
}

// Host returns the host with that name; the test fails if there is none.
func (b *Bed) Host(name string) *Host {
	b.t.Helper()
	h, ok := b.byName[name]
	if !ok {
		b.t.Fatalf("bed has no host %q", name)
	}
	return h
}

// Hosts returns every host, in creation order.
func (b *Bed) Hosts() []*Host { return append([]*Host(nil), b.hosts...) }

// Select returns the named hosts, in the order given.
func (b *Bed) Select(names ...string) []*Host {
	b.t.Helper()
	hs := make([]*Host, len(names))
	for i, n := range names {
		hs[i] = b.Host(n)
	}
	return hs
}

// Namespaces lists the namespaces this bed created (underlay first).
func (b *Bed) Namespaces() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.namespaces...)
}

func (b *Bed) cleanup() {
	failed := b.t.Failed()
	for _, h := range b.hosts {
		h.killHard()
	}
	if failed {
		for _, h := range b.hosts {
			b.t.Logf("--- %s agent.log (last %d lines) ---\n%s", h.Name, logTail, tail(h.Log(), logTail))
		}
	}
	b.mu.Lock()
	nss, dirs := b.namespaces, b.dirs
	b.mu.Unlock()
	for i := len(nss) - 1; i >= 0; i-- {
		// Anything else started in the namespace (a CLI run, a helper)
		// would keep it alive after the delete.
		killNetnsPids(nss[i])
		if out, err := exec.Command("ip", "netns", "del", nss[i]).CombinedOutput(); err != nil &&
			!bytes.Contains(out, []byte("No such file")) {
			b.t.Logf("cleanup: ip netns del %s: %v: %s", nss[i], err, bytes.TrimSpace(out))
		}
	}
	if failed && os.Getenv(envKeep) == "1" {
		b.t.Logf("cleanup: %s=1, keeping %s", envKeep, strings.Join(dirs, " "))
		return
	}
	for _, d := range dirs {
		os.RemoveAll(d)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// ---- the agent process ----

// WriteConfig replaces the host's weft.hcl.
func (h *Host) WriteConfig(hcl string) {
	h.bed.t.Helper()
	if err := os.WriteFile(h.ConfigPath, []byte(hcl), 0o600); err != nil {
		h.bed.t.Fatalf("%s: write config: %v", h.Name, err)
	}
}

// Start runs `weft agent -config-file <dir>/weft.hcl` in the host's
// network namespace and in a mount namespace of its own, appending its
// stdout and stderr to agent.log. It does not wait for the agent to be up;
// poll for that.
//
// The mount namespace exists for embedded wireguard-go, which puts the UAPI
// socket of each interface at /run/wireguard/<ifname>.sock: the agents of
// one machine would otherwise collide on wf-<segment>. Each agent gets a
// private tmpfs there; `wg show` of a host has to enter its mount namespace
// (see Host.WG).
func (h *Host) Start(t testing.TB) {
	t.Helper()
	bin := weftBinary(t)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.proc != nil && !h.proc.exited() {
		t.Fatalf("%s: agent already running (pid %d)", h.Name, h.proc.cmd.Process.Pid)
	}
	f, err := os.OpenFile(h.LogPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatalf("%s: %v", h.Name, err)
	}
	fmt.Fprintf(f, "=== e2e: starting agent %s at %s ===\n", h.Name, time.Now().Format(time.RFC3339Nano))
	script := "mkdir -p /run/wireguard && mount -t tmpfs tmpfs /run/wireguard && exec " +
		shQuote(bin) + " agent -config-file " + shQuote(h.ConfigPath)
	cmd := exec.Command("ip", "netns", "exec", h.NS,
		"unshare", "--mount", "--propagation", "private", "sh", "-c", script)
	cmd.Stdout, cmd.Stderr = f, f
	// `ip netns exec` and unshare (without --fork) exec in place, and the
	// script ends in exec, so this pid ends up the agent's and signals reach
	// it directly. If the test process dies, so does it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("%s: start agent: %v", h.Name, err)
	}
	p := &agentProc{cmd: cmd, done: make(chan struct{}), code: -1}
	go func() {
		p.err = cmd.Wait()
		if cmd.ProcessState != nil {
			p.code = cmd.ProcessState.ExitCode()
		}
		f.Close()
		close(p.done)
	}()
	h.proc = p
}

// shQuote quotes s for sh -c.
func shQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// Pid is the pid of the running agent, 0 when none runs.
func (h *Host) Pid() int {
	p := h.current()
	if p == nil || p.exited() {
		return 0
	}
	return p.cmd.Process.Pid
}

// WG runs `wg <args>` in the running agent's network and mount namespaces,
// where its embedded devices' UAPI sockets are.
func (h *Host) WG(args ...string) (string, error) {
	pid := h.Pid()
	if pid == 0 {
		return "", fmt.Errorf("%s: wg: agent not running", h.Name)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	argv := append([]string{"-t", strconv.Itoa(pid), "-m", "-n", "wg"}, args...)
	out, err := exec.CommandContext(ctx, "nsenter", argv...).CombinedOutput()
	if err != nil {
		err = fmt.Errorf("%s: wg %s: %w: %s", h.Name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), err
}

func (h *Host) current() *agentProc {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.proc
}

// Running reports whether an agent started by Start has not exited yet.
func (h *Host) Running() bool {
	p := h.current()
	return p != nil && !p.exited()
}

// Kill sends sig to the running agent.
func (h *Host) Kill(sig syscall.Signal) error {
	p := h.current()
	if p == nil || p.exited() {
		return fmt.Errorf("%s: agent not running", h.Name)
	}
	return p.cmd.Process.Signal(sig)
}

// Wait waits up to timeout for the agent to exit and returns its exit code
// (-1 when a signal ended it).
func (h *Host) Wait(timeout time.Duration) (int, error) {
	p := h.current()
	if p == nil {
		return 0, fmt.Errorf("%s: agent never started", h.Name)
	}
	select {
	case <-p.done:
		return p.code, nil
	case <-time.After(timeout):
		return 0, fmt.Errorf("%s: agent still running after %v", h.Name, timeout)
	}
}

// Stop sends SIGTERM (stop without leaving) and waits for the exit code.
func (h *Host) Stop(t testing.TB) int {
	t.Helper()
	if err := h.Kill(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	code, err := h.Wait(30 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return code
}

func (h *Host) killHard() {
	p := h.current()
	if p == nil || p.exited() {
		return
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	select {
	case <-p.done:
	case <-time.After(killTimeout):
		h.bed.t.Logf("cleanup: %s: agent pid %d did not exit after SIGKILL", h.Name, p.cmd.Process.Pid)
	}
}

// Log returns everything the host's agents wrote so far.
func (h *Host) Log() string {
	b, _ := os.ReadFile(h.LogPath)
	return string(b)
}

// ---- commands in the namespace ----

// CLI runs `weft <args>` in the host's namespace against its agent's socket.
// The error, if any, carries the command and its stderr.
func (h *Host) CLI(args ...string) (stdout, stderr string, err error) {
	bin, err := ensureWeft()
	if err != nil {
		return "", "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.NS, bin}, args...)...)
	cmd.Env = append(os.Environ(), "WEFT_SOCKET="+h.Socket)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err = cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("timed out after %v: %w", cliTimeout, err)
	}
	if err != nil {
		err = fmt.Errorf("%s: weft %s: %w: %s", h.Name, strings.Join(args, " "), err, strings.TrimSpace(e.String()))
	}
	return o.String(), e.String(), err
}

// TryJSON runs `weft <args> -json` and decodes its stdout into v.
func (h *Host) TryJSON(v any, args ...string) error {
	if !hasArg(args, "-json") {
		args = append(args, "-json")
	}
	out, _, err := h.CLI(args...)
	if err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		return fmt.Errorf("%s: weft %s: decoding %q: %w", h.Name, strings.Join(args, " "), out, err)
	}
	return nil
}

// CLIJSON is TryJSON that fails the test on error.
func (h *Host) CLIJSON(t testing.TB, v any, args ...string) {
	t.Helper()
	if err := h.TryJSON(v, args...); err != nil {
		t.Fatal(err)
	}
}

func hasArg(args []string, a string) bool {
	for _, x := range args {
		if x == a {
			return true
		}
	}
	return false
}

// Exec runs any command in the host's namespace and returns its combined
// output.
func (h *Host) Exec(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.NS, name}, args...)...).CombinedOutput()
	if err != nil {
		err = fmt.Errorf("%s: %s %s: %w: %s", h.Name, name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), err
}

// Addr is "<ip>:<port>" of this host.
func (h *Host) Addr(port int) string {
	return netip.AddrPortFrom(h.IP, uint16(port)).String()
}

// DataFile is the path of a file in the agent's data dir.
func (h *Host) DataFile(name string) string { return filepath.Join(h.DataDir, name) }

// ---- config template ----

// AgentConfig is what varies between the agents of a scenario; ConfigHCL
// fills in the rest from the host.
type AgentConfig struct {
	Server    bool
	Bootstrap bool
	Tags      []string
	// Token and JoinVia make a join block; JoinVia lists the servers whose
	// RPC port to join through (the host itself is left out).
	Token   string
	JoinVia []*Host
	Extra   string // raw HCL appended at the end
}

// ConfigHCL renders the agent config of this host.
func (h *Host) ConfigHCL(c AgentConfig) string {
	var b strings.Builder
	fmt.Fprintf(&b, "node_name = %s\n", hclQuote(h.Name))
	fmt.Fprintf(&b, "data_dir  = %s\n", hclQuote(h.DataDir))
	fmt.Fprintf(&b, "socket    = %s\n", hclQuote(h.Socket))
	fmt.Fprintf(&b, "bind_addr = %s\n", hclQuote(h.IP.String()))
	fmt.Fprintf(&b, "server    = %t\n", c.Server)
	if c.Bootstrap {
		b.WriteString("bootstrap = true\n")
	}
	if len(c.Tags) > 0 {
		fmt.Fprintf(&b, "tags      = %s\n", hclList(c.Tags))
	}
	b.WriteString("log_level = \"debug\"\n")
	if c.Token != "" || len(c.JoinVia) > 0 {
		var addrs []string
		for _, s := range c.JoinVia {
			if s != h {
				addrs = append(addrs, s.Addr(rpcPort))
			}
		}
		b.WriteString("\njoin {\n")
		fmt.Fprintf(&b, "  token     = %s\n", hclQuote(c.Token))
		fmt.Fprintf(&b, "  addresses = %s\n", hclList(addrs))
		b.WriteString("}\n")
	}
	if c.Extra != "" {
		b.WriteString("\n" + c.Extra + "\n")
	}
	return b.String()
}

// hclQuote renders s as an HCL quoted string. HCL escapes differ from Go's
// (no \x, and "${" / "%{" start templates), so strconv.Quote will not do.
func hclQuote(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	rs := []rune(s)
	for i, r := range rs {
		next := rune(0)
		if i+1 < len(rs) {
			next = rs[i+1]
		}
		switch {
		case r == '\\':
			b.WriteString(`\\`)
		case r == '"':
			b.WriteString(`\"`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case (r == '$' || r == '%') && next == '{':
			b.WriteRune(r)
			b.WriteRune(r)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

func hclList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = hclQuote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// exitCode extracts the exit status from an exec error (0 for nil).
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}
