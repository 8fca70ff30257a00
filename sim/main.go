// Command sim is weft's scale simulation. In one process it runs N
// memberlist agents on memberlist's MockNetwork, 3 Raft servers on
// InmemTransport with weft's real state machine and N long-polling sync
// clients, and compiles the plan of every host, at N/4, N/2 and N. It
// prints one table with a power-law fit of each row to -target hosts. It
// never asserts: the figures are for people (see README.md for what they
// mean and the estimate they support).
//
//	go run ./sim [-agents 1000] [-servers 3] [-target 10000] [-out FILE] [-json FILE]
package main

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The parts of the table.
const (
	secGossip = "1. gossip (memberlist on MockNetwork, weft's LAN config, encrypted)"
	secRaft   = "2. raft (InmemTransport, weft's FSM) and state sync to N long-polling clients"
	secPlan   = "3. per-agent planning (policy.Compile, DNS table), every client host"
)

// ladder is N/4, N/2, N.
func ladder(n int) []int {
	var out []int
	for _, k := range []int{n / 4, n / 2, n} {
		if k >= 8 && !slices.Contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}

func main() {
	agents := flag.Int("agents", 1000, "the largest fleet size of Raft, sync and planning; they also run N/4 and N/2")
	gossipAgents := flag.Int("gossip-agents", 256, "the largest gossip pool; it also runs at 1/4 and 1/2 (see README: its CPU grows as N² log N in one process)")
	servers := flag.Int("servers", 3, "Raft servers")
	target := flag.Int("target", 10000, "fleet size the fits extrapolate to")
	out := flag.String("out", "", "also write the table to this file")
	jsonOut := flag.String("json", "", "also write every row as figures to this file (JSON, package bench/figure; for bench/summary)")
	phases := flag.String("phases", "gossip,raft,plan", "which phases to run")
	sizeList := flag.String("sizes", "", "comma-separated fleet sizes instead of N/4,N/2,N")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the run to this file")
	flag.Parse()
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "sim:", err)
			os.Exit(1)
		}
		_ = pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if *agents < 8 || *servers < 1 {
		fmt.Fprintln(os.Stderr, "sim: -agents must be at least 8 and -servers at least 1")
		os.Exit(2)
	}
	sizes, gsizes := ladder(*agents), ladder(*gossipAgents)
	if *sizeList != "" {
		sizes = nil
		for _, f := range strings.Split(*sizeList, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n < 8 {
				fmt.Fprintf(os.Stderr, "sim: -sizes: %q is not a size of at least 8\n", f)
				os.Exit(2)
			}
			sizes = append(sizes, n)
		}
		gsizes = sizes
	}
	want := func(p string) bool { return slices.Contains(strings.Split(*phases, ","), p) }
	start := time.Now()
	load0 := loadAvg()
	logf := func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "[%6.1fs] %s\n", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}

	rep := &report{target: *target}
	rep.addSection(secGossip, gsizes)
	rep.addSection(secRaft, sizes)
	rep.addSection(secPlan, sizes)
	failed := false
	if want("gossip") {
		// Hundreds of memberlists allocate fast (lzw and msgpack on every
		// packet): the GC runs only near a memory limit, which keeps the
		// cores for their timers. Heap figures are taken after a forced GC,
		// so they do not change.
		old := debug.SetGCPercent(-1)
		oldLimit := debug.SetMemoryLimit(6 << 30)
		for _, n := range gsizes {
			if err := runGossip(rep, n, gsizes[len(gsizes)-1], logf); err != nil {
				rep.note("gossip N=%d: %v", n, err)
				failed = true
			}
			runtime.GC()
		}
		debug.SetGCPercent(old)
		debug.SetMemoryLimit(oldLimit)
	}
	if want("raft") || want("plan") {
		for _, n := range sizes {
			res, err := runRaft(rep, n, *servers, logf)
			if err != nil {
				rep.note("raft N=%d: %v", n, err)
				failed = true
				continue
			}
			if want("plan") {
				if err := runPlan(rep, n, res.state, logf); err != nil {
					rep.note("plan N=%d: %v", n, err)
					failed = true
				}
			}
			runtime.GC()
		}
	}

	var buf bytes.Buffer
	fmt.Fprintf(&buf, "weft scale simulation — %s, %s, GOMAXPROCS=%d, %d Raft servers, run took %.0fs\n",
		time.Now().Format("2006-01-02"), runtime.Version(), runtime.GOMAXPROCS(0), *servers, time.Since(start).Seconds())
	fmt.Fprintf(&buf, "Host load average (1 min) at start %s, at end %s: other processes share these cores too.\n", load0, loadAvg())
	fmt.Fprintln(&buf, "Everything shares this process's cores: timings are upper bounds for one host's work,")
	fmt.Fprintln(&buf, "sums over hosts are what the fleet spends. ~N^b is the exponent of a power-law fit.")
	rep.write(&buf)
	w := io.Writer(os.Stdout)
	_, _ = w.Write(buf.Bytes())
	if *out != "" {
		if err := os.WriteFile(*out, buf.Bytes(), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "sim:", err)
			os.Exit(1)
		}
	}
	if *jsonOut != "" {
		if err := rep.figures().Write(*jsonOut); err != nil {
			fmt.Fprintln(os.Stderr, "sim: -json:", err)
			os.Exit(1)
		}
	}
	if failed {
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

// loadAvg is the 1-minute load average of the host, "?" where unknown.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	if f := strings.Fields(string(b)); len(f) > 0 {
		return f[0]
	}
	return "?"
}
