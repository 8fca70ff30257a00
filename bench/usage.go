package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/weft-mesh/weft/bench/figure"
)

// userHZ is the unit of utime and stime in /proc/<pid>/stat. Linux
// reports them in USER_HZ, which is 100 on every architecture Go runs on,
// whatever the kernel's own tick rate.
const userHZ = 100

// A usageTarget is a long-running process whose memory and idle CPU are
// measured: the weft agents, and for comparison the bare wireguard-go
// helpers, which carried the same traffic.
type usageTarget struct {
	Role string // figure.ProcServer, ...
	Node string // the host, or the weft node
	proc *proc
	bin  string // the executable the process runs in the end
}

// usageTargets are the server (a) and the client (b), then the bare
// wireguard-go helpers on a and b where they run.
func (w *weftBed) usageTargets() []usageTarget {
	ts := []usageTarget{{figure.ProcServer, w.a.node, w.a.proc, w.bin}, {figure.ProcClient, w.c.node, w.c.proc, w.bin}}
	if self, err := os.Executable(); err == nil {
		for _, h := range []*host{w.b.a, w.b.b} {
			if p := w.b.proc("wg-helper-" + h.name); p != nil {
				ts = append(ts, usageTarget{figure.ProcWireGuard(h.name), h.name, p, self})
			}
		}
	}
	return ts
}

// agentUsage is what one process holds and spends at rest.
type agentUsage struct {
	usageTarget
	PID       int
	RSS       int64 // VmRSS at the end of the window, bytes
	HWM       int64 // VmHWM: the peak RSS since the process started, bytes
	RSSBefore int64 // VmRSS before the throughput runs; 0 if not known
	CPU       time.Duration
	Window    time.Duration
}

// rssNow is each target's VmRSS, by role; a target that cannot be read
// is left out.
func rssNow(ts []usageTarget) map[string]int64 {
	m := map[string]int64{}
	for _, t := range ts {
		pid, err := ownPID(t.proc, t.bin)
		if err != nil {
			continue
		}
		if rss, _, err := memory(pid); err == nil {
			m[t.Role] = rss
		}
	}
	return m
}

// Cores is the share of one core the agent used over the window.
func (u agentUsage) Cores() float64 { return u.CPU.Seconds() / u.Window.Seconds() }

// measureUsage reads each target's RSS and its CPU time over one idle
// window of length d, the same for all. before is the RSS of each role
// before the throughput runs.
func (b *bed) measureUsage(ctx context.Context, d time.Duration, ts []usageTarget, before map[string]int64) ([]agentUsage, error) {
	us := make([]agentUsage, len(ts))
	start := make([]time.Duration, len(ts))
	for i, t := range ts {
		pid, err := ownPID(t.proc, t.bin)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", t.Role, err)
		}
		us[i] = agentUsage{usageTarget: t, PID: pid, RSSBefore: before[t.Role]}
		if start[i], err = cpuTime(pid); err != nil {
			return nil, fmt.Errorf("%s: %w", t.Role, err)
		}
	}
	t0 := time.Now()
	select {
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-time.After(d):
	}
	for i := range us {
		end, err := cpuTime(us[i].PID)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", us[i].Role, err)
		}
		us[i].Window = time.Since(t0)
		us[i].CPU = end - start[i]
		if us[i].RSS, us[i].HWM, err = memory(us[i].PID); err != nil {
			return nil, fmt.Errorf("%s: %w", us[i].Role, err)
		}
	}
	if err := b.dead(); err != nil {
		return nil, err
	}
	return us, nil
}

// ownPID finds the process running bin that p started. p runs
// `ip netns exec NS unshare ... sh -c '...; exec "$0" "$@"' weft agent ...`:
// ip netns exec and unshare (without --fork) exec the next program, and
// so does sh's exec, so the agent keeps the pid p started with. That is
// checked here rather than assumed: the pid is accepted only once its
// executable is bin, else its descendants are searched for one that is
// (an ip or unshare that forks would put it there).
func ownPID(p *proc, bin string) (int, error) {
	want, err := os.Stat(bin)
	if err != nil {
		return 0, err
	}
	isWeft := func(pid int) bool {
		fi, err := os.Stat(fmt.Sprintf("/proc/%d/exe", pid))
		return err == nil && os.SameFile(fi, want)
	}
	root := p.cmd.Process.Pid
	if p.exited() {
		return 0, fmt.Errorf("%s (pid %d) has exited", p.name, root)
	}
	if isWeft(root) {
		return root, nil
	}
	children, err := childrenByPID()
	if err != nil {
		return 0, err
	}
	queue := []int{root}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		for _, c := range children[pid] {
			if isWeft(c) {
				return c, nil
			}
			queue = append(queue, c)
		}
	}
	return 0, fmt.Errorf("no process running %s under pid %d", bin, root)
}

// childrenByPID maps every pid to its children's, from /proc/*/stat.
func childrenByPID() (map[int][]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	m := map[int][]int{}
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		f, err := statFields(pid)
		if err != nil {
			continue // gone meanwhile
		}
		if ppid, err := strconv.Atoi(f[1]); err == nil {
			m[ppid] = append(m[ppid], pid)
		}
	}
	return m, nil
}

// statFields are the fields of /proc/<pid>/stat after the command name,
// which is in parentheses and may hold spaces: [0] is field 3 (state) of
// proc(5), so field n is [n-3].
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return nil, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil, fmt.Errorf("/proc/%d/stat: no command name", pid)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return nil, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f)+2)
	}
	return f, nil
}

// cpuTime is the user and system time of the process (all its threads):
// fields 14 (utime) and 15 (stime) of /proc/<pid>/stat.
func cpuTime(pid int) (time.Duration, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	var ticks int64
	for _, s := range f[14-3 : 15-3+1] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("/proc/%d/stat: %w", pid, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}

// memory is VmRSS and VmHWM from /proc/<pid>/status, in bytes.
func memory(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		// "   12345 kB"
		f := strings.Fields(v)
		if len(f) != 2 || f[1] != "kB" {
			return 0, 0, fmt.Errorf("/proc/%d/status: %s: %q", pid, k, v)
		}
		n, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/%d/status: %s: %w", pid, k, err)
		}
		if k == "VmRSS" {
			rss = n << 10
		} else {
			hwm = n << 10
		}
	}
	if rss == 0 {
		return 0, 0, errors.New("no VmRSS in /proc/" + strconv.Itoa(pid) + "/status")
	}
	return rss, hwm, nil
}
