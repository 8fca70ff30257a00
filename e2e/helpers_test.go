package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"
)

const pollInterval = 100 * time.Millisecond

// Eventually polls cond every 100ms until it holds or timeout passes, then
// fails the test with what cond last saw. It returns how long it took.
func Eventually(t testing.TB, timeout time.Duration, cond func() (ok bool, lastSeen string)) time.Duration {
	t.Helper()
	start := time.Now()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		ok, seen := cond()
		if ok {
			return time.Since(start)
		}
		if time.Since(start) >= timeout {
			t.Fatalf("condition not met within %v; last seen: %s", timeout, seen)
		}
		<-tick.C
	}
}

// Consistently polls cond every 100ms for the whole duration and fails the
// test the first time it does not hold. It is for "must not happen" checks,
// which can only be observed over a window of time.
func Consistently(t testing.TB, d time.Duration, cond func() (ok bool, seen string)) {
	t.Helper()
	start := time.Now()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		ok, seen := cond()
		if !ok {
			t.Fatalf("condition broke after %v (of %v): %s", time.Since(start).Round(time.Millisecond), d, seen)
		}
		if time.Since(start) >= d {
			return
		}
		<-tick.C
	}
}

var figuresMu sync.Mutex

// Figure reports a measurement: in the test log, and as a "name value unit"
// line appended to $WEFT_E2E_FIGURES when set. Figures are for people and
// dashboards; tests never assert on them.
func Figure(t testing.TB, name string, value float64, unit string) {
	t.Helper()
	line := fmt.Sprintf("%s %.3f %s", name, value, unit)
	t.Logf("figure: %s", line)
	path := os.Getenv(envFigures)
	if path == "" {
		return
	}
	figuresMu.Lock()
	defer figuresMu.Unlock()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err == nil {
		_, err = fmt.Fprintln(f, line)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		t.Errorf("figures: %v", err)
	}
}

// ---- JSON shapes of the CLI (docs/cli.md) ----

type Member struct {
	Name       string `json:"name"`
	Addr       string `json:"addr"`
	GossipPort int    `json:"gossip_port"`
	RPCPort    int    `json:"rpc_port"`
	Role       string `json:"role"`
	Status     string `json:"status"`
	StateIndex uint64 `json:"state_index"`
	// PolicyVersion is the policy version the host's dataplane enforces.
	PolicyVersion uint64   `json:"policy_version"`
	Tags          []string `json:"tags"`
}

type RaftPeer struct {
	ID      string `json:"id"`
	Address string `json:"address"`
	Voter   bool   `json:"voter"`
}

type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Reason string `json:"reason"`
}

type Status struct {
	Node       string     `json:"node"`
	Role       string     `json:"role"`
	Domain     string     `json:"domain"`
	Joined     bool       `json:"joined"`
	Leader     string     `json:"leader"`
	RaftState  string     `json:"raft_state"`
	RaftPeers  []RaftPeer `json:"raft_peers"`
	StateIndex uint64     `json:"state_index"`
	Ready      bool       `json:"ready"`
	Checks     []Check    `json:"checks"`
	Version    string     `json:"version"`
}

type Node struct {
	Name            string   `json:"name"`
	Role            string   `json:"role"`
	Addr            string   `json:"addr"`
	Tags            []string `json:"tags"`
	Serials         []string `json:"serials"`
	RegisteredIndex uint64   `json:"registered_index"`
}

type Token struct {
	Token   string    `json:"token"`
	Expires time.Time `json:"expires"`
	Uses    int       `json:"uses"`
	Server  bool      `json:"server"`
}

// Segment is one of a host's WireGuard interfaces, from `weft segments`.
type Segment struct {
	Name       string        `json:"name"`
	Interface  string        `json:"interface"`
	Role       string        `json:"role"`
	Address    string        `json:"address"`
	ListenPort int           `json:"listen_port"`
	PublicKey  string        `json:"public_key"`
	Peers      []SegmentPeer `json:"peers"`
}

type SegmentPeer struct {
	Name          string    `json:"name"`
	PublicKey     string    `json:"public_key"`
	Endpoint      string    `json:"endpoint"`
	AllowedIPs    []string  `json:"allowed_ips"`
	LastHandshake time.Time `json:"last_handshake"`
	RxBytes       int64     `json:"rx_bytes"`
	TxBytes       int64     `json:"tx_bytes"`
}

