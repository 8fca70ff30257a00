// Command bench measures weft's dataplane on two network-namespace hosts
// and prints a table: iperf3 TCP throughput over the bare underlay, a bare
// wireguard-go device, weft's segment and Nebula, measured in one run and
// interleaved so that the ratios hold on a noisy machine; then how long a
// policy change takes to be enforced on both hosts, how long a new host
// takes to become reachable and a leaving one to be purged, what the
// agents hold and spend at rest, and how long the policy compiler takes
// for a fleet of 10,000 hosts.
//
// It never asserts anything: figures are for people. Run it as root from
// the module (make bench, or go run ./bench). It needs iperf3, nebula and
// nebula-cert on the PATH, and removes every namespace, process and file
// it made, also when it fails or is interrupted.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// options are the command-line flags.
type options struct {
	runs     int           // iperf3 runs per path and stream count
	duration time.Duration // of one iperf3 run
	streams  []int         // iperf3 -P values
	out      string        // also write the table here
	json     string        // also write the figures here (bench/figure)
	joins    int           // joins and leaves of host c
	idle     time.Duration // the window the agents' idle CPU is taken over
	weftBin  string        // a prebuilt weft; built from ./cmd/weft when empty
	keep     bool          // keep the temp dir (logs, configs)
	skipNet  bool          // only the policy compiler figures
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == wgHelperCmd {
		os.Exit(wgHelperMain(os.Args[2:]))
	}
	opts, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, opts, os.Stdout); err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(os.Stderr, "bench: interrupted; what it made is removed")
			os.Exit(130)
		}
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	streams := "1,4"
	fs.IntVar(&o.runs, "runs", 3, "iperf3 runs per path and stream count; the median is reported")
	fs.DurationVar(&o.duration, "t", 5*time.Second, "duration of one iperf3 run")
	fs.StringVar(&streams, "P", streams, "comma-separated iperf3 stream counts (-P)")
	fs.StringVar(&o.out, "out", "", "also write the table to this file")
	fs.StringVar(&o.json, "json", "", "also write the figures to this file as JSON (for bench/summary)")
	fs.IntVar(&o.joins, "joins", 3, "how many times a third host joins and leaves; the median is reported (0: none)")
	fs.DurationVar(&o.idle, "idle", 20*time.Second, "the window over which the agents' idle CPU is measured (0: skip)")
	fs.StringVar(&o.weftBin, "weft", "", "use this weft binary instead of building ./cmd/weft")
	fs.BoolVar(&o.keep, "keep", false, "keep the temp dir (agent logs, configs) and print its path")
	fs.BoolVar(&o.skipNet, "compile-only", false, "only measure the policy compiler (no root, no namespaces)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: go run ./bench [flags]   (as root; see bench/README.md)")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "bench: unexpected arguments %q\n", fs.Args())
		return o, errors.New("usage")
	}
	for _, s := range strings.Split(streams, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 128 {
			fmt.Fprintf(stderr, "bench: -P %q: want stream counts such as 1,4\n", streams)
			return o, errors.New("usage")
		}
		o.streams = append(o.streams, n)
	}
	if o.runs < 1 || o.duration < time.Second {
		fmt.Fprintln(stderr, "bench: -runs must be at least 1 and -t at least 1s")
		return o, errors.New("usage")
	}
	if o.joins < 0 || o.idle < 0 || (o.idle > 0 && o.idle < time.Second) {
		fmt.Fprintln(stderr, "bench: -joins must be at least 0 and -idle 0 or at least 1s")
		return o, errors.New("usage")
	}
	return o, nil
}

// requiredTools are what the network part runs, with the Debian package
// that has each.
var requiredTools = []struct{ name, pkg string }{
	{"ip", "iproute2"},
	{"unshare", "util-linux"},
	{"ping", "iputils-ping"},
	{"sysctl", "procps"},
	{"iperf3", "iperf3"},
	{"nebula", "nebula"},
	{"nebula-cert", "nebula"},
}

