package main

import (
	"strings"

	"github.com/weft-mesh/weft/bench/figure"
)

// simPrefix starts the name of every figure sim writes (sim -json): one
// per row of its table, "sim: <row>" or "sim: <parent> › <row>", at the
// largest fleet size of the row's section, and a fitted row's value at
// sim's -target as figure.SimFit(name).
const simPrefix = "sim: "

// simRows are the rows of sim the table shows. sim is young and its rows
// get reworded, so a row is found by any of a few parts of its name, the
// first that matches.
var simRows = []struct {
	name  string   // in the table (package figure)
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

// isSim says whether a figure is one of sim's rows.
func isSim(f figure.Figure) bool { return strings.HasPrefix(f.Name, simPrefix) }

// selectSim returns, under the table's names, sim's figures that the
// table shows, and each one's fit where sim wrote one.
func selectSim(fs []figure.Figure) figure.List {
	var rows []figure.Figure
	fits := map[string]figure.Figure{}
	for _, f := range fs {
		if !isSim(f) {
			continue
		}
		if base, ok := strings.CutSuffix(f.Name, figure.SimFit("")); ok {
			fits[base] = f
			continue
		}
		rows = append(rows, f)
	}
	var l figure.List
	for _, want := range simRows {
		f, ok := findSim(rows, want.match)
		if !ok {
			continue
		}
		l.Add(want.name, f.Value, f.Unit, want.what+"; "+f.Note)
		if fit, ok := fits[f.Name]; ok {
			l.Add(figure.SimFit(want.name), fit.Value, fit.Unit, "sim's "+fit.Note)
		}
	}
	return l
}

// findSim is the first figure whose name contains the first of match that
// any figure's name does.
func findSim(fs []figure.Figure, match []string) (figure.Figure, bool) {
	for _, m := range match {
		for _, f := range fs {
			if strings.Contains(strings.TrimPrefix(f.Name, simPrefix), m) {
				return f, true
			}
		}
	}
	return figure.Figure{}, false
}
