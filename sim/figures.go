package main

import (
	"fmt"
	"math"
	"strings"

	"github.com/weft-mesh/weft/bench/figure"
)

// figures is every row of the report as figures (-json; package
// bench/figure), for bench/summary: each row's value at the largest fleet
// size of its section, named "sim: " and the row's name (an indented row
// after its parent's, "parent › row"), and, for a fitted row, the fit at
// the target size when that is beyond the sizes measured. A row with no
// value at the largest size is left out: the table and its notes say why.
func (r *report) figures() figure.List {
	var l figure.List
	for _, s := range r.sections {
		if len(s.sizes) == 0 {
			continue
		}
		last := len(s.sizes) - 1
		parent := ""
		for _, rw := range s.rows {
			name := strings.TrimSpace(rw.name)
			if name != rw.name && parent != "" {
				name = parent + " › " + name
			} else {
				parent = name
			}
			name = "sim: " + name
			var at []string
			for i, n := range s.sizes {
				at = append(at, fmt.Sprintf("N=%d: %s", n, format(rw.unit, rw.vals[i])))
			}
			measured := strings.Join(at, ", ")
			scale, unit := figureUnit(rw.unit)
			if v := rw.vals[last]; !math.IsNaN(v) {
				l.Add(name, v*scale, unit, fmt.Sprintf("at N=%d (%s)", s.sizes[last], measured))
			}
			if b, v, ok := fitPower(s.sizes, rw.vals, r.target); ok && rw.fit && r.target > s.sizes[last] {
				l.Add(figure.SimFit(name), v*scale, unit,
					fmt.Sprintf("power-law fit ~N^%.2f through %s, at N=%d", b, measured, r.target))
			}
		}
	}
	return l
}

// figureUnit is how a row's values are written as figures: the factor and
// the unit.
func figureUnit(u unit) (float64, string) {
	switch u {
	case uSeconds:
		return 1, figure.UnitSeconds
	case uBytes:
		return 1, "B"
	case uBytesSec:
		return 1, "B/s"
	case uPerSec:
		return 1, "/s"
	case uRatio:
		return 100, "%"
	}
	return 1, ""
}
