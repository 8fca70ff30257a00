package main

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/weft-mesh/weft/bench/figure"
)

// simFigures is what sim -json writes, in part.
var simFigures = figure.List{
	{Name: "sim: join calls (8 at a time, 3 seeds) done", Value: 0.46, Unit: "s", Note: "at N=256 (…)"},
	{Name: "sim: views 99% complete", Value: 4.71, Unit: "s", Note: "at N=256 (N=64: 1.07s, N=128: 2.20s, N=256: 4.71s)"},
	{Name: "sim: one meta update seen by all (last)", Value: 0.82, Unit: "s", Note: "at N=256 (…)"},
	{Name: "sim: one write → N long-polls: server CPU, all servers › all N clients have it (last served + decode)", Value: 3.4, Unit: "s", Note: "at N=1000 (…)"},
	{Name: figure.SimFit("sim: one write → N long-polls: server CPU, all servers › all N clients have it (last served + decode)"), Value: 139, Unit: "s", Note: "power-law fit ~N^1.59 through …, at N=10000"},
	{Name: "sim: snapshot size", Value: 837700, Unit: "B", Note: "at N=1000 (…)"},
}

func TestSelectSim(t *testing.T) {
	got := selectSim(simFigures)
	want := figure.List{
		{Name: figure.SimGossip99, Value: 4.71, Unit: "s"},
		{Name: figure.SimMetaPropagation, Value: 0.82, Unit: "s"},
		{Name: figure.SimStatePropagation, Value: 3.4, Unit: "s"},
		{Name: figure.SimFit(figure.SimStatePropagation), Value: 139, Unit: "s"},
	}
	if d := cmp.Diff(want, got, cmpopts.IgnoreFields(figure.Figure{}, "Note")); d != "" {
		t.Errorf("selectSim (-want +got):\n%s", d)
	}
	if len(got) > 0 && !strings.HasSuffix(got[0].Note, "; at N=256 (N=64: 1.07s, N=128: 2.20s, N=256: 4.71s)") {
		t.Errorf("note %q: want what it measures, then sim's note", got[0].Note)
	}
}

func TestWriteReport(t *testing.T) {
	m := machine{start: time.Date(2026, 11, 22, 1, 0, 0, 0, time.UTC), cpus: 2, model: "AMD EPYC", kernel: "6.18", goV: "go1.26.8", loadStart: "1.00 2.00 3.00", loadEnd: "4.00 5.00 6.00"}
	m.end = m.start.Add(6 * time.Minute)
	srcs := []source{
		{file: "dataplane.json", figures: figure.List{
			{Name: figure.JoinReachable, Value: 94.3, Unit: figure.UnitMillis, Note: "median of 3"},
			{Name: "something new", Value: 1, Unit: "s"},
		}},
		{file: "sim.json", figures: simFigures},
	}
	var b strings.Builder
	writeReport(&b, m, srcs)
	out := b.String()
	for _, s := range []string{
		"2026-11-22 01:00 UTC (the run took 6m0s); nproc 2, AMD EPYC, Linux 6.18, go1.26.8; load average (1, 5, 15 min) 1.00 2.00 3.00 at the start, 4.00 5.00 6.00 at the end.",
		"| join → reachable | 94.3 | ms | median of 3 |",
		"| " + figure.LeavePurged + " | – | | missing: its step failed",
		"| " + figure.SimGossipConvergence + " | – | | missing: sim has no value for it at its largest size",
		"| " + figure.SimStatePropagation + " | 3.40 | s |",
		"| **Other figures** | | | |\n| something new | 1.00 | s |  |",
		"- sim.json: 6 figures, 6 of them sim's rows",
	} {
		if !strings.Contains(out, s) {
			t.Errorf("the report lacks %q:\n%s", s, out)
		}
	}
	// sim's other rows stay in its own output, and a fit sim did not make
	// is not a missing row.
	for _, s := range []string{"snapshot size", figure.SimFit(figure.SimGossip99)} {
		if strings.Contains(out, s) {
			t.Errorf("the report shows %q:\n%s", s, out)
		}
	}
}

func TestValue(t *testing.T) {
	for _, c := range []struct {
		f    figure.Figure
		want string
	}{
		{figure.Figure{Value: 0.984, Unit: figure.UnitRatio}, "0.98"},
		{figure.Figure{Value: 47.71, Unit: figure.UnitMillis}, "47.7"},
		{figure.Figure{Value: 867.9, Unit: figure.UnitMillis}, "868"},
		{figure.Figure{Value: 38220.4, Unit: figure.UnitQPS}, "38,220"},
		{figure.Figure{Value: 999.6, Unit: figure.UnitQPS}, "1,000"},
		{figure.Figure{Value: 0.0158, Unit: figure.UnitSeconds}, "0.0158"},
		{figure.Figure{Value: 0, Unit: figure.UnitCore}, "0.00"},
	} {
		if got := value(c.f); got != c.want {
			t.Errorf("value(%v) = %q, want %q", c.f.Value, got, c.want)
		}
	}
}