type Explanation struct {
	From    string `json:"from"`
	To      string `json:"to"`
	Port    string `json:"port"`
	Allowed bool   `json:"allowed"`
	Segment string `json:"segment"`
	Rule    string `json:"rule"`
	Reason  string `json:"reason"`
}

type PolicyInfo struct {
	Version   uint64    `json:"version"`
	Filename  string    `json:"filename"`
	Source    string    `json:"source"`
	AppliedAt time.Time `json:"applied_at"`
	AppliedBy string    `json:"applied_by"`
}

func (h *Host) Segments() ([]Segment, error) {
	var s []Segment
	return s, h.TryJSON(&s, "segments")
}

func (h *Host) Status() (Status, error) {
	var s Status
	return s, h.TryJSON(&s, "status")
}

func (h *Host) Members() ([]Member, error) {
	var m []Member
	return m, h.TryJSON(&m, "members")
}

func (h *Host) Nodes() ([]Node, error) {
	var n []Node
	return n, h.TryJSON(&n, "node", "list")
}

// ---- what the agents see ----

// view is one agent's answer to status and members at one moment.
type view struct {
	host    *Host
	status  Status
	members []Member
	err     error
}

func (v view) String() string {
	if v.err != nil {
		return fmt.Sprintf("%s: %v", v.host.Name, v.err)
	}
	var ms []string
	for _, m := range v.members {
		ms = append(ms, m.Name+":"+m.Status)
	}
	return fmt.Sprintf("%s: joined=%t leader=%q raft=%q index=%d members=[%s]",
		v.host.Name, v.status.Joined, v.status.Leader, v.status.RaftState, v.status.StateIndex, strings.Join(ms, " "))
}

func (v view) member(name string) (Member, bool) {
	for _, m := range v.members {
		if m.Name == name {
			return m, true
		}
	}
	return Member{}, false
}

func (v view) memberNames() []string {
	var ns []string
	for _, m := range v.members {
		ns = append(ns, m.Name)
	}
	sort.Strings(ns)
	return ns
}

// observe asks every host, in parallel, for status and members.
func observe(hosts []*Host) []view {
	vs := make([]view, len(hosts))
	var wg sync.WaitGroup
	for i, h := range hosts {
		wg.Go(func() {
			v := view{host: h}
			v.status, v.err = h.Status()
			if v.err == nil {
				v.members, v.err = h.Members()
			}
			vs[i] = v
		})
	}
	wg.Wait()
	return vs
}

func describe(vs []view) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = v.String()
	}
	return strings.Join(parts, "; ")
}

func names(hosts []*Host) []string {
	ns := make([]string, len(hosts))
	for i, h := range hosts {
		ns[i] = h.Name
	}
	sort.Strings(ns)
	return ns
}

// agreement holds when every host is joined, lists exactly want (sorted) as
// members, all alive, exactly one of them is the Raft leader and every host
// names it as leader, and all report the same state index.
func agreement(hosts []*Host, want []string) (bool, string) {
	vs := observe(hosts)
	seen := describe(vs)
	leader := ""
	var leaders []string
	for i, v := range vs {
		if v.err != nil || !v.status.Joined {
			return false, seen
		}
		if !slices.Equal(v.memberNames(), want) {
			return false, seen
		}
		for _, m := range v.members {
			if m.Status != "alive" {
				return false, seen
			}
		}
		if v.status.Leader == "" || (i > 0 && v.status.Leader != leader) {
			return false, seen
		}
		leader = v.status.Leader
		if v.status.StateIndex != vs[0].status.StateIndex {
			return false, seen
		}
		if v.status.RaftState == "Leader" {
			leaders = append(leaders, v.host.Name)
		}
	}
	if len(leaders) != 1 || leaders[0] != leader {
		return false, fmt.Sprintf("raft leaders %v, agreed leader %q; %s", leaders, leader, seen)
	}
	return true, seen
}

// ---- helper processes inside a namespace ----

// Helper programs are this test binary re-executed with WEFT_E2E_HELPER set;
// their parameters travel in the environment.
const (
	envHelperAddr    = "WEFT_E2E_ADDR"
	envHelperCert    = "WEFT_E2E_CERT"
	envHelperKey     = "WEFT_E2E_KEY"
	envHelperTimeout = "WEFT_E2E_READ_TIMEOUT"
)

