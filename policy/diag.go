package policy

import (
	"cmp"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
)

// Diagnostic is one problem found in a policy document.
type Diagnostic struct {
	// Filename is the file the problem is in; empty when the problem is
	// not in a file.
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

// Diagnostics is every problem Parse found. Parse returns it as a
// *Diagnostics; use errors.As with a **Diagnostics target to get at the
// individual problems. The pointer receiver of Error makes a mistaken
// Diagnostics (value) target panic in errors.As rather than never match.
type Diagnostics []Diagnostic

// Error returns one line per problem.
func (ds *Diagnostics) Error() string {
	lines := make([]string, len(*ds))
	for i, d := range *ds {
		lines[i] = d.String()
	}
	return strings.Join(lines, "\n")
}

// err returns ds sorted by position as an error, or nil (not a typed nil)
// when there is none.
func (ds Diagnostics) err() error {
	if len(ds) == 0 {
		return nil
	}
	slices.SortStableFunc(ds, func(a, b Diagnostic) int {
		return cmp.Or(cmp.Compare(a.Filename, b.Filename), cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
	return &ds
}

func newDiagnostic(rng hcl.Range, summary, detail string) Diagnostic {
	return Diagnostic{Filename: rng.Filename, Line: rng.Start.Line, Column: rng.Start.Column, Summary: summary, Detail: detail}
}

// fromHCL keeps hcl's errors (with their "Did you mean" hints) and drops
// its warnings, which the constructs of a policy document do not produce.
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
		if rng == nil {
			out = append(out, Diagnostic{Summary: d.Summary, Detail: d.Detail})
			continue
		}
		out = append(out, newDiagnostic(*rng, d.Summary, d.Detail))
	}
	return out
}
