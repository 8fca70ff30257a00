// Package figure is the machine-readable form of the benchmark programs'
// results: each writes, with -json FILE, a JSON list of figures, and
// bench/summary reads those lists into one table. It owns only that
// format; it measures nothing and prints no tables.
package figure

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
)

// A Figure is one measured value. Name is what bench/summary looks it up
// by, so a program keeps a figure's name once chosen; Note says how it was
// measured (a median of what, a range) for people.
type Figure struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
	Note  string  `json:"note,omitempty"`
}

// List collects the figures of one run, in the order they are added.
type List []Figure

// Add appends a figure. A value that is not a number (a ratio over a zero
// figure) is left out: JSON has no NaN, and a missing figure says more
// than a wrong one.
func (l *List) Add(name string, value float64, unit, note string) {
	if math.IsNaN(value) || math.IsInf(value, 0) {
		return
	}
	*l = append(*l, Figure{Name: name, Value: value, Unit: unit, Note: note})
}

// Write writes the list to file as indented JSON.
func (l List) Write(file string) error {
	if l == nil {
		l = List{} // [] rather than null: the run measured nothing
	}
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(file, append(b, '\n'), 0o644)
}

// Read reads a list written by Write.
func Read(file string) (List, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var l List
	if err := json.Unmarshal(b, &l); err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return l, nil
}
