package main

import (
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"time"
)

// report is everything measured, printed as markdown tables (the README
// quotes them).
type report struct {
	started     time.Time
	opts        options
	env         string
	weftVersion string
	paths       []*path
	enforce     []enforceTiming
	membership  membershipResult
	usage       []agentUsage
	weftNotes   []string
	compile     compileResult
}

// describeEnv names what the figures depend on.
func describeEnv(compileOnly bool) string {
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	parts := []string{
		"linux " + strings.TrimSpace(string(kernel)),
		fmt.Sprintf("%d CPUs", runtime.NumCPU()),
		runtime.Version(),
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == "golang.zx2c4.com/wireguard" {
				parts = append(parts, "wireguard-go "+d.Version)
			}
		}
	}
	if !compileOnly {
		iperf, _, _ := strings.Cut(version("iperf3", "--version"), " (")
		parts = append(parts, strings.Replace(iperf, "iperf ", "iperf3 ", 1), "nebula "+strings.TrimPrefix(version("nebula", "-version"), "Version: "))
	}
	return strings.Join(parts, ", ")
}

func (r *report) String() string {
	var s strings.Builder
	fmt.Fprintf(&s, "\n## weft dataplane benchmark, %s\n\n", r.started.UTC().Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&s, "%s", r.env)
	if r.weftVersion != "" {
		fmt.Fprintf(&s, ", %s", r.weftVersion)
	}
	s.WriteString(".\n")

	if len(r.paths) > 0 {
		fmt.Fprintf(&s, "\nTCP throughput a→b (iperf3, %v per run, %d rounds; each round runs every path once, starting one path later than the round before; Gbit/s at the receiver, median of the rounds; ratios are the median of the per-round ratios):\n\n",
			r.opts.duration, r.opts.runs)
		r.writeThroughput(&s)
	}

	if len(r.enforce) > 0 {
		fmt.Fprintf(&s, "\nPolicy apply → enforced on both hosts (from `weft policy apply` returning; each condition polled every %v):\n\n", enforcePoll)
		s.WriteString("| policy version | enforced after | conditions |\n|---|---:|---|\n")
		for _, e := range r.enforce {
			var parts []string
			for _, p := range e.Parts {
				parts = append(parts, fmt.Sprintf("%s: %s", p.Name, fmtDur(p.Took)))
			}
			fmt.Fprintf(&s, "| %s | %s | %s |\n", e.What, fmtDur(e.Total), strings.Join(parts, "; "))
		}
	}

	if m := r.membership; len(m.Joins) > 0 {
		fmt.Fprintf(&s, "\nHost c joins and leaves the cluster, %d times, each time a new client node (c1, c2, ...) tagged bench (policy v2 makes it a member of the segment; each condition polled every %v):\n\n", len(m.Joins), enforcePoll)
		s.WriteString("| step | median | min–max | each time | conditions (medians) |\n|---|---:|---:|---|---|\n")
		row := func(what string, ts []enforceTiming) {
			if len(ts) == 0 {
				return
			}
			totals := totalsOf(ts)
			med, lo, hi := durStats(totals)
			var each, parts []string
			for _, d := range totals {
				each = append(each, fmtDur(d))
			}
			for _, p := range medianParts(ts) {
				parts = append(parts, fmt.Sprintf("%s: %s", p.Name, fmtDur(p.Took)))
			}
			fmt.Fprintf(&s, "| %s | %s | %s–%s | %s | %s |\n", what, fmtDur(med), fmtDur(lo), fmtDur(hi), strings.Join(each, ", "), strings.Join(parts, "; "))
		}
		row("join → reachable: from starting the agent until a ping from a to its segment address is answered", m.Joins)
		row("leave → purged: from `weft leave` returning until a and b list no peer with its key and its host has no wf- interface", m.Leaves)
	}

	if len(r.usage) > 0 {
		fmt.Fprintf(&s, "\nThe agents at rest, after the measurements above, and the bare wireguard-go helpers, which carried the same traffic (CPU over one %v window, the same for all):\n\n", r.usage[0].Window.Round(100*time.Millisecond))
		s.WriteString("| process | VmRSS before the throughput runs | VmRSS | peak (VmHWM) | CPU, share of one core |\n|---|---:|---:|---:|---:|\n")
		for _, u := range r.usage {
			before := "–"
			if u.RSSBefore > 0 {
				before = fmt.Sprintf("%.1f MiB", mib(u.RSSBefore))
			}
			fmt.Fprintf(&s, "| %s, pid %d | %s | %.1f MiB | %.1f MiB | %.2f%% |\n", u.Role, u.PID, before, mib(u.RSS), mib(u.HWM), 100*u.Cores())
		}
	}

	c := r.compile
	fmt.Fprintf(&s, "\nPolicy compiler, a generated fleet of 10,000 hosts, %d segments, 50 rules (median of %d runs):\n\n", fleetSegments, compileRuns)
	s.WriteString("| step | time |\n|---|---:|\n")
	fmt.Fprintf(&s, "| Parse the document | %s |\n", fmtDur(c.Parse))
	fmt.Fprintf(&s, "| Allocate the fleet's addresses, from none | %s |\n", fmtDur(c.AllocateFresh))
	fmt.Fprintf(&s, "| Allocate again, nothing changed | %s |\n", fmtDur(c.AllocateSteady))
	fmt.Fprintf(&s, "| Compile one host's plan (%s: %d interfaces, %d peers, %d firewall rules) | %s |\n",
		compileSelf, c.Interfaces, c.Peers, c.Rules, fmtDur(c.Compile))

	notes := slices.Clone(r.weftNotes)
	for _, p := range r.paths {
		if p.Note != "" {
			notes = append(notes, p.Name+": "+p.Note)
		}
	}
	if len(notes) > 0 {
		s.WriteString("\nNotes:\n")
		for _, n := range notes {
			fmt.Fprintf(&s, "- %s\n", n)
		}
	}
	return s.String()
}

