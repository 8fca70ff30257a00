// Command summary prints one table of every figure that `make bench`
// measures: it reads the figures (bench/figure's JSON) that bench,
// bench/dns and sim write with -json, and groups them: dataplane
// throughput, membership and policy latency, DNS, the agents at rest, the
// policy compiler and the scale simulation (a few of sim's rows). A
// figure that the inputs lack shows as "–", so a step that failed is
// seen, not hidden. It measures nothing itself.
//
//	go run ./bench/summary -in dataplane.json -in dns.json -in sim.json [-md bench/REPORT.md]
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/weft-mesh/weft/bench/figure"
)

type inputs []string

func (in *inputs) String() string     { return strings.Join(*in, ",") }
func (in *inputs) Set(s string) error { *in = append(*in, s); return nil }

func main() {
	var in inputs
	fs := flag.NewFlagSet("summary", flag.ContinueOnError)
	fs.Var(&in, "in", "an input: figures as JSON (bench, bench/dns, sim -json); repeatable")
	md := fs.String("md", "", "also write the table (markdown, with its header) to this file")
	started := fs.Int64("started", 0, "when the run began, in Unix seconds (default: now)")
	loadStart := fs.String("load-start", "", "the load average when the run began (/proc/loadavg's first three fields)")
	fs.Usage = func() {
		fmt.Fprintln(os.Stderr, "usage: go run ./bench/summary -in FILE [-in FILE ...] [-md FILE] [-started UNIX] [-load-start LOADAVG]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
	if len(in) == 0 || fs.NArg() > 0 {
		fs.Usage()
		os.Exit(2)
	}

	var all []source
	for _, file := range in {
		// A missing input is a step that failed: say so, and still print
		// what the others measured.
		l, err := figure.Read(file)
		if err != nil {
			fmt.Fprintf(os.Stderr, "summary: %v\n", err)
		}
		all = append(all, source{file: file, figures: l, err: err})
	}

	m := newMachine(*started, *loadStart)
	var out bytes.Buffer
	writeReport(&out, m, all)
	os.Stdout.Write(out.Bytes())
	if *md != "" {
		if err := os.WriteFile(*md, out.Bytes(), 0o644); err != nil {
			fmt.Fprintf(os.Stderr, "summary: -md: %v\n", err)
			os.Exit(1)
		}
	}
}

// A source is one input file and the figures read from it.
type source struct {
	file    string
	figures figure.List
	err     error
}

// machine is where and when the figures were measured.
type machine struct {
	start, end         time.Time
	cpus               int
	model, kernel, goV string
	loadStart, loadEnd string
}

func newMachine(started int64, loadStart string) machine {
	m := machine{end: time.Now().UTC(), cpus: runtime.NumCPU(), goV: runtime.Version(), loadStart: loadStart, loadEnd: loadAvg()}
	m.start = m.end
	if started > 0 {
		m.start = time.Unix(started, 0).UTC()
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.model = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil { // uname -r
		m.kernel = strings.TrimSpace(string(b))
	}
	return m
}

// loadAvg is the first three fields of /proc/loadavg.
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

func (m machine) String() string {
	when := m.start.Format("2006-01-02 15:04 UTC")
	if d := m.end.Sub(m.start); d >= time.Minute {
		when += fmt.Sprintf(" (the run took %s)", d.Round(time.Second))
	}
	model := m.model
	if model == "" {
		model = "unknown CPU"
	}
	load := "load average (1, 5, 15 min) "
	if m.loadStart != "" {
		load += m.loadStart + " at the start, "
	}
	load += m.loadEnd + " at the end"
	return fmt.Sprintf("%s; nproc %d, %s, Linux %s, %s; %s.", when, m.cpus, model, m.kernel, m.goV, load)
}

// A group is one part of the table: the figures it shows, in order.
// A name in optional is shown only when an input has it. missing says
// why a figure may be missing, if the group knows better than "its step
// failed".
type group struct {
	title    string
	names    []string
	optional map[string]bool
	missing  string
}

// groups is the layout of the table. Every figure of the inputs that no
// group names goes to a last group, "other figures".
func groups() []group {
	var tp []string
	for _, n := range []int{1, 4} {
		tp = append(tp,
			figure.Throughput(figure.PathWeft, n),
			figure.Throughput(figure.PathWireGuard, n),
			figure.Throughput(figure.PathNebula, n),
			figure.Throughput(figure.PathUnderlay, n),
			figure.Ratio(figure.PathWeft, figure.PathWireGuard, n),
			figure.Ratio(figure.PathWeft, figure.PathNebula, n),
		)
	}
	return []group{
		{title: "Dataplane: TCP throughput a→b over one weft segment, bare wireguard-go, Nebula (bench)", names: tp},
		{title: "Membership and policy (bench)", names: []string{
			figure.JoinReachable, figure.ApplyV1, figure.ApplyV2, figure.LeavePurged,
		}},
		{title: "DNS: weft's resolver vs NSD, same records, same machine (bench/dns)", names: []string{
			figure.DNSQPS("weft"), figure.DNSQPS("NSD"), figure.DNSQPSRatio,
			figure.DNSSeqP50("weft"), figure.DNSSeqP50("NSD"),
			figure.DNSSeqP99("weft"), figure.DNSSeqP99("NSD"),
			figure.DNSLoadLatency("weft"), figure.DNSLoadLatency("NSD"),
			figure.DNSCPUPerQuery("weft"), figure.DNSCPUPerQuery("NSD"),
		}},
		{title: "The agents at rest, after all of the above; bare wireguard-go, which carried the same traffic, to compare (bench)", names: []string{
			figure.RSS(figure.ProcServer), figure.RSS(figure.ProcClient),
			figure.IdleCPU(figure.ProcServer), figure.IdleCPU(figure.ProcClient),
			figure.RSS(figure.ProcWireGuard("a")), figure.RSS(figure.ProcWireGuard("b")),
			figure.IdleCPU(figure.ProcWireGuard("a")), figure.IdleCPU(figure.ProcWireGuard("b")),
		}},
		{title: "Policy compiler, a fleet of 10,000 hosts, 100 segments, 50 rules (bench)", names: []string{
			figure.CompileOne, figure.AllocateFresh, figure.AllocateSteady, figure.ParseFleet,
		}},
		simGroup(),
	}
}

// simGroup has each of sim's figures, then its extrapolation where sim
// made one (a row measured at one size only has none).
func simGroup() group {
	g := group{title: "Scale simulation, in one process (sim)", optional: map[string]bool{},
		missing: "sim has no value for it at its largest size (its notes in bench/results/sim.txt say why) or did not run"}
	for _, n := range []string{figure.SimGossipConvergence, figure.SimGossip99, figure.SimMetaPropagation, figure.SimStatePropagation} {
		g.names = append(g.names, n, figure.SimFit(n))
		g.optional[figure.SimFit(n)] = true
	}
	return g
}

func writeReport(w io.Writer, m machine, srcs []source) {
	byName := map[string]figure.Figure{}
	var order []string
	var sims []figure.Figure
	add := func(file string, f figure.Figure) {
		if _, dup := byName[f.Name]; dup {
			fmt.Fprintf(os.Stderr, "summary: %s: %q is in an earlier input too; the first is shown\n", file, f.Name)
			return
		}
		byName[f.Name] = f
		order = append(order, f.Name)
	}
	for _, s := range srcs {
		for _, f := range s.figures {
			// Of sim's many rows the table shows a few, under its own
			// names; the rest stay in sim's output.
			if isSim(f) {
				sims = append(sims, f)
				continue
			}
			add(s.file, f)
		}
	}
	for _, f := range selectSim(sims) {
		add("sim", f)
	}

	fmt.Fprintf(w, "## weft benchmarks (`make bench`)\n\n%s\n\n", m)
	fmt.Fprintln(w, "| figure | value | unit | note |")
	fmt.Fprintln(w, "|---|---:|---|---|")
	shown := map[string]bool{}
	row := func(name string, optional bool, why string) {
		f, ok := byName[name]
		if !ok && optional {
			return
		}
		if !ok {
			if why == "" {
				why = "its step failed or did not measure it (see its output)"
			}
			fmt.Fprintf(w, "| %s | – | | missing: %s |\n", cell(name), cell(why))
			return
		}
		shown[name] = true
		fmt.Fprintf(w, "| %s | %s | %s | %s |\n", cell(f.Name), value(f), cell(f.Unit), cell(f.Note))
	}
	for _, g := range groups() {
		fmt.Fprintf(w, "| **%s** | | | |\n", cell(g.title))
		for _, n := range g.names {
			row(n, g.optional[n], g.missing)
		}
	}
	var rest []string
	for _, n := range order {
		if !shown[n] {
			rest = append(rest, n)
		}
	}
	if len(rest) > 0 {
		fmt.Fprintln(w, "| **Other figures** | | | |")
		for _, n := range rest {
			row(n, false, "")
		}
	}

	fmt.Fprintln(w)
	fmt.Fprintln(w, "Inputs:")
	for _, s := range srcs {
		if s.err != nil {
			fmt.Fprintf(w, "- %s: **missing** (%v)\n", s.file, s.err)
			continue
		}
		n := 0
		for _, f := range s.figures {
			if isSim(f) {
				n++
			}
		}
		if n > 0 {
			fmt.Fprintf(w, "- %s: %d figures, %d of them sim's rows, of which the table shows a few\n", s.file, len(s.figures), n)
		} else {
			fmt.Fprintf(w, "- %s: %d figures\n", s.file, len(s.figures))
		}
	}
}

// value prints a figure with about three significant digits.
func value(f figure.Figure) string {
	v := f.Value
	switch a := abs(v); {
	case f.Unit == figure.UnitQPS || a >= 1000:
		return thousands(v)
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 0.1 || a == 0:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default: // three significant digits, not 0.02 for 15.8 ms
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
}

func abs(v float64) float64 {
	if v < 0 {
		return -v
	}
	return v
}

func thousands(v float64) string {
	s := strconv.FormatFloat(v, 'f', 0, 64)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// cell escapes what would end a markdown table cell.
func cell(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ").Replace(s)
}
