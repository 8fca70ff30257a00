package main

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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Every namespace and temp dir of a run is named nsPrefix<pid>-..., so a
// later run can tell a crashed run's leftovers from a live run's.
const nsPrefix = "wfb-"

// The underlay: 10.214.0.0/24 on a veth pair. The overlays use
// 10.214.1.0/24 (bare wireguard-go), 10.214.2.0/24 (weft's segment) and
// 10.214.3.0/24 (Nebula). The third host, c, which joins and leaves after
// the throughput runs, hangs off a on a second veth pair in 10.214.5.0/24,
// and a routes between it and b. None of it is routed outside the
// namespaces.
var (
	underlayA   = netip.MustParseAddr("10.214.0.1")
	underlayB   = netip.MustParseAddr("10.214.0.2")
	underlayMTU = 1500

	underlayAC = netip.MustParseAddr("10.214.5.1") // a's end towards c
	underlayC  = netip.MustParseAddr("10.214.5.2")
)

const (
	cmdTimeout  = 15 * time.Second // one short command (ip, weft CLI, ping)
	stopTimeout = 5 * time.Second  // SIGTERM to exit, then again after SIGKILL
	pollEvery   = 100 * time.Millisecond
)

// A host is one network namespace of the bed.
type host struct {
	name  string // "a" or "b"
	ns    string
	ip    netip.Addr
	iface string // its end of the veth
}

// A bed is two hosts joined by a veth pair, the processes started in them
// and a temp dir for their files.
type bed struct {
	dir  string
	a, b *host

	mu         sync.Mutex
	procs      []*proc
	namespaces []string
	cleaned    bool
}

// A proc is a long-running process in a namespace (an agent, a helper, a
// server), with its output in a log file.
type proc struct {
	name string
	log  string
	cmd  *exec.Cmd
	done chan struct{} // closed once waited for
	err  error
	// mayExit is set before the process is asked to end by itself (an
	// agent told to `weft leave`): its exit then does not make the bed
	// dead.
	mayExit atomic.Bool
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// newBed makes the namespaces and the veth pair. On error the bed made so
// far is returned too, for the caller to clean up.
func newBed(ctx context.Context) (*bed, error) {
	pid := os.Getpid()
	dir, err := os.MkdirTemp("", fmt.Sprintf("%s%d-", nsPrefix, pid))
	if err != nil {
		return nil, err
	}
	b := &bed{dir: dir}
	b.a = &host{name: "a", ns: fmt.Sprintf("%s%d-a", nsPrefix, pid), ip: underlayA, iface: fmt.Sprintf("wfb%xa", pid)}
	b.b = &host{name: "b", ns: fmt.Sprintf("%s%d-b", nsPrefix, pid), ip: underlayB, iface: fmt.Sprintf("wfb%xb", pid)}
	for _, h := range []*host{b.a, b.b} {
		// Recorded first, so that a half-made namespace is still deleted.
		b.mu.Lock()
		b.namespaces = append(b.namespaces, h.ns)
		b.mu.Unlock()
		if err := ipCmd(ctx, "netns", "add", h.ns); err != nil {
			return b, err
		}
	}
	// Both ends are made inside the namespaces, never in the root one.
	if err := ipCmd(ctx, "link", "add", b.a.iface, "netns", b.a.ns, "type", "veth", "peer", "name", b.b.iface, "netns", b.b.ns); err != nil {
		return b, err
	}
	for _, h := range []*host{b.a, b.b} {
		for _, args := range [][]string{
			{"-n", h.ns, "link", "set", "lo", "up"},
			{"-n", h.ns, "addr", "add", netip.PrefixFrom(h.ip, 24).String(), "dev", h.iface},
			{"-n", h.ns, "link", "set", h.iface, "up"},
		} {
			if err := ipCmd(ctx, args...); err != nil {
				return b, err
			}
		}
	}
	return b, nil
}

// ipCmd runs ip(8) with a time limit.
func ipCmd(ctx context.Context, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}

// exec runs a short command in the host's namespace and returns its
// stdout; the error carries stderr.
func (h *host) exec(ctx context.Context, env []string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", h.ns, name}, args...)...)
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		if ctx.Err() == context.DeadlineExceeded {
			err = fmt.Errorf("timed out after %v", cmdTimeout)
		}
		return stdout.String(), fmt.Errorf("%s: %s %s: %w: %s", h.name, name, strings.Join(args, " "), err, bytes.TrimSpace(stderr.Bytes()))
	}
	return stdout.String(), nil
}

