package main

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/weft-mesh/weft/policy"
)

// The generated fleet: the shape of policy's BenchmarkCompile10k, written
// as a policy document so that Parse is measured too. 10,000 hosts in 100
// segments (/18 each, one in five with intra deny), each host tagged with
// its segment's role and one of 7 zones, one in ten declaring a service;
// 50 rules: segment to next segment, zone to service, and denies.
const (
	fleetHosts    = 10000
	fleetSegments = 100
	compileRuns   = 5
	compileSelf   = "h00001" // a member of s01, guest of s02 and of its zone's service segments
)

// compileResult holds the medians of compileRuns runs.
type compileResult struct {
	Parse, AllocateFresh, AllocateSteady, Compile time.Duration
	Interfaces, Peers, Rules                      int
}

func fleetDocument() string {
	var s strings.Builder
	for i := range fleetSegments {
		fmt.Fprintf(&s, "segment %q {\n  cidr    = %q\n  port    = %d\n  members = [%q]\n",
			fmt.Sprintf("s%02d", i),
			netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i / 4), byte(i % 4 * 64), 0}), 18).String(),
			40000+i, fmt.Sprintf("tag:role-%d", i))
		if i%5 == 0 {
			s.WriteString("  intra   = \"deny\"\n")
		}
		s.WriteString("}\n\n")
	}
	rule := func(name, action, from, to, ports string) {
		fmt.Fprintf(&s, "rule %q {\n  action = %q\n  from   = [%q]\n  to     = [%q]\n  ports  = [%q]\n}\n\n", name, action, from, to, ports)
	}
	for j := range 30 {
		rule(fmt.Sprintf("seg-%d", j), "allow", fmt.Sprintf("segment:s%02d", j), fmt.Sprintf("segment:s%02d", j+1), "tcp/8000-8100")
	}
	for j := range 10 {
		rule(fmt.Sprintf("svc-%d", j), "allow", fmt.Sprintf("tag:zone-%d", j%7), fmt.Sprintf("service:svc-%d", j), "tcp/5432")
	}
	for j := range 10 {
		rule(fmt.Sprintf("deny-%d", j), "deny", fmt.Sprintf("segment:s%02d", 3*j), fmt.Sprintf("segment:s%02d", 3*j+1), "tcp/8080")
	}
	return s.String()
}

func fleetHostList() []policy.Host {
	hosts := make([]policy.Host, 0, fleetHosts)
	for i := range fleetHosts {
		h := policy.Host{
			Name:     fmt.Sprintf("h%05d", i),
			Tags:     []string{fmt.Sprintf("role-%d", i%100), fmt.Sprintf("zone-%d", i%7)},
			Underlay: netip.AddrFrom4([4]byte{172, 16, byte(i / 256), byte(i % 256)}),
		}
		if i%10 == 0 {
			h.Services = []string{fmt.Sprintf("svc-%d", i/10%20)}
		}
		hosts = append(hosts, h)
	}
	return hosts
}

// measureCompile times Parse, Allocate (from nothing, then again with
// every host keeping its address) and the Compile of one host's plan,
// with every host registered: an address from Allocate and a key in each
// of its segments.
func measureCompile(ctx context.Context) (compileResult, error) {
	var r compileResult
	src := []byte(fleetDocument())
	hosts := fleetHostList()

	var doc *policy.Document
	var err error
	r.Parse, err = median(ctx, func() error {
		doc, err = policy.Parse("fleet.hcl", src)
		return err
	})
	if err != nil {
		return r, err
	}
	var addrs map[string]map[string]netip.Addr
	r.AllocateFresh, err = median(ctx, func() error {
		addrs, err = policy.Allocate(doc, hosts, nil)
		return err
	})
	if err != nil {
		return r, err
	}
	r.AllocateSteady, err = median(ctx, func() error {
		_, err := policy.Allocate(doc, hosts, addrs)
		return err
	})
	if err != nil {
		return r, err
	}

	for i := range hosts {
		hosts[i].Segments = map[string]policy.HostSegment{}
	}
	index := make(map[string]int, len(hosts))
	for i, h := range hosts {
		index[h.Name] = i
	}
	for seg, byHost := range addrs {
		for name, a := range byHost {
			// Compile does not parse keys; any unique string will do.
			hosts[index[name]].Segments[seg] = policy.HostSegment{PublicKey: "key-" + name + "-" + seg, Addr: a}
		}
	}
	var plan *policy.Plan
	r.Compile, err = median(ctx, func() error {
		plan, err = policy.Compile(doc, hosts, compileSelf, 1)
		return err
	})
	if err != nil {
		return r, err
	}
	r.Interfaces, r.Rules = len(plan.Segments), len(plan.Firewall)
	for _, s := range plan.Segments {
		r.Peers += len(s.Peers)
	}
	return r, nil
}

// median runs fn compileRuns times and returns the median duration.
func median(ctx context.Context, fn func() error) (time.Duration, error) {
	var ds []time.Duration
	for range compileRuns {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		start := time.Now()
		if err := fn(); err != nil {
			return 0, err
		}
		ds = append(ds, time.Since(start))
	}
	slices.Sort(ds)
	return ds[len(ds)/2], nil
}
