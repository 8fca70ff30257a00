package e2e

// Real packets over the overlay: the listen, connect and impostor helper
// modes, listeners in the background, and running probes. A probe that
// must fail is checked twice (matrix_test.go): the sender sees no answer,
// and the listener on the target records nothing from it.

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.zx2c4.com/wireguard/conn"
	"golang.zx2c4.com/wireguard/device"
	"golang.zx2c4.com/wireguard/tun"
)

// More parameters of the helper modes (see helpers_test.go).
const (
	envHelperDialTimeout = "WEFT_E2E_DIAL_TIMEOUT" // connect, impostor: per dial, a Go duration; default 1s
	envHelperICMP        = "WEFT_E2E_ICMP"         // listen: "1" also records ICMP echo requests
	envHelperWGIface     = "WEFT_E2E_WG_IFACE"     // impostor: interface name
	envHelperWGConfig    = "WEFT_E2E_WG_CONFIG"    // impostor: wireguard-go UAPI "set" text
	envHelperWGAddr      = "WEFT_E2E_WG_ADDR"      // impostor: address/prefix of the interface
)

const (
	probeTimeout = time.Second // per TCP dial and per ping
	probeWorkers = 8           // probe processes at once (2-core machine)
	// probeRetryFor bounds the retries of a probe that must succeed. A new
	// tunnel's first handshake can lose a race between two initiations
	// (both ends probing each other at once) and is then retried after
	// WireGuard's REKEY_TIMEOUT, 5 s.
	probeRetryFor  = 12 * time.Second
	arrivalTimeout = 5 * time.Second
	settleTimeout  = 30 * time.Second
)

// listenPorts are the TCP ports every listener accepts on; probeSpecs are
// the probes of a matrix, one per port and icmp. Every port a rule of the
// scenarios names is among them, so "some probe is allowed" is "the
// policy allows something".
var (
	listenPorts = []int{22, 5432, 8000, 8080, 8100}
	probeSpecs  = []string{"tcp/22", "tcp/5432", "tcp/8000", "tcp/8080", "tcp/8100", "icmp"}
)

// ---- helper modes ----

// helperListen accepts TCP on every host:port of $WEFT_E2E_ADDR (space
// separated) and, with $WEFT_E2E_ICMP=1, watches the ICMP echo requests
// delivered in this namespace. It prints "ready" once everything is bound,
// then one line per arrival,
//
//	tcp <local addr:port> <remote addr:port>
//	icmp <destination> <source>
//
// and runs until killed. A raw socket gets a packet only after netfilter's
// input hooks accepted it, so an echo request the firewall dropped is never
// printed; nor is a TCP connection whose SYN was dropped.
func helperListen() int {
	var mu sync.Mutex
	emit := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Printf(format+"\n", args...)
	}
	for _, a := range strings.Fields(os.Getenv(envHelperAddr)) {
		ln, err := net.Listen("tcp4", a)
		if err != nil {
			emit("error: %v", err)
			return 2
		}
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					emit("error: accept: %v", err)
					return
				}
				emit("tcp %s %s", c.LocalAddr(), c.RemoteAddr())
				c.Close()
			}
		}()
	}
	if os.Getenv(envHelperICMP) == "1" {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_RAW, syscall.IPPROTO_ICMP)
		if err != nil {
			emit("error: raw icmp socket: %v", err)
			return 2
		}
		go func() {
			buf := make([]byte, 1<<16)
			for {
				n, _, err := syscall.Recvfrom(fd, buf, 0)
				if errors.Is(err, syscall.EINTR) {
					continue
				}
				if err != nil {
					emit("error: recvfrom: %v", err)
					return
				}
				ihl := int(buf[0]&0x0f) * 4
				if n < 20 || n <= ihl || buf[ihl] != 8 { // echo request only
					continue
				}
				src, dst := netip.AddrFrom4([4]byte(buf[12:16])), netip.AddrFrom4([4]byte(buf[16:20]))
				emit("icmp %s %s", dst, src)
			}
		}()
	}
	emit("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	return 0
}

// helperConnect dials every host:port of $WEFT_E2E_ADDR at once, each with
// $WEFT_E2E_DIAL_TIMEOUT, and prints "<addr> ok" or "<addr> fail: <err>" per
// address, in the order given. "ok" means a listener accepted the
// connection: a listen helper closes what it accepts, so the dialer waits
// (within the same timeout) for that close. A SYN-ACK alone is not enough:
// it comes from the kernel, before the listener has seen anything.
func helperConnect() int {
	timeout, err := dialTimeout()
	if err != nil {
		fmt.Printf("error: %v\n", err)
		return 2
	}
	for _, line := range dialAll(strings.Fields(os.Getenv(envHelperAddr)), timeout) {
		fmt.Println(line)
	}
	return 0
}

func dialTimeout() (time.Duration, error) {
	s := os.Getenv(envHelperDialTimeout)
	if s == "" {
		return probeTimeout, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", envHelperDialTimeout, err)
	}
	return d, nil
}

