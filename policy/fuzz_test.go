package policy

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

func FuzzParse(f *testing.F) {
	f.Add([]byte(fleetPolicy))
	f.Add([]byte(seg("web", "10.90.1.5/24", "0") + rule("r", `"allow"`, `["segment:x", "tag:"]`, `[]`, `["tcp/9-3", "icmp/5"]`)))
	f.Add([]byte(`segment "a" { cidr = "fd00::/64" port = 1 members = ["tag:a"] }`))
	f.Add([]byte(`segment "a" {`))
	f.Add([]byte(`rule "r" { ports = ["tcp/1-65535,0"] }`))
	f.Add([]byte("segment \"\xff\" {}"))
	f.Fuzz(func(t *testing.T, src []byte) {
		d, err := Parse("fuzz.hcl", src)
		if err != nil {
			if d != nil {
				t.Fatal("a document with an error")
			}
			if err.Error() == "" {
				t.Fatal("an empty error")
			}
			return
		}
		// Whatever parses must compile.
		hosts := []Host{{Name: "a", Tags: []string{"a", "web"}}, {Name: "b", Tags: []string{"b"}, Services: []string{"postgres"}}}
		if _, err := Allocate(d, hosts, nil); err != nil {
			return // a tiny segment
		}
		if _, err := Compile(d, register(t, d, hosts), "a", 1); err != nil {
			t.Fatalf("Compile: %v", err)
		}
	})
}

// randomFleet builds a small random fleet and a valid document for it.
func randomFleet(rng *rand.Rand) (*Document, []Host) {
	nSeg := 1 + rng.IntN(4)
	nHosts := 2 + rng.IntN(6)
	tags := []string{"t0", "t1", "t2", "t3"}
	services := []string{"svc0", "svc1"}

	d := &Document{}
	var segNames []string
	for i := range nSeg {
		name := fmt.Sprintf("s%d", i)
		segNames = append(segNames, name)
		s := Segment{
			Name:  name,
			CIDR:  netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i + 1), 0, 0}), 24),
			Port:  51820 + i,
			Intra: Allow,
		}
		if rng.IntN(3) == 0 {
			s.Intra = Deny
		}
		for range 1 + rng.IntN(2) {
			s.Members = append(s.Members, randomSelector(rng, nil, tags, services, nHosts))
		}
		d.Segments = append(d.Segments, s)
	}
	for range rng.IntN(7) {
		d.Rules = append(d.Rules, randomRule(rng, len(d.Rules), segNames, tags, services, nHosts))
	}
	var hosts []Host
	for i := range nHosts {
		h := Host{Name: fmt.Sprintf("h%d", i), Underlay: netip.AddrFrom4([4]byte{192, 168, 0, byte(i + 1)})}
		for _, t := range tags {
			if rng.IntN(3) == 0 {
				h.Tags = append(h.Tags, t)
			}
		}
		for _, s := range services {
			if rng.IntN(4) == 0 {
				h.Services = append(h.Services, s)
			}
		}
		hosts = append(hosts, h)
	}
	return d, hosts
}

func randomSelector(rng *rand.Rand, segs, tags, services []string, nHosts int) Selector {
	switch n := rng.IntN(10); {
	case n < 3 && len(segs) > 0:
		return Selector{KindSegment, segs[rng.IntN(len(segs))]}
	case n < 7:
		return Selector{KindTag, tags[rng.IntN(len(tags))]}
	case n < 9:
		return Selector{KindService, services[rng.IntN(len(services))]}
	}
	return Selector{KindNode, fmt.Sprintf("h%d", rng.IntN(nHosts))}
}

var fuzzPorts = []string{"tcp/22", "tcp/80", "tcp/8000-8100", "tcp/8080", "udp/53", "icmp", "any", "tcp", "tcp/5432,80", "udp"}

func randomRule(rng *rand.Rand, n int, segs, tags, services []string, nHosts int) Rule {
	r := Rule{Name: fmt.Sprintf("r%d", n), Action: Allow}
	if rng.IntN(3) == 0 {
		r.Action = Deny
	}
	for range 1 + rng.IntN(2) {
		r.From = append(r.From, randomSelector(rng, segs, tags, services, nHosts))
	}
	for range 1 + rng.IntN(2) {
		r.To = append(r.To, randomSelector(rng, segs, tags, services, nHosts))
	}
	for range 1 + rng.IntN(2) {
		p, err := parsePortSpec(fuzzPorts[rng.IntN(len(fuzzPorts))])
		if err != nil {
			panic(err)
		}
		r.Ports = append(r.Ports, p)
	}
	return r
}

// narrow returns a copy of d with one more deny rule, or one allow rule
// less.
func narrow(rng *rand.Rand, d *Document, hosts []Host) *Document {
	out := &Document{Segments: d.Segments, Rules: slices.Clone(d.Rules)}
	var allows []int
	for i, r := range out.Rules {
		if r.Action == Allow {
			allows = append(allows, i)
		}
	}
	if len(allows) > 0 && rng.IntN(2) == 0 {
		i := allows[rng.IntN(len(allows))]
		out.Rules = slices.Delete(out.Rules, i, i+1)
		return out
	}
	var segs []string
	for _, s := range d.Segments {
		segs = append(segs, s.Name)
	}
	r := randomRule(rng, 100, segs, []string{"t0", "t1", "t2", "t3"}, []string{"svc0", "svc1"}, len(hosts))
	r.Action = Deny
	at := rng.IntN(len(out.Rules) + 1)
	out.Rules = slices.Insert(out.Rules, at, r)
	return out
}