// baselines are the paths the ratios compare with: bare wireguard-go and
// Nebula; nil where missing.
func (r *report) baselines() (wg, neb *path) {
	for _, p := range r.paths {
		switch p.Name {
		case pathWG:
			wg = p
		case pathNebula:
			neb = p
		}
	}
	return wg, neb
}

func (r *report) writeThroughput(s *strings.Builder) {
	wg, neb := r.baselines()
	s.WriteString("| path | MTU | TUN offload | streams | Gbit/s | min–max | vs bare wireguard-go | vs Nebula |\n|---|---:|---|---:|---:|---:|---:|---:|\n")
	for _, streams := range r.opts.streams {
		for _, p := range r.paths {
			m, lo, hi, ok := stats(p.Results[streams])
			if !ok {
				continue
			}
			fmt.Fprintf(s, "| %s | %d | %s | %d | %.2f | %.2f–%.2f | %s | %s |\n",
				p.Name, p.MTU, p.Offload, streams, m/1e9, lo/1e9, hi/1e9, ratio(p, wg, streams), ratio(p, neb, streams))
		}
	}
}

// stats returns the median, min and max.
func stats(xs []float64) (med, lo, hi float64, ok bool) {
	if len(xs) == 0 {
		return 0, 0, 0, false
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	med = s[len(s)/2]
	if len(s)%2 == 0 {
		med = (s[len(s)/2-1] + s[len(s)/2]) / 2
	}
	return med, s[0], s[len(s)-1], true
}

// ratio is ratioOf for the table.
func ratio(p, base *path, streams int) string {
	m, ok := ratioOf(p, base, streams)
	if !ok {
		return "–"
	}
	return fmt.Sprintf("%.2f×", m)
}

// ratioOf is the median over runs of p's figure over base's figure of the
// same round: the rounds are interleaved, so each pair was measured
// seconds apart, and a slow minute of the machine weighs on both.
func ratioOf(p, base *path, streams int) (float64, bool) {
	if base == nil {
		return 0, false
	}
	xs, bs := p.Results[streams], base.Results[streams]
	var rs []float64
	for i := range min(len(xs), len(bs)) {
		if bs[i] > 0 {
			rs = append(rs, xs[i]/bs[i])
		}
	}
	m, _, _, ok := stats(rs)
	return m, ok
}

// totalsOf is the Total of each timing.
func totalsOf(ts []enforceTiming) []time.Duration {
	var ds []time.Duration
	for _, t := range ts {
		ds = append(ds, t.Total)
	}
	return ds
}

// durStats is the median (the lower middle one of an even count), min
// and max.
func durStats(ds []time.Duration) (med, lo, hi time.Duration) {
	if len(ds) == 0 {
		return 0, 0, 0
	}
	return medianDur(ds), slices.Min(ds), slices.Max(ds)
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func fmtDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return fmt.Sprintf("%.2f s", d.Seconds())
	case d >= time.Millisecond:
		return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
	}
}
