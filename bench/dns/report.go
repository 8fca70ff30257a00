package main

import (
	"fmt"
	"os"
	"runtime"
	"slices"
	"strings"
	"time"
)

// serverResult is everything measured of one server.
type serverResult struct {
	name    string
	version string
	perf    []*perfResult // one per dnsperf run
	seq     []*latencies  // one per run
}

// env describes the machine and the software, for the report.
type env struct {
	date     time.Time
	cpus     int
	cpuModel string
	kernel   string
	loadAvg  string // at the start: the figures mean little on a busy machine
	dnsperf  string
}

func environment() *env {
	e := &env{date: time.Now().UTC(), cpus: runtime.NumCPU()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				e.cpuModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		e.kernel = strings.TrimSpace(string(b))
	}
	e.loadAvg = loadAvg()
	return e
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

// summary is what the table shows of one server: medians over the runs,
// and percentiles over all sequential samples of all runs.
type summary struct {
	qps, qpsMin, qpsMax float64
	avgLatency          time.Duration
	cpuPerQuery         time.Duration
	lost                int
	respBytes           int
	rcodes              string
	p50, p99            time.Duration
	seqN, seqErrors     int
	serverCores         float64 // CPU the server used per second of a run
	dnsperfCores        float64 // and dnsperf
}

func summarize(r *serverResult, runLength time.Duration) summary {
	var s summary
	var qps, serverCores, dnsperfCores []float64
	var lat, cpu []time.Duration
	var resp []int
	for _, p := range r.perf {
		qps = append(qps, p.qps)
		lat = append(lat, p.avgLatency)
		if p.completed > 0 {
			cpu = append(cpu, p.serverCPU/time.Duration(p.completed))
		}
		resp = append(resp, p.respBytes)
		serverCores = append(serverCores, p.serverCPU.Seconds()/runLength.Seconds())
		dnsperfCores = append(dnsperfCores, p.dnsperfCPU.Seconds()/runLength.Seconds())
		s.lost += p.lost
		s.rcodes = p.rcodes
	}
	s.qps, s.qpsMin, s.qpsMax = median(qps), slices.Min(qps), slices.Max(qps)
	s.avgLatency = median(lat)
	if len(cpu) > 0 {
		s.cpuPerQuery = median(cpu)
	}
	s.respBytes = median(resp)
	s.serverCores, s.dnsperfCores = median(serverCores), median(dnsperfCores)
	var all []int64
	for _, l := range r.seq {
		all = append(all, l.Nanos...)
		s.seqErrors += l.Errors
	}
	slices.Sort(all)
	s.seqN = len(all)
	s.p50, s.p99 = percentile(all, 0.50), percentile(all, 0.99)
	return s
}

func median[T int | float64 | time.Duration](xs []T) T {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// percentile of sorted samples, nearest rank.
func percentile(sorted []int64, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p*float64(len(sorted))+0.999999) - 1
	i = min(max(i, 0), len(sorted)-1)
	return time.Duration(sorted[i])
}

// report renders the table (Markdown), the ratios and how it was measured.
func report(e *env, o options, results []*serverResult, notes []string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## DNS: weft vs NSD (%s)\n\n", e.date.Format("2006-01-02 15:04 MST"))
	b.WriteString("| server | qps (median) | qps min–max | avg latency under load | server CPU / query | sequential p50 | sequential p99 | lost | response bytes |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	sums := make([]summary, len(results))
	for i, r := range results {
		s := summarize(r, o.duration)
		sums[i] = s
		fmt.Fprintf(&b, "| %s | %s | %s–%s | %s | %s | %s | %s | %d | %d |\n",
			r.name, thousands(s.qps), thousands(s.qpsMin), thousands(s.qpsMax),
			dur(s.avgLatency), dur(s.cpuPerQuery), dur(s.p50), dur(s.p99), s.lost, s.respBytes)
	}
	w, n := sums[0], sums[1]
	b.WriteString("\n")
	if n.qps > 0 {
		fmt.Fprintf(&b, "**weft/NSD qps: %.2f×** (target ≥ 0.5×).", w.qps/n.qps)
	}
	if n.cpuPerQuery > 0 {
		fmt.Fprintf(&b, " CPU per query: weft %.1f× NSD's.", float64(w.cpuPerQuery)/float64(n.cpuPerQuery))
	}
	if n.p50 > 0 {
		fmt.Fprintf(&b, " Sequential p50: weft %.1f× NSD's.", float64(w.p50)/float64(n.p50))
	}
	b.WriteString("\n\n")
	fmt.Fprintf(&b, "CPU in use during the dnsperf runs (cores, medians, of %d):", e.cpus)
	for i, r := range results {
		fmt.Fprintf(&b, " %s %.2f + dnsperf %.2f;", r.name, sums[i].serverCores, sums[i].dnsperfCores)
	}
	fmt.Fprintf(&b, " load average %s at the start.\n", e.loadAvg)
	fmt.Fprintf(&b, "Per run qps (in run order):")
	for _, r := range results {
		var q []string
		for _, p := range r.perf {
			q = append(q, thousands(p.qps))
		}
		fmt.Fprintf(&b, " %s %s;", r.name, strings.Join(q, ", "))
	}
	b.WriteString("\n\n")

	b.WriteString("How: ")
	fmt.Fprintf(&b, "%d CPUs (%s), Linux %s. ", e.cpus, e.cpuModel, e.kernel)
	var versions []string
	for _, r := range results {
		versions = append(versions, r.version)
	}
	fmt.Fprintf(&b, "%s (server-count %d, rrl off, minimal-responses), %s. ", strings.Join(versions, ", "), o.nsdServers, e.dnsperf)
	fmt.Fprintf(&b, "Both serve the same zone on 127.0.0.1 of one network namespace, where dnsperf runs too: "+
		"`dnsperf %s -p PORT`, %d runs per server alternating (medians). ",
		strings.Join(dnsperfFlagsForReport(o), " "), o.runs)
	fmt.Fprintf(&b, "Query file: %s lines, %s; rcodes seen: weft %s; NSD %s. ",
		thousands(queryFileLines), mixSummary(), w.rcodes, n.rcodes)
	b.WriteString("Server CPU / query: user+system time of the server's processes during the dnsperf run over the queries answered " +
		"(weft's includes its agent's background work). ")
	fmt.Fprintf(&b, "Sequential: one query at a time on one UDP socket, %d per server and run after 200 unmeasured, "+
		"percentiles over all runs (weft %d samples, %d timeouts; NSD %d, %d).\n",
		o.seqQueries, w.seqN, w.seqErrors, n.seqN, n.seqErrors)
	for _, note := range notes {
		fmt.Fprintf(&b, "\n%s\n", note)
	}
	return b.String()
}

// dnsperfFlagsForReport are the dnsperf flags without the server's port
// and the file's path, which differ per server and run.
func dnsperfFlagsForReport(o options) []string {
	args := dnsperfArgs(o, 0, "queries.txt")[1:]
	var out []string
	for i := 0; i < len(args); i++ {
		if args[i] == "-p" {
			i++
			continue
		}
		out = append(out, args[i])
	}
	return out
}

func thousands(f float64) string {
	s := fmt.Sprintf("%d", int64(f+0.5))
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}

func dur(d time.Duration) string {
	switch {
	case d <= 0:
		return "–"
	case d < time.Millisecond:
		return fmt.Sprintf("%.0f µs", float64(d)/float64(time.Microsecond))
	default:
		return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
	}
}
