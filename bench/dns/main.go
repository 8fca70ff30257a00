// Command dns measures weft's DNS resolver against NSD on the same machine,
// in the same run: both serve the same names and records on the loopback of
// one private network namespace, and dnsperf sends both the same query mix
// with the same flags, runs alternating between the servers. It prints a
// table of throughput (queries per second), dnsperf's average latency under
// that load, the server CPU time per query, and the p50/p99 latency of
// queries sent one at a time, with the ratio weft/NSD.
//
// It never asserts anything: figures are for people. Run it as root from
// the module (go run ./bench/dns). It needs ip and unshare, dnsperf and NSD
// (Debian packages dnsperf and nsd) and /dev/net/tun, and removes every
// namespace, process and file it made, also when it fails or is
// interrupted.
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
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// options are the command-line flags.
type options struct {
	runs        int           // dnsperf runs per server, alternating
	duration    time.Duration // of one dnsperf run (-l)
	clients     int           // dnsperf -c
	threads     int           // dnsperf -T
	outstanding int           // dnsperf -q
	maxQPS      int           // dnsperf -Q; 0 is unlimited
	seqQueries  int           // sequential queries per server and run
	out         string        // also write the table here
	json        string        // also write the figures here (bench/figure)
	weftBin     string        // a prebuilt weft; built from ./cmd/weft when empty
	cpuProfile  string        // write weft's CPU profile of its first run here
	keep        bool          // keep the temp dir (configs, logs)
	nsdServers  int           // NSD server-count
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == probeCmd {
		os.Exit(probeMain(os.Args[2:], os.Stdout, os.Stderr))
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
	if err := run(ctx, opts, os.Stdout, os.Stderr); err != nil {
		if ctx.Err() != nil {
			fmt.Fprintln(os.Stderr, "bench/dns: interrupted; what it made is removed")
			os.Exit(130)
		}
		fmt.Fprintf(os.Stderr, "bench/dns: %v\n", err)
		os.Exit(1)
	}
}

func parseFlags(args []string, stderr io.Writer) (options, error) {
	fs := flag.NewFlagSet("bench/dns", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	fs.IntVar(&o.runs, "runs", 3, "dnsperf runs per server (alternating); the table shows medians")
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "length of one dnsperf run (whole seconds)")
	fs.IntVar(&o.clients, "clients", 10, "dnsperf -c: client sockets")
	fs.IntVar(&o.threads, "threads", 2, "dnsperf -T: send/receive thread pairs")
	fs.IntVar(&o.outstanding, "outstanding", 100, "dnsperf -q: queries in flight at most")
	fs.IntVar(&o.maxQPS, "qps", 0, "dnsperf -Q: queries per second at most (0: as fast as answered)")
	fs.IntVar(&o.seqQueries, "seq", 5000, "queries sent one at a time per server and run, for p50/p99")
	fs.StringVar(&o.out, "out", "", "also write the table to this file")
	fs.StringVar(&o.json, "json", "", "also write the figures to this file as JSON (for bench/summary)")
	fs.StringVar(&o.weftBin, "weft", "", "weft binary to use (default: go build ./cmd/weft)")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the weft agent during its first dnsperf run here")
	fs.IntVar(&o.nsdServers, "nsd-servers", 1, "NSD server-count: its processes (NSD's default is 1)")
	fs.BoolVar(&o.keep, "keep", false, "keep the temp dir (configs, zone, logs) and print where it is")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	var bad []string
	if fs.NArg() > 0 {
		bad = append(bad, fmt.Sprintf("unexpected arguments %q", fs.Args()))
	}
	if o.runs < 1 {
		bad = append(bad, "-runs must be at least 1")
	}
	if o.duration < time.Second || o.duration%time.Second != 0 {
		bad = append(bad, "-duration must be whole seconds, at least 1s")
	}
	if o.clients < 1 || o.threads < 1 || o.outstanding < 1 || o.maxQPS < 0 {
		bad = append(bad, "-clients, -threads and -outstanding must be at least 1, -qps at least 0")
	}
	if o.threads > o.clients {
		bad = append(bad, "-threads must not exceed -clients (dnsperf spreads clients over threads)")
	}
	if o.nsdServers < 1 {
		bad = append(bad, "-nsd-servers must be at least 1")
	}
	if o.seqQueries < 100 {
		bad = append(bad, "-seq must be at least 100")
	}
	if len(bad) > 0 {
		err := errors.New(strings.Join(bad, "; "))
		fmt.Fprintf(stderr, "bench/dns: %v\n", err)
		return o, err
	}
	return o, nil
}

// tools are the programs the benchmark runs, with the Debian package that
// has each.
var tools = []struct{ bin, pkg string }{
	{"ip", "iproute2"},
	{"unshare", "util-linux"},
	{"dnsperf", "dnsperf"},
	{"nsd", "nsd"},
	{"nsd-checkconf", "nsd"},
}

// preflight reports everything missing at once, so that one round of
// installs fixes it. The program never installs anything itself.
func preflight(o options) error {
	var problems []string
	if os.Geteuid() != 0 {
		problems = append(problems, "must run as root (it makes a network namespace): sudo go run ./bench/dns")
	}
	var pkgs []string
	for _, t := range tools {
		if _, err := exec.LookPath(t.bin); err != nil {
			problems = append(problems, fmt.Sprintf("%s is not on the PATH (Debian package %s)", t.bin, t.pkg))
			pkgs = append(pkgs, t.pkg)
		}
	}
	if o.weftBin == "" {
		if _, err := exec.LookPath("go"); err != nil {
			problems = append(problems, "go is not on the PATH: it builds weft (or give -weft BINARY)")
		}
	} else if _, err := os.Stat(o.weftBin); err != nil {
		problems = append(problems, fmt.Sprintf("-weft: %v", err))
	}
	if _, err := os.Stat("/dev/net/tun"); err != nil {
		problems = append(problems, "/dev/net/tun is missing: weft's segment is a wireguard-go TUN device")
	}
	if len(problems) == 0 {
		return nil
	}
	msg := "cannot run:\n  " + strings.Join(problems, "\n  ")
	if len(pkgs) > 0 {
		msg += "\ninstall with: apt-get install -y " + strings.Join(slices.Compact(pkgs), " ")
	}
	return errors.New(msg)
}

// run sets everything up, measures, prints the table and removes what it
// made, whatever happens.
func run(ctx context.Context, o options, stdout, stderr io.Writer) (err error) {
	if err := preflight(o); err != nil {
		return err
	}
	began := time.Now()
	step := func(format string, args ...any) {
		fmt.Fprintf(stderr, "bench/dns: %5.1fs "+format+"\n", append([]any{time.Since(began).Seconds()}, args...)...)
	}

	removeStale(step)
	l, err := newLab(ctx)
	defer func() {
		if cerr := l.cleanup(o.keep, step); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()
	if err != nil {
		return err
	}

	weftBin := o.weftBin
	if weftBin == "" {
		step("building weft")
		weftBin = filepath.Join(l.dir, "weft")
		if err := buildWeft(ctx, weftBin); err != nil {
			return err
		}
	}

	step("starting the weft agent in namespace %s", l.ns)
	w, err := startWeft(ctx, l, weftBin)
	if err != nil {
		return err
	}
	step("starting NSD")
	n, err := startNSD(ctx, l, w.nodeAddr, o.nsdServers)
	if err != nil {
		return err
	}
	servers := []*server{w.server(), n.server()}

	step("checking that both give the same answers")
	notes, err := compareAnswers(ctx, l, servers)
	if err != nil {
		return err
	}

	queryFile := filepath.Join(l.dir, "queries.txt")
	if err := writeQueryFile(queryFile, queryFileLines); err != nil {
		return err
	}
	env := environment()

	results := make(map[*server]*serverResult, len(servers))
	for _, s := range servers {
		results[s] = &serverResult{name: s.name, version: s.version}
	}
	for r := range o.runs {
		order := servers
		if r%2 == 1 {
			order = []*server{servers[1], servers[0]}
		}
		for _, s := range order {
			step("run %d/%d: dnsperf against %s for %s", r+1, o.runs, s.name, o.duration)
			var prof <-chan error
			if r == 0 && s == servers[0] && o.cpuProfile != "" {
				prof = w.captureCPUProfile(ctx, o.cpuProfile, o.duration-time.Second)
			}
			res, err := runDnsperf(ctx, l, s, queryFile, o)
			if prof != nil {
				if perr := <-prof; perr != nil {
					step("cpu profile: %v", perr)
				} else {
					step("cpu profile of weft written to %s", o.cpuProfile)
				}
			}
			if err != nil {
				return err
			}
			if env.dnsperf == "" {
				env.dnsperf = res.version
			}
			results[s].perf = append(results[s].perf, res)

			samples, err := sequentialLatency(ctx, l, s, queryFile, o.seqQueries)
			if err != nil {
				return err
			}
			results[s].seq = append(results[s].seq, samples)
		}
	}

	ordered := []*serverResult{results[servers[0]], results[servers[1]]}
	table := report(env, o, ordered, notes)
	fmt.Fprint(stdout, table)
	if o.out != "" {
		if err := os.WriteFile(o.out, []byte(table), 0o644); err != nil {
			return fmt.Errorf("-out: %w", err)
		}
	}
	if o.json != "" {
		if err := figures(o, ordered).Write(o.json); err != nil {
			return fmt.Errorf("-json: %w", err)
		}
	}
	return nil
}

// buildWeft builds ./cmd/weft of the module the command runs in.
func buildWeft(ctx context.Context, out string) error {
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", out, "github.com/weft-mesh/weft/cmd/weft")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/weft (run from the weft module, or give -weft): %v\n%s", err, b)
	}
	return nil
}
