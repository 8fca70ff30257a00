package main

import (
	"strings"
	"testing"
	"text/tabwriter"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/weft-mesh/weft/bench/figure"
)

// simTable lays out rows the way sim does: tabwriter, right-aligned,
// padding 2, a "== title" line and a header per section.
func simTable(t *testing.T, sections map[string][][]string, order []string) string {
	t.Helper()
	var b strings.Builder
	b.WriteString("weft scale simulation — 2026-11-22, go1.26.8, GOMAXPROCS=2, 3 Raft servers, run took 300s\n")
	b.WriteString("Host load average (1 min) at start 9.1, at end 8.2: other processes share these cores too.\n")
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	for _, title := range order {
		rows := sections[title]
		tw.Write([]byte("\n== " + title + "\t" + strings.Repeat("\t", len(rows[0])-1) + "\n"))
		for _, r := range rows {
			tw.Write([]byte(strings.Join(r, "\t") + "\t\n"))
		}
	}
	if err := tw.Flush(); err != nil {
		t.Fatal(err)
	}
	b.WriteString("\n- N=400: gossip views were not complete within 1m0s (399/400 agents with a full view)\n")
	return b.String()
}

func TestParseSim(t *testing.T) {
	text := simTable(t, map[string][][]string{
		"1. gossip": {
			{"metric", "N=100", "N=200", "N=400", "~N^b", "N=10000 (fit)"},
			{"join calls (8 at a time, 3 seeds) done", "474ms", "1.94s", "4.10s", "1.05", "1.8min"},
			{"all N see all N alive (from first join)", "3.69s", "7.80s", "16.02s", "1.06", "8.2min"},
			{"  … after the last join returned", "3.2s", "5.9s", "12.0s", "", ""},
			{"one meta update seen by all (last)", "1.10s", "1.45s", "-", "", ""},
		},
		"2. raft": {
			{"metric", "N=250", "N=500", "N=1000", "~N^b", "N=10000 (fit)"},
			{"  all N clients have it (last served + decode)", "12.0ms", "30.5ms", "80µs", "1.20", "1.0s"},
		},
		"3. plan": {
			{"metric", "N=250", "N=500", "N=1000", "~N^b", "N=10000 (fit)"},
			{"  all N clients have it (again)", "1s", "2s", "3s", "1.00", "30s"},
		},
	}, []string{"1. gossip", "2. raft", "3. plan"})

	p, err := parseSim(text)
	if err != nil {
		t.Fatal(err)
	}
	got, notes := p.figures, p.notes
	want := figure.List{
		{Name: figure.SimGossipConvergence, Value: 16.02, Unit: figure.UnitSeconds},
		{Name: figure.SimFit(figure.SimGossipConvergence), Value: 8.2 * 60, Unit: figure.UnitSeconds},
		{Name: figure.SimStatePropagation, Value: 80e-6, Unit: figure.UnitSeconds},
		{Name: figure.SimFit(figure.SimStatePropagation), Value: 1, Unit: figure.UnitSeconds},
	}
	if d := cmp.Diff(want, got, cmpopts.IgnoreFields(figure.Figure{}, "Note"), cmpopts.EquateApprox(1e-9, 0)); d != "" {
		t.Errorf("figures (-want +got):\n%s\n%s", d, text)
	}
	if len(got) > 0 && !strings.Contains(got[0].Note, "at N=400") {
		t.Errorf("gossip note %q: want the size", got[0].Note)
	}
	if len(got) > 1 && !strings.HasSuffix(got[1].Note, "at N=10000") {
		t.Errorf("gossip fit note %q: want the size it is fitted to", got[1].Note)
	}
	// The meta update was not measured at the largest size: no figure,
	// but why; and sim's header and notes are kept.
	if why := p.missing[figure.SimMetaPropagation]; !strings.Contains(why, `"-" at N=400`) {
		t.Errorf("why the meta update is missing: %q", why)
	}
	joined := strings.Join(notes, "\n")
	for _, s := range []string{"run took 300s", "sim: N=400: gossip views were not complete"} {
		if !strings.Contains(joined, s) {
			t.Errorf("notes lack %q:\n%s", s, joined)
		}
	}
}

func TestFitBeyond(t *testing.T) {
	for fitN, want := range map[string]bool{"N=10000": true, "N=1000": false, "N=500": false, "": false} {
		r := simRow{sizes: []int{250, 500, 1000}, fitN: fitN}
		if got := fitBeyond(r); got != want {
			t.Errorf("fitBeyond(sizes 250..1000, fit at %q) = %v, want %v", fitN, got, want)
		}
	}
}

func TestParseSimNotATable(t *testing.T) {
	if _, err := parseSim("bench/dns: cannot run\n"); err == nil {
		t.Error("parseSim of a non-table: want an error")
	}
}

func TestParseSeconds(t *testing.T) {
	for in, want := range map[string]float64{"12µs": 12e-6, "3.4ms": 3.4e-3, "1.23s": 1.23, "1.5min": 90} {
		got, err := parseSeconds(in)
		if err != nil || cmp.Diff(want, got, cmpopts.EquateApprox(1e-12, 0)) != "" {
			t.Errorf("parseSeconds(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"-", "12", "1.2KB", "s"} {
		if _, err := parseSeconds(in); err == nil {
			t.Errorf("parseSeconds(%q): want an error", in)
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
	} {
		if got := value(c.f); got != c.want {
			t.Errorf("value(%v) = %q, want %q", c.f.Value, got, c.want)
		}
	}
}
