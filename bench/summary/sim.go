package main

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/weft-mesh/weft/bench/figure"
)

// sim has no machine-readable output (yet): its -out file is the table it
// prints, a tabwriter table per section,
//
//	== 1. gossip (...)
//	metric  N=100  N=200  N=400  ~N^b  N=10000 (fit)
//	all N see all N alive (from first join)  3.69s  7.80s  16.02s  1.07  8.2min
//
// with right-aligned cells at least two spaces apart, "-" for a value not
// measured and nothing in the last two cells of a row that is not fitted.
// sim is young and its rows get reworded, so a row is found by any of a
// few parts of its name, the first that matches.
var simRows = []struct {
	name  string   // in the summary (package figure)
	match []string // parts of sim's row name
	what  string
}{
	{figure.SimGossipConvergence, []string{"every agent sees all N alive", "all N see all N alive"},
		"memberlist, from the first join until every agent sees all N alive"},
	{figure.SimGossip99, []string{"views 99% complete"},
		"memberlist, from the first join until 99% of all the agents' views are complete"},
	{figure.SimMetaPropagation, []string{"one meta update seen by all (last)"},
		"one agent's gossip meta (its policy version) until the last agent sees it"},
	{figure.SimStatePropagation, []string{"all N clients have it"},
		"one Raft write until every long-polling client has decoded the new state"},
}

// simRow is one row of sim's table.
type simRow struct {
	name    string
	section string
	sizes   []int
	vals    []string // one per size
	exp     string   // the fit's exponent; "" when not fitted
	fitN    string   // "N=10000"
	fit     string   // the fitted value there
}

var (
	sizeCell  = regexp.MustCompile(`^N=(\d+)$`)
	cellBreak = regexp.MustCompile(` {2,}`)
)

// simParsed is what the summary takes from sim's table.
type simParsed struct {
	figures figure.List
	notes   []string          // sim's header and notes
	missing map[string]string // figure name → why it is missing
}

// parseSim returns the figures of simRows at the largest fleet size of
// their section, and what sim says about the run.
func parseSim(text string) (simParsed, error) {
	var notes []string
	missing := map[string]string{}
	var rows []simRow // in table order
	var section string
	var sizes []int
	var fitN string
	lines := strings.Split(text, "\n")
	for i, line := range lines {
		t := strings.TrimSpace(line)
		if i < 2 && t != "" && !strings.HasPrefix(t, "==") {
			notes = append(notes, "sim: "+t)
			continue
		}
		if n, ok := strings.CutPrefix(t, "- "); ok { // sim's notes, after the table
			notes = append(notes, "sim: "+n)
			continue
		}
		cells := splitCells(t)
		switch {
		case len(cells) == 0:
		case strings.HasPrefix(cells[0], "== "):
			section, sizes, fitN = strings.TrimPrefix(cells[0], "== "), nil, ""
		case cells[0] == "metric":
			sizes, fitN = nil, ""
			for _, c := range cells[1:] {
				if m := sizeCell.FindStringSubmatch(c); m != nil {
					n, _ := strconv.Atoi(m[1])
					sizes = append(sizes, n)
				} else if n, ok := strings.CutSuffix(c, " (fit)"); ok {
					fitN = n
				}
			}
		case len(sizes) > 0 && len(cells) > len(sizes):
			r := simRow{name: cells[0], section: section, sizes: sizes, vals: cells[1 : 1+len(sizes)], fitN: fitN}
			if rest := cells[1+len(sizes):]; len(rest) == 2 {
				r.exp, r.fit = rest[0], rest[1]
			}
			rows = append(rows, r)
		}
	}
	if len(rows) == 0 {
		return simParsed{}, errors.New("neither figures (JSON) nor a table of sim's")
	}

	var l figure.List
	for _, want := range simRows {
		// A row that is not there was not run (sim -phases): the table
		// shows it missing.
		r, ok := findRow(rows, want.match)
		if !ok {
			continue
		}
		name := r.name
		last := len(r.sizes) - 1
		var at []string
		for k, n := range r.sizes {
			at = append(at, fmt.Sprintf("N=%d: %s", n, r.vals[k]))
		}
		note := fmt.Sprintf("%s; at N=%d (%s)", want.what, r.sizes[last], strings.Join(at, ", "))
		if v, err := parseSeconds(r.vals[last]); err == nil {
			l.Add(want.name, v, figure.UnitSeconds, note)
		} else {
			missing[want.name] = fmt.Sprintf("sim's %q is %q at N=%d, its largest (%s)", name, r.vals[last], r.sizes[last], strings.Join(at, ", "))
		}
		// A fit is worth a row only beyond the sizes measured.
		if v, err := parseSeconds(r.fit); err == nil && fitBeyond(r) {
			l.Add(figure.SimFit(want.name), v, figure.UnitSeconds,
				fmt.Sprintf("sim's power-law fit ~N^%s through %s, at %s", r.exp, strings.Join(at, ", "), r.fitN))
		}
	}
	return simParsed{figures: l, notes: notes, missing: missing}, nil
}

// splitCells splits a table line at runs of two or more spaces.
func splitCells(line string) []string {
	var cells []string
	for _, c := range cellBreak.Split(line, -1) {
		if c = strings.TrimSpace(c); c != "" {
			cells = append(cells, c)
		}
	}
	return cells
}

// findRow is the first row whose name contains the first of match that
// any row's does.
func findRow(rows []simRow, match []string) (simRow, bool) {
	for _, m := range match {
		for _, r := range rows {
			if strings.Contains(r.name, m) {
				return r, true
			}
		}
	}
	return simRow{}, false
}

// fitBeyond says whether the row's fit is for a size larger than any it
// was measured at.
func fitBeyond(r simRow) bool {
	n, err := strconv.Atoi(strings.TrimPrefix(r.fitN, "N="))
	return err == nil && len(r.sizes) > 0 && n > r.sizes[len(r.sizes)-1]
}

// parseSeconds reads sim's times: 12µs, 3.4ms, 1.23s, 1.5min.
func parseSeconds(s string) (float64, error) {
	for _, u := range []struct {
		suffix string
		scale  float64
	}{{"µs", 1e-6}, {"ms", 1e-3}, {"min", 60}, {"s", 1}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseFloat(n, 64)
			if err != nil {
				return 0, err
			}
			return v * u.scale, nil
		}
	}
	return 0, fmt.Errorf("%q: not a time", s)
}