// FuzzMonotonic checks that adding a deny rule or removing an allow rule
// never lets a flow through that was not allowed before, and that the
// compiled plans of both documents agree with Explain.
func FuzzMonotonic(f *testing.F) {
	for _, seed := range []uint64{0, 1, 2, 3, 42, 1234, 99999, 1 << 40} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
		d, hosts := randomFleet(rng)
		d2 := narrow(rng, d, hosts)
		flows := slices.Clone(sampleFlows)
		for range 3 {
			flows = append(flows, struct {
				proto string
				port  uint16
			}{[]string{"tcp", "udp"}[rng.IntN(2)], uint16(1 + rng.IntN(65535))})
		}
		for _, a := range hosts {
			for _, b := range hosts {
				if a.Name == b.Name {
					continue
				}
				for _, fl := range flows {
					before := Explain(d, hosts, a.Name, b.Name, fl.proto, fl.port)
					after := Explain(d2, hosts, a.Name, b.Name, fl.proto, fl.port)
					if after.Allowed && !before.Allowed {
						t.Fatalf("%s->%s %s/%d: allowed after narrowing (%s), not before (%s)\nbefore: %+v\nafter:  %+v",
							a.Name, b.Name, fl.proto, fl.port, after.Reason, before.Reason, d.Rules, d2.Rules)
					}
				}
			}
		}
		checkAgainstExplain(t, d, register(t, d, hosts), flows)
		checkAgainstExplain(t, d2, register(t, d2, hosts), flows)
	})
}

// benchFleet is 10,000 hosts in 100 segments (/18), each host with a role
// tag (its segment) and a zone tag, one in ten declaring a service, and 50
// rules: segment to segment, zone to service, and denies.
func benchFleet(b *testing.B) (*Document, []Host) {
	d := &Document{}
	for i := range 100 {
		s := Segment{
			Name:    fmt.Sprintf("s%02d", i),
			CIDR:    netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i / 4), byte(i % 4 * 64), 0}), 18),
			Port:    40000 + i,
			Members: []Selector{{KindTag, fmt.Sprintf("role-%d", i)}},
			Intra:   Allow,
		}
		if i%5 == 0 {
			s.Intra = Deny
		}
		d.Segments = append(d.Segments, s)
	}
	tcp := func(s string) []PortSpec {
		p, err := parsePortSpec(s)
		if err != nil {
			b.Fatal(err)
		}
		return []PortSpec{p}
	}
	for j := range 30 {
		d.Rules = append(d.Rules, Rule{
			Name: fmt.Sprintf("seg-%d", j), Action: Allow,
			From: []Selector{{KindSegment, fmt.Sprintf("s%02d", j)}}, To: []Selector{{KindSegment, fmt.Sprintf("s%02d", j+1)}},
			Ports: tcp("tcp/8000-8100"),
		})
	}
	for j := range 10 {
		d.Rules = append(d.Rules, Rule{
			Name: fmt.Sprintf("svc-%d", j), Action: Allow,
			From: []Selector{{KindTag, fmt.Sprintf("zone-%d", j%7)}}, To: []Selector{{KindService, fmt.Sprintf("svc-%d", j)}},
			Ports: tcp("tcp/5432"),
		})
	}
	for j := range 10 {
		d.Rules = append(d.Rules, Rule{
			Name: fmt.Sprintf("deny-%d", j), Action: Deny,
			From: []Selector{{KindSegment, fmt.Sprintf("s%02d", 3*j)}}, To: []Selector{{KindSegment, fmt.Sprintf("s%02d", 3*j+1)}},
			Ports: tcp("tcp/8080"),
		})
	}
	var hosts []Host
	for i := range 10000 {
		h := Host{
			Name:     fmt.Sprintf("h%05d", i),
			Tags:     []string{fmt.Sprintf("role-%d", i%100), fmt.Sprintf("zone-%d", i%7)},
			Underlay: netip.AddrFrom4([4]byte{172, 16, byte(i / 256), byte(i % 256)}),
		}
		if i%10 == 0 {
			h.Services = []string{fmt.Sprintf("svc-%d", i/10%20)}
		}
		hosts = append(hosts, h)
	}
	return d, register(b, d, hosts)
}

func BenchmarkCompile10k(b *testing.B) {
	d, hosts := benchFleet(b)
	self := "h00001" // a member of s01, guest of s02 and of the service segments of its zone
	var plan *Plan
	for b.Loop() {
		var err error
		if plan, err = Compile(d, hosts, self, 1); err != nil {
			b.Fatal(err)
		}
	}
	peers := 0
	for _, s := range plan.Segments {
		peers += len(s.Peers)
	}
	b.ReportMetric(float64(len(plan.Segments)), "interfaces")
	b.ReportMetric(float64(peers), "peers")
	b.ReportMetric(float64(len(plan.Firewall)), "rules")
}

func BenchmarkAllocate10k(b *testing.B) {
	d, hosts := benchFleet(b)
	current, err := Allocate(d, hosts, nil)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if _, err := Allocate(d, hosts, current); err != nil {
			b.Fatal(err)
		}
	}
}