func dialAll(addrs []string, timeout time.Duration) []string {
	out := make([]string, len(addrs))
	var wg sync.WaitGroup
	for i, a := range addrs {
		wg.Go(func() {
			deadline := time.Now().Add(timeout)
			c, err := net.DialTimeout("tcp4", a, timeout)
			if err != nil {
				out[i] = a + " fail: " + err.Error()
				return
			}
			defer c.Close()
			c.SetReadDeadline(deadline)
			if _, err := c.Read(make([]byte, 1)); !errors.Is(err, io.EOF) {
				out[i] = fmt.Sprintf("%s fail: connected, but no close from a listener: %v", a, err)
				return
			}
			out[i] = a + " ok"
		})
	}
	wg.Wait()
	return out
}

// helperImpostor plays a WireGuard peer that is not an agent: it creates
// the interface $WEFT_E2E_WG_IFACE with an embedded wireguard-go device,
// configures it from $WEFT_E2E_WG_CONFIG (private key, listen port, peers),
// gives it $WEFT_E2E_WG_ADDR, routes each destination of $WEFT_E2E_ADDR
// through it and dials them as connect does. Last it prints "handshake yes"
// or "handshake no": whether any peer completed a handshake. The device
// goes away when the helper exits.
func helperImpostor() int {
	name, cfg := os.Getenv(envHelperWGIface), os.Getenv(envHelperWGConfig)
	pfx, err := netip.ParsePrefix(os.Getenv(envHelperWGAddr))
	if err != nil {
		fmt.Printf("error: %s: %v\n", envHelperWGAddr, err)
		return 2
	}
	timeout, err := dialTimeout()
	if err != nil {
		fmt.Printf("error: %v\n", err)
		return 2
	}
	tdev, err := tun.CreateTUN(name, device.DefaultMTU)
	if err != nil {
		fmt.Printf("error: tun %s: %v\n", name, err)
		return 2
	}
	dev := device.NewDevice(tdev, conn.NewDefaultBind(), device.NewLogger(device.LogLevelSilent, ""))
	defer dev.Close()
	if err := dev.IpcSet(cfg); err != nil {
		fmt.Printf("error: configure %s: %v\n", name, err)
		return 2
	}
	if err := dev.Up(); err != nil {
		fmt.Printf("error: up %s: %v\n", name, err)
		return 2
	}
	addrs := strings.Fields(os.Getenv(envHelperAddr))
	cmds := [][]string{{"addr", "add", pfx.String(), "dev", name}, {"link", "set", name, "up"}}
	for _, a := range addrs {
		ap, err := netip.ParseAddrPort(a)
		if err != nil {
			fmt.Printf("error: %v\n", err)
			return 2
		}
		if r := netip.PrefixFrom(ap.Addr(), 32).String(); !slices.ContainsFunc(cmds, func(c []string) bool { return slices.Contains(c, r) }) {
			cmds = append(cmds, []string{"route", "add", r, "dev", name})
		}
	}
	for _, c := range cmds {
		if out, err := exec.Command("ip", c...).CombinedOutput(); err != nil {
			fmt.Printf("error: ip %s: %v: %s\n", strings.Join(c, " "), err, out)
			return 2
		}
	}
	for _, line := range dialAll(addrs, timeout) {
		fmt.Println(line)
	}
	state, err := dev.IpcGet()
	if err != nil {
		fmt.Printf("error: %v\n", err)
		return 2
	}
	shook := "no"
	for _, line := range strings.Split(state, "\n") {
		if v, ok := strings.CutPrefix(line, "last_handshake_time_sec="); ok && v != "0" {
			shook = "yes"
		}
	}
	fmt.Println("handshake " + shook)
	return 0
}

// ---- background helpers and listeners ----

// startHelper runs helper name in the host's namespace in the background,
// its stdout and stderr appended to the file out. It is killed when the test
// ends (before the bed is torn down: cleanups run last-registered first).
func (h *Host) startHelper(t testing.TB, name string, env map[string]string, out string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close() // the child has its own descriptor
	cmd := exec.Command("ip", "netns", "exec", h.NS, self, "-test.run=^$")
	cmd.Env = append(os.Environ(), envHelper+"="+name)
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: helper %s: %v", h.Name, name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		select {
		case <-done:
		case <-time.After(killTimeout):
			t.Logf("%s: helper %s (pid %d) did not exit after SIGKILL", h.Name, name, cmd.Process.Pid)
		}
	})
}

// A listener is a listen helper on one host: TCP on listenPorts of every
// address, and ICMP echo requests.
type listener struct {
	host *Host
	path string
}

// An arrival is one connection or echo request a listener saw.
type arrival struct {
	proto string         // "tcp" or "icmp"
	dst   netip.AddrPort // port 0 for icmp
	src   netip.Addr
}

func (a arrival) String() string { return fmt.Sprintf("%s %s from %s", a.proto, a.dst, a.src) }

