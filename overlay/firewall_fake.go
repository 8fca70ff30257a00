package overlay

import (
	"maps"
	"slices"
	"sync"

	"github.com/weft-mesh/weft/policy"
)

// FakeFirewall is an in-memory Firewall for tests: it validates a ruleset
// as the nftables one does, records the last one applied, and reports
// the counters and denied sources a test sets. Like the nftables table,
// it forgets the denied sources when a ruleset is applied or removed.
type FakeFirewall struct {
	mu       sync.Mutex
	present  bool
	rules    []policy.FirewallRule
	ifaces   []string
	counters map[string]Counter
	denied   []DeniedSource
	calls    FirewallCalls
	err      error
}

// FirewallCalls counts the calls made to a FakeFirewall.
type FirewallCalls struct {
	Apply, Counters, DeniedSources, Remove int
}

// NewFakeFirewall returns a FakeFirewall with no table.
func NewFakeFirewall() *FakeFirewall {
	return &FakeFirewall{counters: map[string]Counter{}}
}

// SetError makes Apply and Remove fail with err until set again with nil.
func (f *FakeFirewall) SetError(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.err = err
}

// SetCounter sets the value Counters reports for a counter name.
func (f *FakeFirewall) SetCounter(name string, c Counter) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.counters[name] = c
}

// SetDenied sets what DeniedSources reports while a table exists, until
// the next Apply or Remove.
func (f *FakeFirewall) SetDenied(ds []DeniedSource) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.denied = slices.Clone(ds)
}

// Calls returns the call counts so far.
func (f *FakeFirewall) Calls() FirewallCalls {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls
}

// Reset forgets the call counts, not the table.
func (f *FakeFirewall) Reset() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = FirewallCalls{}
}

// Ruleset returns the last applied rules and interfaces, and whether a
// table exists.
func (f *FakeFirewall) Ruleset() (rules []policy.FirewallRule, ifaces []string, present bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return cloneRules(f.rules), slices.Clone(f.ifaces), f.present
}

func (f *FakeFirewall) Apply(rules []policy.FirewallRule, ifaces []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls.Apply++
	if f.err != nil {
		return f.err
	}
	if _, err := buildRuleset(rules, ifaces); err != nil {
		return err
	}
	f.present = true
	f.rules = cloneRules(rules)
	f.ifaces = slices.Clone(ifaces)
	f.denied = nil
	return nil
}

// Counters reports one counter per distinct rule counter plus
// DefaultDenyCounter, with the values set by SetCounter.
func (f *FakeFirewall) Counters() (map[string]Counter, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls.Counters++
	out := map[string]Counter{}
	if !f.present {
		return out, nil
	}
	out[DefaultDenyCounter] = f.counters[DefaultDenyCounter]
	for _, r := range f.rules {
		out[r.Counter] = f.counters[r.Counter]
	}
	return maps.Clone(out), nil
}

// DeniedSources reports the sources set by SetDenied, most packets first.
func (f *FakeFirewall) DeniedSources() ([]DeniedSource, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls.DeniedSources++
	if !f.present {
		return nil, nil
	}
	out := slices.Clone(f.denied)
	sortDenied(out)
	return out, nil
}

func (f *FakeFirewall) Remove() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls.Remove++
	if f.err != nil {
		return f.err
	}
	f.present, f.rules, f.ifaces, f.denied = false, nil, nil, nil
	return nil
}

var _ Firewall = (*FakeFirewall)(nil)