// ping sends one echo request to dst from the host and says whether the
// reply came within timeout.
func (h *host) ping(ctx context.Context, dst netip.Addr, timeout time.Duration) bool {
	_, err := h.exec(ctx, nil, "ping", "-n", "-q", "-c", "1", "-W", strconv.FormatFloat(timeout.Seconds(), 'f', 1, 64), dst.String())
	return err == nil
}

// linkInfo is what the table shows of a link: its MTU, and for a TUN
// whether it was opened with IFF_VNET_HDR, which is how a userspace
// tunnel gets TSO/GRO-sized packets instead of one packet per read.
type linkInfo struct {
	MTU     int
	Kind    string // "veth", "tun", ...
	VnetHdr bool
}

func (h *host) link(ctx context.Context, iface string) (linkInfo, error) {
	out, err := h.exec(ctx, nil, "ip", "-d", "-j", "link", "show", "dev", iface)
	if err != nil {
		return linkInfo{}, err
	}
	var links []struct {
		MTU      int `json:"mtu"`
		LinkInfo struct {
			Kind string `json:"info_kind"`
			Data struct {
				VnetHdr bool `json:"vnet_hdr"`
			} `json:"info_data"`
		} `json:"linkinfo"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		return linkInfo{}, fmt.Errorf("%s: ip -d -j link show dev %s: unexpected output %q", h.name, iface, out)
	}
	l := links[0]
	return linkInfo{MTU: l.MTU, Kind: l.LinkInfo.Kind, VnetHdr: l.LinkInfo.Data.VnetHdr}, nil
}

// start runs argv (already wrapped in `ip netns exec ...`) in the
// background with its stdout and stderr in <dir>/<name>.log. The process
// gets its own process group, so a Ctrl-C on the terminal reaches only
// this program, which then stops it in order; and it is killed if this
// program dies without cleaning up.
func (b *bed) start(name string, env []string, argv ...string) (*proc, error) {
	logPath := filepath.Join(b.dir, name+".log")
	f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = f, f
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.cleaned {
		f.Close()
		return nil, errors.New("bed already cleaned up")
	}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, log: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	b.procs = append(b.procs, p)
	return p, nil
}

// proc returns the process of the bed started under name, nil if none.
func (b *bed) proc(name string) *proc {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.procs {
		if p.name == name {
			return p
		}
	}
	return nil
}

// inNS wraps argv to run in the host's namespace.
func (h *host) inNS(argv ...string) []string {
	return append([]string{"ip", "netns", "exec", h.ns}, argv...)
}

// privateRunWireGuard is the shell step that gives a process a mount
// namespace of its own with a private tmpfs on /run/wireguard: the UAPI
// sockets of wireguard-go are named by interface in that one directory,
// so two devices of one name in two network namespaces would collide.
const privateRunWireGuard = `mkdir -p /run/wireguard && mount -t tmpfs tmpfs /run/wireguard && exec "$0" "$@"`

// inNSPrivateMount wraps argv to run in the host's namespace and a private
// mount namespace. ip netns exec, unshare (without --fork) and sh's exec
// all keep the pid, so signals reach argv's process directly.
func (h *host) inNSPrivateMount(argv ...string) []string {
	return h.inNS(append([]string{"unshare", "--mount", "--propagation", "private", "sh", "-c", privateRunWireGuard}, argv...)...)
}

// stop ends a process: SIGTERM, then SIGKILL. Bounded in time.
func (p *proc) stop() error {
	if p.exited() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(stopTimeout):
	}
	_ = p.cmd.Process.Kill()
	select {
	case <-p.done:
		return nil
	case <-time.After(stopTimeout):
		return fmt.Errorf("%s (pid %d) still running after SIGKILL", p.name, p.cmd.Process.Pid)
	}
}

// logTail is the end of a process's log, for error messages.
func (p *proc) logTail(lines int) string {
	data, _ := os.ReadFile(p.log)
	ls := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// dead returns an error for the first process of the bed that has exited,
// with the end of its log; a bed whose daemon died cannot be measured.
func (b *bed) dead() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, p := range b.procs {
		if p.exited() && !p.mayExit.Load() {
			return fmt.Errorf("%s exited (%v); its log ends with:\n%s", p.name, p.err, p.logTail(20))
		}
	}
	return nil
}

// waitFor polls cond every 100 ms until it holds, timeout passes, ctx
// ends or a process of the bed dies. The error says what cond saw last.
func (b *bed) waitFor(ctx context.Context, timeout time.Duration, what string, cond func() (bool, string)) error {
	return b.poll(ctx, pollEvery, timeout, what, cond)
}

// poll is waitFor with another interval.
func (b *bed) poll(ctx context.Context, every, timeout time.Duration, what string, cond func() (bool, string)) error {
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		ok, seen := cond()
		if ok {
			return nil
		}
		if seen != "" {
			last = seen
		}
		if err := b.dead(); err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not within %v; last seen: %s", what, timeout, last)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(every):
		}
	}
}

// cleanup stops every process (in reverse order of start), kills whatever
// else runs in the namespaces, deletes them and removes the temp dir
// unless keep. It runs once; every step is bounded in time.
func (b *bed) cleanup(keep bool) error {
	b.mu.Lock()
	if b.cleaned {
		b.mu.Unlock()
		return nil
	}
	b.cleaned = true
	procs, nss := b.procs, b.namespaces
	b.mu.Unlock()

	var errs []error
	for i := len(procs) - 1; i >= 0; i-- {
		if err := procs[i].stop(); err != nil {
			errs = append(errs, err)
		}
	}
	for i := len(nss) - 1; i >= 0; i-- {
		// Anything left in the namespace (a CLI call cut short) would keep
		// it alive after the delete; all of it was started by this run.
		killNetnsPids(nss[i])
		ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
		out, err := exec.CommandContext(ctx, "ip", "netns", "del", nss[i]).CombinedOutput()
		cancel()
		if err != nil && !bytes.Contains(out, []byte("No such file")) {
			errs = append(errs, fmt.Errorf("ip netns del %s: %w: %s", nss[i], err, bytes.TrimSpace(out)))
		}
	}
	if !keep {
		if err := os.RemoveAll(b.dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// killNetnsPids SIGKILLs every process in namespace ns.
func killNetnsPids(ns string) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "pids", ns).Output()
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// sweepStale removes the namespaces and temp dirs of earlier runs that
// died before cleaning up: those named after a pid that no longer exists.
// A live concurrent run is left alone.
func sweepStale() {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "ip", "netns", "list").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			fields := strings.Fields(line)
			if len(fields) == 0 {
				continue
			}
			if ns := fields[0]; staleName(ns) {
				killNetnsPids(ns)
				_ = exec.CommandContext(ctx, "ip", "netns", "del", ns).Run()
			}
		}
	}
	dirs, _ := filepath.Glob(filepath.Join(os.TempDir(), nsPrefix+"*"))
	for _, d := range dirs {
		if staleName(filepath.Base(d)) {
			_ = os.RemoveAll(d)
		}
	}
}

// staleName says whether name is nsPrefix<pid>-... for a pid that is gone.
func staleName(name string) bool {
	rest, ok := strings.CutPrefix(name, nsPrefix)
	if !ok {
		return false
	}
	digits, _, ok := strings.Cut(rest, "-")
	if !ok {
		return false
	}
	pid, err := strconv.Atoi(digits)
	if err != nil || pid <= 0 || pid == os.Getpid() {
		return false
	}
	_, err = os.Stat(fmt.Sprintf("/proc/%d", pid))
	return errors.Is(err, os.ErrNotExist)
}