// startListeners starts a listener on each host and waits until all are
// bound.
func startListeners(t *testing.T, hosts []*Host) map[string]*listener {
	t.Helper()
	var addrs []string
	for _, p := range listenPorts {
		addrs = append(addrs, fmt.Sprintf("0.0.0.0:%d", p))
	}
	ls := map[string]*listener{}
	for _, h := range hosts {
		l := &listener{host: h, path: filepath.Join(h.Dir, "listen.log")}
		h.startHelper(t, "listen", map[string]string{envHelperAddr: strings.Join(addrs, " "), envHelperICMP: "1"}, l.path)
		ls[h.Name] = l
	}
	Eventually(t, upTimeout, func() (bool, string) {
		for _, l := range ls {
			b, _ := os.ReadFile(l.path)
			if out := string(b); !strings.Contains(out, "ready\n") || strings.Contains(out, "error:") {
				return false, fmt.Sprintf("%s: listener says %q", l.host.Name, out)
			}
		}
		return true, ""
	})
	return ls
}

// arrivals returns what the listener saw, in order.
func (l *listener) arrivals(t testing.TB) []arrival {
	t.Helper()
	b, err := os.ReadFile(l.path)
	if err != nil {
		t.Fatal(err)
	}
	var out []arrival
	sc := bufio.NewScanner(strings.NewReader(string(b)))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) == 3 && f[0] == "tcp":
			dst, err1 := netip.ParseAddrPort(f[1])
			src, err2 := netip.ParseAddrPort(f[2])
			if err1 != nil || err2 != nil {
				t.Fatalf("%s: listener line %q", l.host.Name, sc.Text())
			}
			out = append(out, arrival{"tcp", dst, src.Addr()})
		case len(f) == 3 && f[0] == "icmp":
			dst, err1 := netip.ParseAddr(f[1])
			src, err2 := netip.ParseAddr(f[2])
			if err1 != nil || err2 != nil {
				t.Fatalf("%s: listener line %q", l.host.Name, sc.Text())
			}
			out = append(out, arrival{"icmp", netip.AddrPortFrom(dst, 0), src})
		case len(f) == 1 && f[0] == "ready":
		default:
			t.Fatalf("%s: listener: %q", l.host.Name, sc.Text())
		}
	}
	return out
}

// since returns the arrivals after the first n.
func (l *listener) since(t testing.TB, n int) []arrival {
	t.Helper()
	return l.arrivals(t)[n:]
}

// ---- probes ----

// A probe is one attempt to open a flow from a host to one address of
// another: "tcp/PORT" or "icmp".
type probe struct {
	from, to *Host
	seg      string // the segment of addr, on the target
	addr     netip.Addr
	spec     string
	want     bool
}

func (p probe) String() string {
	return fmt.Sprintf("%s -> %s %s at %s (its address in %s)", p.from.Name, p.to.Name, p.spec, p.addr, p.seg)
}

func (p probe) port() int {
	n, _ := strconv.Atoi(strings.TrimPrefix(p.spec, "tcp/"))
	return n
}

// runProbes runs every probe once, at most probeWorkers processes at a
// time: one connect helper per source for its TCP probes, one ping per ICMP
// probe. It returns which succeeded.
func runProbes(t testing.TB, probes []probe, timeout time.Duration) []bool {
	t.Helper()
	ok := make([]bool, len(probes))
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	sem := make(chan struct{}, probeWorkers)
	job := func(f func() error) {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			if err := f(); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
	}
	tcp := map[*Host][]int{} // source → indexes of its TCP probes
	for i, p := range probes {
		if p.spec == "icmp" {
			job(func() error {
				_, err := p.from.Exec("ping", "-n", "-q", "-c", "1", "-W", strconv.FormatFloat(timeout.Seconds(), 'f', 3, 64), p.addr.String())
				ok[i] = err == nil
				return nil
			})
			continue
		}
		tcp[p.from] = append(tcp[p.from], i)
	}
	for from, idx := range tcp {
		job(func() error {
			var addrs []string
			for _, i := range idx {
				if a := netip.AddrPortFrom(probes[i].addr, uint16(probes[i].port())).String(); !slices.Contains(addrs, a) {
					addrs = append(addrs, a)
				}
			}
			out, err := runHelperIn(from.NS, "connect", map[string]string{
				envHelperAddr: strings.Join(addrs, " "), envHelperDialTimeout: timeout.String(),
			})
			if err != nil {
				return fmt.Errorf("%s: connect helper: %w", from.Name, err)
			}
			result := map[string]bool{}
			for _, line := range strings.Split(out, "\n") {
				a, verdict, _ := strings.Cut(line, " ")
				result[a] = verdict == "ok"
			}
			for _, i := range idx {
				ok[i] = result[netip.AddrPortFrom(probes[i].addr, uint16(probes[i].port())).String()]
			}
			return nil
		})
	}
	wg.Wait()
	if len(errs) > 0 {
		t.Fatal(errors.Join(errs...))
	}
	return ok
}
