package config

import (
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// Diagnostic is one problem found in the configuration.
type Diagnostic struct {
	// Filename is the file (or directory) the problem is in; empty when the
	// problem is not in a file, such as a default or a Runtime built in code.
	Filename string
	// Line and Column are 1-based; 0 when only the file is known.
	Line, Column int
	Summary      string
	Detail       string // optional
}

// String formats the diagnostic as "file:line:col: summary: detail",
// leaving out the parts that are not known.
func (d Diagnostic) String() string {
	var b strings.Builder
	if d.Filename != "" {
		b.WriteString(d.Filename)
		if d.Line > 0 {
			b.WriteString(":" + strconv.Itoa(d.Line) + ":" + strconv.Itoa(d.Column))
		}
		b.WriteString(": ")
	}
	b.WriteString(d.Summary)
	if d.Detail != "" {
		b.WriteString(": " + d.Detail)
	}
	// One problem per line, whatever hcl put in a detail.
	return oneLine.Replace(b.String())
}

var oneLine = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ")

// Diagnostics is every problem found by Load or Validate. It is the error
// they return; use errors.As to get at the individual problems.
type Diagnostics []Diagnostic

// Error returns one line per problem.
func (ds Diagnostics) Error() string {
	lines := make([]string, len(ds))
	for i, d := range ds {
		lines[i] = d.String()
	}
	return strings.Join(lines, "\n")
}

// err returns ds as an error, or nil (not a typed nil) when there is none.
func (ds Diagnostics) err() error {
	if len(ds) == 0 {
		return nil
	}
	return ds
}

func newDiagnostic(rng *hcl.Range, summary, detail string) Diagnostic {
	d := Diagnostic{Summary: summary, Detail: detail}
	if rng != nil {
		d.Filename, d.Line, d.Column = rng.Filename, rng.Start.Line, rng.Start.Column
	}
	return d
}

// fromHCL keeps hcl's errors (with their "Did you mean" hints) and drops its
// warnings, which none of the constructs in the file model produce.
func fromHCL(diags hcl.Diagnostics) Diagnostics {
	var out Diagnostics
	for _, d := range diags {
		if d.Severity != hcl.DiagError {
			continue
		}
		rng := d.Subject
		if rng == nil {
			rng = d.Context
		}
		out = append(out, newDiagnostic(rng, d.Summary, d.Detail))
	}
	return out
}