// RunHelper runs helper name in the host's namespace and returns its stdout.
func (h *Host) RunHelper(t testing.TB, name string, env map[string]string) string {
	t.Helper()
	out, err := runHelperIn(h.NS, name, env)
	if err != nil {
		t.Fatalf("%s: helper %s: %v", h.Name, name, err)
	}
	return out
}

// runHelperIn runs a helper in namespace ns, or in the current one when ns
// is "".
func runHelperIn(ns, name string, env map[string]string) (string, error) {
	self, err := os.Executable()
	if err != nil {
		return "", err
	}
	args := []string{self, "-test.run=^$"}
	if ns != "" {
		args = append([]string{"ip", "netns", "exec", ns}, args...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.Env = append(os.Environ(), envHelper+"="+name)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		return o.String(), fmt.Errorf("%w: %s%s", err, o.String(), e.String())
	}
	return strings.TrimSpace(o.String()), nil
}

// runHelper is the helper-process mode of the test binary.
func runHelper(name string) int {
	switch name {
	case "tlsdial":
		return helperTLSDial()
	case "listen":
		return helperListen()
	case "connect":
		return helperConnect()
	case "impostor":
		return helperImpostor()
	default:
		fmt.Fprintf(os.Stderr, "unknown helper %q\n", name)
		return 2
	}
}

// helperTLSDial dials $WEFT_E2E_ADDR with TLS, presenting the certificate in
// $WEFT_E2E_CERT/$WEFT_E2E_KEY and verifying nothing about the server (the
// question is whether the server accepts us). It prints one line:
//
//	handshake-ok      the server accepted the certificate
//	refused: <err>    the handshake, or the first read after it, failed
//	unreachable: <err> no TCP connection at all (not a refusal: a test that
//	                  expects "refused" must not pass because nothing listens)
//
// and exits 0; it exits 2 only when its own inputs are broken.
//
// With TLS 1.3 the client's handshake completes before the server has
// checked the client certificate; a rejection arrives as an alert on the
// first read. So after the handshake it writes one byte and reads with a
// deadline: a server that accepted us waits for the rest of a request (a
// Raft RPC type byte, or the start of an HTTP request line), so a read
// timeout means accepted; an alert or a close means refused.
func helperTLSDial() int {
	addr, certFile, keyFile := os.Getenv(envHelperAddr), os.Getenv(envHelperCert), os.Getenv(envHelperKey)
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		fmt.Printf("error: loading key pair: %v\n", err)
		return 2
	}
	readTimeout := 2 * time.Second
	if s := os.Getenv(envHelperTimeout); s != "" {
		if readTimeout, err = time.ParseDuration(s); err != nil {
			fmt.Printf("error: %s: %v\n", envHelperTimeout, err)
			return 2
		}
	}
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		fmt.Printf("unreachable: %v\n", err)
		return 0
	}
	defer raw.Close()
	conn := tls.Client(raw, &tls.Config{
		InsecureSkipVerify: true, // we test the server's verification of us, not ours of it
		// Always present our certificate, even when the server's list of
		// acceptable CAs does not include its issuer.
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &pair, nil },
	})
	raw.SetDeadline(time.Now().Add(5 * time.Second))
	if err := conn.Handshake(); err != nil {
		fmt.Printf("refused: handshake: %v\n", err)
		return 0
	}
	raw.SetDeadline(time.Now().Add(readTimeout))
	if _, err := conn.Write([]byte{0x01}); err != nil {
		fmt.Printf("refused: write: %v\n", err)
		return 0
	}
	buf := make([]byte, 1)
	_, err = conn.Read(buf)
	var ne net.Error
	switch {
	case err == nil, errors.As(err, &ne) && ne.Timeout():
		fmt.Println("handshake-ok")
	case errors.Is(err, io.EOF):
		fmt.Println("refused: read: connection closed by server")
	default:
		fmt.Printf("refused: read: %v\n", err)
	}
	return 0
}

// tlsDial runs the tlsdial helper from host from against addr.
func tlsDial(t testing.TB, from *Host, addr, certFile, keyFile string) string {
	t.Helper()
	return from.RunHelper(t, "tlsdial", map[string]string{
		envHelperAddr: addr, envHelperCert: certFile, envHelperKey: keyFile,
	})
}
