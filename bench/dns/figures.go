package main

import (
	"fmt"

	"github.com/weft-mesh/weft/bench/figure"
)

// figures is the table as a list of figures (-json), for bench/summary:
// results are weft's, then NSD's.
func figures(o options, results []*serverResult) figure.List {
	var l figure.List
	sums := make([]summary, len(results))
	for i, r := range results {
		s := summarize(r, o.duration)
		sums[i] = s
		l.Add(figure.DNSQPS(r.name), s.qps, figure.UnitQPS,
			fmt.Sprintf("dnsperf -c %d -T %d -q %d, median of %d runs of %v (%s–%s), %d lost", o.clients, o.threads, o.outstanding, len(r.perf), o.duration, thousands(s.qpsMin), thousands(s.qpsMax), s.lost))
	}
	if len(sums) == 2 && sums[1].qps > 0 {
		l.Add(figure.DNSQPSRatio, sums[0].qps/sums[1].qps, figure.UnitRatio, "of the medians; target ≥ 0.5×")
	}
	for i, r := range results {
		s := sums[i]
		seq := fmt.Sprintf("one query at a time, %d samples, %d timeouts", s.seqN, s.seqErrors)
		l.Add(figure.DNSSeqP50(r.name), micros(s.p50.Seconds()), figure.UnitMicros, seq)
		l.Add(figure.DNSSeqP99(r.name), micros(s.p99.Seconds()), figure.UnitMicros, seq)
		l.Add(figure.DNSLoadLatency(r.name), s.avgLatency.Seconds()*1e3, figure.UnitMillis, "dnsperf's average, median of the runs")
		if s.cpuPerQuery > 0 {
			l.Add(figure.DNSCPUPerQuery(r.name), micros(s.cpuPerQuery.Seconds()), figure.UnitMicros, "user+system time of its processes over the queries answered")
		}
	}
	return l
}

func micros(s float64) float64 { return s * 1e6 }
