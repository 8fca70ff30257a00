package main

import (
	"fmt"
	"io"
	"math"
	"runtime"
	"runtime/metrics"
	"slices"
	"sort"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// unit says how a row's values print.
type unit int

const (
	uSeconds unit = iota
	uBytes
	uCount
	uPerSec   // events per second
	uBytesSec // bytes per second
	uRatio    // 0..1, printed as a percentage
)

// row is one metric measured at each fleet size.
type row struct {
	name string
	unit unit
	vals []float64 // one per size; NaN when not measured
	// fit says whether the row is extrapolated to the target size with the
	// power law through its measured points. Rows that are set by
	// configuration constants (timers, intervals) are not.
	fit bool
}

// section is one part of the table, measured at its own fleet sizes.
type section struct {
	title string
	sizes []int
	rows  []*row
}

// report collects every figure of a run and prints one table.
type report struct {
	target   int
	sections []*section
	notes    []string
}

// addSection declares a part of the table and the sizes it is measured at.
func (r *report) addSection(title string, sizes []int) {
	r.sections = append(r.sections, &section{title: title, sizes: sizes})
}

func (r *report) section(title string) *section {
	for _, s := range r.sections {
		if s.title == title {
			return s
		}
	}
	panic("sim: no section " + title)
}

// set records the value of a metric at fleet size n.
func (r *report) set(sec, name string, u unit, fit bool, n int, v float64) {
	s := r.section(sec)
	i := slices.Index(s.sizes, n)
	if i < 0 {
		panic(fmt.Sprintf("sim: section %q has no size %d", sec, n))
	}
	for _, rw := range s.rows {
		if rw.name == name {
			rw.vals[i] = v
			return
		}
	}
	rw := &row{name: name, unit: u, fit: fit, vals: make([]float64, len(s.sizes))}
	for k := range rw.vals {
		rw.vals[k] = math.NaN()
	}
	rw.vals[i] = v
	s.rows = append(s.rows, rw)
}

func (r *report) note(format string, args ...any) {
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

// fitPower fits y = a·N^b by least squares in log-log space over the
// measured positive points and returns b and the value at target.
func fitPower(sizes []int, vals []float64, target int) (b, at float64, ok bool) {
	var xs, ys []float64
	for i, v := range vals {
		if v > 0 && !math.IsNaN(v) && !math.IsInf(v, 0) {
			xs = append(xs, math.Log(float64(sizes[i])))
			ys = append(ys, math.Log(v))
		}
	}
	if len(xs) < 2 {
		return 0, 0, false
	}
	var mx, my float64
	for i := range xs {
		mx += xs[i]
		my += ys[i]
	}
	mx /= float64(len(xs))
	my /= float64(len(ys))
	var sxy, sxx float64
	for i := range xs {
		sxy += (xs[i] - mx) * (ys[i] - my)
		sxx += (xs[i] - mx) * (xs[i] - mx)
	}
	if sxx == 0 {
		return 0, 0, false
	}
	b = sxy / sxx
	a := my - b*mx
	return b, math.Exp(a + b*math.Log(float64(target))), true
}

func (r *report) write(w io.Writer) {
	for _, s := range r.sections {
		if len(s.rows) == 0 {
			continue
		}
		fmt.Fprintf(w, "\n== %s\n", s.title)
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		header := []string{"metric"}
		for _, n := range s.sizes {
			header = append(header, fmt.Sprintf("N=%d", n))
		}
		header = append(header, "~N^b", fmt.Sprintf("N=%d (fit)", r.target))
		fmt.Fprintln(tw, strings.Join(header, "\t")+"\t")
		for _, rw := range s.rows {
			cells := []string{rw.name}
			for _, v := range rw.vals {
				cells = append(cells, format(rw.unit, v))
			}
			if b, at, ok := fitPower(s.sizes, rw.vals, r.target); ok && rw.fit {
				cells = append(cells, fmt.Sprintf("%.2f", b), format(rw.unit, at))
			} else {
				cells = append(cells, "", "")
			}
			fmt.Fprintln(tw, strings.Join(cells, "\t")+"\t")
		}
		tw.Flush()
	}
	if len(r.notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range r.notes {
			fmt.Fprintln(w, "- "+n)
		}
	}
}

func format(u unit, v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	switch u {
	case uSeconds:
		return fmtSeconds(v)
	case uBytes:
		return fmtBytes(v)
	case uBytesSec:
		return fmtBytes(v) + "/s"
	case uPerSec:
		return fmt.Sprintf("%.0f/s", v)
	case uRatio:
		return fmt.Sprintf("%.1f%%", 100*v)
	}
	if v != math.Trunc(v) && math.Abs(v) < 100 {
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.0f", v)
}

func fmtSeconds(v float64) string {
	switch {
	case v < 0.001:
		return fmt.Sprintf("%.0fµs", v*1e6)
	case v < 1:
		return fmt.Sprintf("%.1fms", v*1e3)
	case v < 600:
		return fmt.Sprintf("%.2fs", v)
	}
	return fmt.Sprintf("%.1fmin", v/60)
}

func fmtBytes(v float64) string {
	switch {
	case v < 1e3:
		return fmt.Sprintf("%.0fB", v)
	case v < 1e6:
		return fmt.Sprintf("%.1fKB", v/1e3)
	case v < 1e9:
		return fmt.Sprintf("%.1fMB", v/1e6)
	}
	return fmt.Sprintf("%.1fGB", v/1e9)
}

// cpuTime is the CPU (user+system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// liveHeap runs a GC and returns the bytes of the objects it found live.
// MemStats.HeapAlloc is not used: right after runtime.GC() it can still
// count much that the collection has freed (seen with hundreds of busy
// memberlists), while the live-heap metric is what the mark found.
func liveHeap() uint64 {
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// quantile returns the q-quantile of ds (which it sorts), 0 when empty.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	k := int(math.Ceil(q*float64(len(ds)))) - 1
	return ds[max(0, min(k, len(ds)-1))]
}

// waitFor polls cond every 10ms until it holds or limit passes; it reports
// whether cond held.
func waitFor(limit time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}
