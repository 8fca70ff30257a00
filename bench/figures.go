package main

import (
	"fmt"
	"strings"
	"time"

	"github.com/weft-mesh/weft/bench/figure"
)

// figurePath is each path's name in the figures.
var figurePath = map[string]string{
	pathUnderlay: figure.PathUnderlay,
	pathWG:       figure.PathWireGuard,
	pathWeft:     figure.PathWeft,
	pathNebula:   figure.PathNebula,
}

// figures is the report as a list of figures (-json), for bench/summary.
func (r *report) figures() figure.List {
	var l figure.List
	wg, neb := r.baselines()
	for _, streams := range r.opts.streams {
		for _, p := range r.paths {
			m, lo, hi, ok := stats(p.Results[streams])
			if !ok {
				continue
			}
			l.Add(figure.Throughput(figurePath[p.Name], streams), m/1e9, figure.UnitGbps,
				fmt.Sprintf("iperf3 a→b, median of %d rounds of %v (%.2f–%.2f)", len(p.Results[streams]), r.opts.duration, lo/1e9, hi/1e9))
		}
		for _, p := range r.paths {
			if p.Name != pathWeft {
				continue
			}
			for _, base := range []*path{wg, neb} {
				if m, ok := ratioOf(p, base, streams); ok {
					l.Add(figure.Ratio(figurePath[p.Name], figurePath[base.Name], streams), m, figure.UnitRatio,
						"median of the per-round ratios")
				}
			}
		}
	}

	if js := r.membership.Joins; len(js) > 0 {
		med, lo, hi := durStats(totalsOf(js))
		l.Add(figure.JoinReachable, med.Seconds()*1e3, figure.UnitMillis,
			fmt.Sprintf("agent started → a's ping over the segment answered; median of %d joins (%s–%s); medians: %s", len(js), fmtDur(lo), fmtDur(hi), partsNote(medianParts(js))))
	}
	for i, e := range r.enforce {
		name := figure.ApplyV1
		if i == 1 {
			name = figure.ApplyV2
		}
		l.Add(name, e.Total.Seconds()*1e3, figure.UnitMillis, "on both hosts, slowest of: "+partsNote(e.Parts))
	}
	if ls := r.membership.Leaves; len(ls) > 0 {
		med, lo, hi := durStats(totalsOf(ls))
		l.Add(figure.LeavePurged, med.Seconds()*1e3, figure.UnitMillis,
			fmt.Sprintf("median of %d leaves (%s–%s), slowest of: %s", len(ls), fmtDur(lo), fmtDur(hi), partsNote(medianParts(ls))))
	}

	for _, u := range r.usage {
		before := ""
		if u.RSSBefore > 0 {
			before = fmt.Sprintf(" (%.1f MiB before the throughput runs)", mib(u.RSSBefore))
		}
		l.Add(figure.RSS(u.Role), mib(u.RSS), figure.UnitMiB, fmt.Sprintf("VmRSS after the measurements%s; peak VmHWM %.1f MiB", before, mib(u.HWM)))
		l.Add(figure.IdleCPU(u.Role), 100*u.Cores(), figure.UnitCore, fmt.Sprintf("utime+stime over %v at rest", u.Window.Round(100*time.Millisecond)))
	}

	c := r.compile
	note := fmt.Sprintf("median of %d", compileRuns)
	l.Add(figure.CompileOne, c.Compile.Seconds()*1e3, figure.UnitMillis,
		fmt.Sprintf("%s: %d interfaces, %d peers, %d firewall rules; %s", compileSelf, c.Interfaces, c.Peers, c.Rules, note))
	l.Add(figure.AllocateFresh, c.AllocateFresh.Seconds()*1e3, figure.UnitMillis, fmt.Sprintf("%d hosts, %d segments; %s", fleetHosts, fleetSegments, note))
	l.Add(figure.AllocateSteady, c.AllocateSteady.Seconds()*1e3, figure.UnitMillis, note)
	l.Add(figure.ParseFleet, c.Parse.Seconds()*1e3, figure.UnitMillis, note)
	return l
}

func partsNote(parts []timingPart) string {
	var s []string
	for _, p := range parts {
		s = append(s, fmt.Sprintf("%s %s", p.Name, fmtDur(p.Took)))
	}
	return strings.Join(s, "; ")
}
