package main

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// dnsperf 2.10.0's output, as it prints it after a run.
const dnsperfOutput = `DNS Performance Testing Tool
Version 2.10.0

[Status] Command line: dnsperf -s 127.0.0.1 -p 8600 -d q.txt -l 5 -c 10
[Status] Sending queries (to 127.0.0.1:8600)
[Status] Started at: Sun Nov 22 00:14:24 2026
[Status] Stopping after 5.000000 seconds
[Status] Testing complete (time limit)

Statistics:

  Queries sent:         180834
  Queries completed:    180830 (100.00%)
  Queries lost:         4 (0.00%)

  Response codes:       NOERROR 162747 (90.00%), NXDOMAIN 18083 (10.00%)
  Average packet size:  request 43, response 71
  Run time (s):         5.003029
  Queries per second:   36144.903418

  Average Latency (s):  0.002400 (min 0.000020, max 0.029799)
  Latency StdDev (s):   0.001471

`

func TestParseDnsperf(t *testing.T) {
	got, err := parseDnsperf(dnsperfOutput)
	if err != nil {
		t.Fatal(err)
	}
	want := &perfResult{
		sent: 180834, completed: 180830, lost: 4,
		rcodes:     "NOERROR 162747 (90.00%), NXDOMAIN 18083 (10.00%)",
		qps:        36144.903418,
		avgLatency: 2400 * time.Microsecond,
		respBytes:  71,
		version:    "dnsperf 2.10.0",
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(perfResult{})); diff != "" {
		t.Errorf("parseDnsperf (-want +got):\n%s", diff)
	}

	for _, cut := range []string{"  Queries per second", "  Average Latency"} {
		i := strings.Index(dnsperfOutput, cut)
		if _, err := parseDnsperf(dnsperfOutput[:i]); err == nil {
			t.Errorf("output without %q: no error", strings.TrimSpace(cut))
		}
	}
}

func TestQueryFileMix(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.txt")
	if err := writeQueryFile(path, 1000); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		name, qtype, _ := strings.Cut(line, " ")
		switch {
		case strings.HasPrefix(name, "gone.") || strings.Contains(name, "missing"):
			got["nx"]++
		case strings.HasSuffix(name, ".node."+domain):
			got["node"]++
		case qtype == "SRV":
			got["srv"]++
		default:
			got["service"]++
		}
	}
	want := map[string]int{"node": 400, "service": 300, "srv": 200, "nx": 100}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("mix (-want +got):\n%s", diff)
	}
}

func TestPercentileAndMedian(t *testing.T) {
	var s []int64
	for i := 1; i <= 100; i++ {
		s = append(s, int64(i))
	}
	for _, tc := range []struct {
		p    float64
		want time.Duration
	}{{0.5, 50}, {0.99, 99}, {1, 100}, {0.001, 1}} {
		if got := percentile(s, tc.p); got != tc.want {
			t.Errorf("percentile(1..100, %v) = %v, want %v", tc.p, got, tc.want)
		}
	}
	if got := median([]float64{3, 1, 2}); got != 2 {
		t.Errorf("median(3,1,2) = %v", got)
	}
	if got := median([]int{4, 1, 3, 2}); got != 2 {
		t.Errorf("median(4,1,3,2) = %v, want (2+3)/2 in integers", got)
	}
}

// The zone must hold what weft answers for the same config and policy;
// the run checks the answers themselves, this only the records' shape.
func TestZoneFile(t *testing.T) {
	z := zoneFile(netip.MustParseAddr("10.97.0.1"))
	for _, want := range []string{
		"$ORIGIN weft.internal.",
		"bench.node IN A 10.97.0.1",
		"web.service IN A 10.97.0.1",
		"_db._tcp.service IN SRV 1 1 5432 bench.node.weft.internal.",
	} {
		if !strings.Contains(z, want) {
			t.Errorf("zone has no %q:\n%s", want, z)
		}
	}
	conf := nsdConf("/tmp/x", 1)
	for _, want := range []string{"rrl-ratelimit: 0\n", "ip-address: 127.0.0.1@8601\n", "minimal-responses: yes\n"} {
		if !strings.Contains(conf, want) {
			t.Errorf("nsd.conf has no %q:\n%s", want, conf)
		}
	}
}