// checkInstall says what is missing to run the network part, and how to
// get it.
func checkInstall() error {
	var missing, pkgs []string
	for _, t := range requiredTools {
		if _, err := exec.LookPath(t.name); err != nil {
			missing = append(missing, t.name)
			if !contains(pkgs, t.pkg) {
				pkgs = append(pkgs, t.pkg)
			}
		}
	}
	var problems []string
	if len(missing) > 0 {
		problems = append(problems, fmt.Sprintf("%s not found on the PATH; install them with: apt-get install %s",
			strings.Join(missing, ", "), strings.Join(pkgs, " ")))
	}
	if os.Geteuid() != 0 {
		problems = append(problems, "the throughput part makes network namespaces and must run as root (make bench as root, or -compile-only)")
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		problems = append(problems, "/dev/net/tun is missing: wireguard-go and Nebula need TUN devices")
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "\n       "))
	}
	return nil
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// run measures everything and prints the report.
func run(ctx context.Context, o options, stdout io.Writer) error {
	rep := &report{started: time.Now(), opts: o}
	if !o.skipNet {
		if err := checkInstall(); err != nil {
			return err
		}
	}
	rep.env = describeEnv(o.skipNet)
	fmt.Fprintf(os.Stderr, "bench: %s\n", rep.env)

	fmt.Fprintln(os.Stderr, "bench: policy compiler, 10,000 hosts and 100 segments ...")
	cr, err := measureCompile(ctx)
	if err != nil {
		return fmt.Errorf("policy compile: %w", err)
	}
	rep.compile = cr

	if !o.skipNet {
		if err := measureNetwork(ctx, o, rep); err != nil {
			return err
		}
	}
	text := rep.String()
	fmt.Fprint(stdout, text)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(text), 0o644); err != nil {
			return fmt.Errorf("-out: %w", err)
		}
	}
	if o.json != "" {
		if err := rep.figures().Write(o.json); err != nil {
			return fmt.Errorf("-json: %w", err)
		}
	}
	return nil
}

// measureNetwork builds the bed, brings up the four paths and runs iperf3
// over each. The bed is removed before it returns, whatever happened.
func measureNetwork(ctx context.Context, o options, rep *report) (err error) {
	sweepStale()
	b, err := newBed(ctx)
	defer func() {
		if b == nil {
			return
		}
		if o.keep {
			fmt.Fprintf(os.Stderr, "bench: -keep: logs and configs stay in %s\n", b.dir)
		}
		if cerr := b.cleanup(o.keep); cerr != nil {
			fmt.Fprintf(os.Stderr, "bench: cleanup: %v\n", cerr)
		}
		if err != nil && !o.keep {
			fmt.Fprintln(os.Stderr, "bench: run with -keep to keep the logs of the agents and helpers")
		}
	}()
	if err != nil {
		return err
	}

	step := func(what string) { fmt.Fprintf(os.Stderr, "bench: %s ...\n", what) }

	step("iperf3 server on b")
	if err := b.startIperfServer(); err != nil {
		return err
	}
	paths := []*path{{Name: pathUnderlay, Dest: b.b.ip.String(), MTU: underlayMTU}}

	step("bare wireguard-go")
	wgPath, err := b.startBareWireGuard(ctx)
	if err != nil {
		return fmt.Errorf("bare wireguard-go: %w", err)
	}
	paths = append(paths, wgPath)

	step("weft agents, join, policy")
	w, err := b.startWeft(ctx, o.weftBin)
	if err != nil {
		return fmt.Errorf("weft: %w", err)
	}
	weftPath, timings, err := w.run(ctx)
	if err != nil {
		return fmt.Errorf("weft: %w", err)
	}
	rep.weftVersion = w.version
	rep.enforce = timings
	rep.weftNotes = w.notes
	paths = append(paths, weftPath)
	// The agents' memory before any traffic, to set the figure at rest
	// against.
	rssBefore := rssNow(w.usageTargets())

	step("nebula")
	nebPath, err := b.startNebula(ctx)
	if err != nil {
		return fmt.Errorf("nebula: %w", err)
	}
	paths = append(paths, nebPath)

	for _, p := range paths {
		if err := b.describePath(p); err != nil {
			return err
		}
	}
	rep.paths = paths
	if err := b.measureThroughput(ctx, o, paths); err != nil {
		return err
	}

	// What follows comes after the throughput runs so that it cannot
	// disturb them. A failure here is noted in the report and leaves the
	// figures measured so far.
	if o.joins > 0 {
		step(fmt.Sprintf("host c joins and leaves, %d times", o.joins))
		c, err := b.addHostC(ctx)
		if err == nil {
			rep.membership, err = w.measureMembership(ctx, c, o.joins)
		}
		if err != nil {
			if ctx.Err() != nil {
				return err
			}
			rep.weftNotes = append(rep.weftNotes, fmt.Sprintf("join and leave of host c stopped after %d joins and %d leaves: %v",
				len(rep.membership.Joins), len(rep.membership.Leaves), err))
		}
	}
	if o.idle > 0 {
		step(fmt.Sprintf("the agents at rest, %v", o.idle))
		us, uerr := b.measureUsage(ctx, o.idle, w.usageTargets(), rssBefore)
		if uerr != nil {
			if ctx.Err() != nil {
				return uerr
			}
			rep.weftNotes = append(rep.weftNotes, fmt.Sprintf("agents at rest: %v", uerr))
		}
		rep.usage = us
	}
	return nil
}
