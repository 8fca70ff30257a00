package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// A server is one DNS server under test, listening on 127.0.0.1:port in
// the lab's namespace.
type server struct {
	name    string
	port    int
	proc    *proc // its process group is what its CPU time is taken from
	version string
}

// perfResult is what one dnsperf run reports, and the CPU time the
// server's processes used meanwhile.
type perfResult struct {
	sent, completed, lost int
	rcodes                string  // "NOERROR 162747 (90.00%), NXDOMAIN 18087 (10.00%)"
	qps                   float64 // completed queries per second
	avgLatency            time.Duration
	respBytes             int // average response size
	version               string
	serverCPU             time.Duration
	dnsperfCPU            time.Duration
}

// dnsperfArgs are the flags both servers get, in every run.
func dnsperfArgs(o options, port int, queryFile string) []string {
	args := []string{"dnsperf", "-s", "127.0.0.1", "-p", strconv.Itoa(port), "-d", queryFile,
		"-l", strconv.Itoa(int(o.duration / time.Second)),
		"-c", strconv.Itoa(o.clients), "-T", strconv.Itoa(o.threads), "-q", strconv.Itoa(o.outstanding)}
	if o.maxQPS > 0 {
		args = append(args, "-Q", strconv.Itoa(o.maxQPS))
	}
	return args
}

// runDnsperf runs dnsperf against s once, in the namespace.
func runDnsperf(ctx context.Context, l *lab, s *server, queryFile string, o options) (*perfResult, error) {
	before, err := groupCPU(s.proc.cmd.Process.Pid)
	if err != nil {
		return nil, err
	}
	// dnsperf stops sending at -l and waits up to its query timeout (-t,
	// 5s) for what is still outstanding.
	out, used, err := l.runUsage(ctx, o.duration+30*time.Second, nil, dnsperfArgs(o, s.port, queryFile)...)
	if err != nil {
		return nil, fmt.Errorf("dnsperf against %s: %w", s.name, err)
	}
	after, err := groupCPU(s.proc.cmd.Process.Pid)
	if err != nil {
		return nil, err
	}
	if s.proc.exited() {
		return nil, fmt.Errorf("%s exited during the run (%v); log %s:\n%s", s.name, s.proc.err, s.proc.log, tail(s.proc.log, 20))
	}
	res, err := parseDnsperf(string(out))
	if err != nil {
		return nil, fmt.Errorf("dnsperf against %s: %w\n%s", s.name, err, out)
	}
	res.serverCPU = after - before
	res.dnsperfCPU = used
	return res, nil
}

var (
	reVersion    = regexp.MustCompile(`(?m)^Version (\S+)`)
	reSent       = regexp.MustCompile(`(?m)^\s*Queries sent:\s+(\d+)`)
	reCompleted  = regexp.MustCompile(`(?m)^\s*Queries completed:\s+(\d+)`)
	reLost       = regexp.MustCompile(`(?m)^\s*Queries lost:\s+(\d+)`)
	reRcodes     = regexp.MustCompile(`(?m)^\s*Response codes:\s+(.+)$`)
	reQPS        = regexp.MustCompile(`(?m)^\s*Queries per second:\s+([0-9.]+)`)
	reAvgLatency = regexp.MustCompile(`(?m)^\s*Average Latency \(s\):\s+([0-9.]+)`)
	reSize       = regexp.MustCompile(`(?m)^\s*Average packet size:\s+request (\d+), response (\d+)`)
)

// parseDnsperf reads the statistics dnsperf 2.x prints at the end of a
// run. Queries per second and the average latency are required; dnsperf
// prints no latency percentiles, hence the sequential queries.
func parseDnsperf(out string) (*perfResult, error) {
	r := &perfResult{}
	if m := reVersion.FindStringSubmatch(out); m != nil {
		r.version = "dnsperf " + m[1]
	}
	ints := []struct {
		re *regexp.Regexp
		to *int
	}{{reSent, &r.sent}, {reCompleted, &r.completed}, {reLost, &r.lost}}
	for _, x := range ints {
		if m := x.re.FindStringSubmatch(out); m != nil {
			*x.to, _ = strconv.Atoi(m[1])
		}
	}
	if m := reRcodes.FindStringSubmatch(out); m != nil {
		r.rcodes = strings.TrimSpace(m[1])
	}
	if m := reSize.FindStringSubmatch(out); m != nil {
		r.respBytes, _ = strconv.Atoi(m[2])
	}
	m := reQPS.FindStringSubmatch(out)
	if m == nil {
		return nil, fmt.Errorf("no \"Queries per second\" in dnsperf's output")
	}
	var err error
	if r.qps, err = strconv.ParseFloat(m[1], 64); err != nil {
		return nil, err
	}
	m = reAvgLatency.FindStringSubmatch(out)
	if m == nil {
		return nil, fmt.Errorf("no \"Average Latency\" in dnsperf's output")
	}
	secs, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return nil, err
	}
	r.avgLatency = time.Duration(secs * float64(time.Second))
	return r, nil
}

// userHZ is the unit of the times in /proc/<pid>/stat: USER_HZ, which
// Linux fixes at 100 for user space whatever the kernel's HZ.
const userHZ = 100

// groupCPU is the user+system CPU time of the processes in process group
// pgid so far (NSD's workers are where it answers; weft is one process).
func groupCPU(pgid int) (time.Duration, error) {
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		return 0, err
	}
	var ticks int64
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // exited meanwhile
		}
		// pid (comm) state ppid pgrp ... utime(14) stime(15): comm may hold
		// spaces and parentheses, so count fields after the last ')'.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) < 13 {
			continue
		}
		if pg, _ := strconv.Atoi(f[2]); pg != pgid {
			continue
		}
		utime, _ := strconv.ParseInt(f[11], 10, 64)
		stime, _ := strconv.ParseInt(f[12], 10, 64)
		ticks += utime + stime
	}
	return time.Duration(ticks) * time.Second / userHZ, nil
}
