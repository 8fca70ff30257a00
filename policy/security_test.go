package policy

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
)

// TestInvariantOverlayAddressHasOneOwner: over random fleets and policies,
// allocated with IPAM and compiled for every host, an overlay address is
// never in the allowed IPs of two different peers. Per segment, every
// plan of the fleet that lists a peer with an address agrees on which host
// that address is, no peer owns the plan's own address, and each peer
// holds exactly its own single address. It holds again after the fleet
// changes and IPAM runs from the previous allocation, as the servers do.
func TestInvariantOverlayAddressHasOneOwner(t *testing.T) {
	n := 400
	if testing.Short() {
		n = 50
	}
	checked, peers := 0, 0
	for seed := range uint64(n) {
		rng := rand.New(rand.NewPCG(seed, seed*0x9e3779b97f4a7c15+1))
		d, hosts := randomFleet(rng)
		shrinkSegments(rng, d)
		current := randomCurrent(rng, d, hosts)
		hosts, ok := allocate(t, d, hosts, current, rng)
		if !ok {
			continue
		}
		peers += checkOneOwner(t, seed, d, hosts)
		checked++

		// The fleet changes: a host goes, another comes, one changes tags;
		// IPAM runs from what was allocated.
		prev := allocation(hosts)
		next := slices.Clone(hosts)
		if len(next) > 2 {
			i := rng.IntN(len(next))
			next = slices.Delete(next, i, i+1)
		}
		next = append(next, Host{Name: fmt.Sprintf("h%d", 100+seed%7), Tags: []string{"t0", "t1", "t2", "t3"}[:1+rng.IntN(4)], Underlay: netip.MustParseAddr("192.168.1.1")})
		j := rng.IntN(len(next))
		next[j].Tags = []string{[]string{"t0", "t1", "t2", "t3"}[rng.IntN(4)]}
		next, ok = allocate(t, d, next, prev, rng)
		if !ok {
			continue
		}
		peers += checkOneOwner(t, seed, d, next)
		for _, h := range next {
			for seg, hs := range h.Segments {
				if old, had := prev[seg][h.Name]; had && hs.Addr.IsValid() && old != hs.Addr {
					t.Errorf("seed %d: %s moved from %s to %s in %s although it stayed assigned", seed, h.Name, old, hs.Addr, seg)
				}
			}
		}
	}
	if checked < n/2 || peers < 4*n {
		t.Fatalf("only %d of %d random fleets could be allocated, with %d peers in all: the generator is too tight to prove anything", checked, n, peers)
	}
	t.Logf("%d fleets, %d peer entries checked", checked, peers)
}

// shrinkSegments makes some segments tiny (IPv4 /29 and /30, IPv6 /125
// and /126), where a collision would show first; CIDRs stay disjoint.
func shrinkSegments(rng *rand.Rand, d *Document) {
	for i := range d.Segments {
		switch rng.IntN(4) {
		case 0:
			d.Segments[i].CIDR = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i + 1), 0, 0}), 29+rng.IntN(2))
		case 1:
			d.Segments[i].CIDR = netip.PrefixFrom(netip.AddrFrom16([16]byte{0xfd, 0, 0, 0, 0, 0, 0, byte(i + 1)}), 125+rng.IntN(2))
		}
	}
}

// randomCurrent is a messy previous allocation: some hosts with addresses
// in their segment, some sharing one, some with the network, broadcast or
// an outside address, some for segments they are not in.
func randomCurrent(rng *rand.Rand, d *Document, hosts []Host) map[string]map[string]netip.Addr {
	cur := map[string]map[string]netip.Addr{}
	for _, s := range d.Segments {
		cur[s.Name] = map[string]netip.Addr{}
		base := s.CIDR.Addr()
		for _, h := range hosts {
			if rng.IntN(2) == 0 {
				continue
			}
			a := base
			for range rng.IntN(8) {
				a = a.Next()
			}
			if rng.IntN(10) == 0 {
				a = netip.MustParseAddr("172.31.0.1")
			}
			cur[s.Name][h.Name] = a
		}
	}
	return cur
}

// allocate runs IPAM and registers the result with a key per host and
// segment (some hosts have not registered theirs yet). It reports false
// when a segment is too small for its hosts.
func allocate(t *testing.T, d *Document, hosts []Host, current map[string]map[string]netip.Addr, rng *rand.Rand) ([]Host, bool) {
	t.Helper()
	addrs, err := Allocate(d, hosts, current)
	if errors.Is(err, ErrExhausted) {
		return nil, false
	}
	if err != nil {
		t.Fatalf("Allocate: %v", err)
	}
	out := slices.Clone(hosts)
	for i := range out {
		out[i].Segments = map[string]HostSegment{}
		for _, s := range d.Segments { // in order: the rng draws stay reproducible
			seg := s.Name
			a, ok := addrs[seg][out[i].Name]
			if !ok {
				continue
			}
			key := testKey(out[i].Name, seg)
			if rng.IntN(8) == 0 {
				key = "" // not registered yet
			}
			out[i].Segments[seg] = HostSegment{PublicKey: key, Addr: a}
		}
	}
	return out, true
}

func allocation(hosts []Host) map[string]map[string]netip.Addr {
	out := map[string]map[string]netip.Addr{}
	for _, h := range hosts {
		for seg, hs := range h.Segments {
			if out[seg] == nil {
				out[seg] = map[string]netip.Addr{}
			}
			out[seg][h.Name] = hs.Addr
		}
	}
	return out
}

// checkOneOwner compiles every host's plan and checks that, per segment,
// each address belongs to one host across the whole fleet. It returns the
// number of peer entries it checked.
func checkOneOwner(t *testing.T, seed uint64, d *Document, hosts []Host) int {
	t.Helper()
	n := 0
	owner := map[string]map[netip.Addr]string{} // segment → address → host
	claim := func(seg string, a netip.Addr, host, where string) {
		if owner[seg] == nil {
			owner[seg] = map[netip.Addr]string{}
		}
		if prev, ok := owner[seg][a]; ok && prev != host {
			t.Fatalf("seed %d: in segment %s, %s is %s's and also %s's (%s)\npolicy: %+v", seed, seg, a, prev, host, where, d)
		}
		owner[seg][a] = host
	}
	for _, h := range hosts {
		p, err := Compile(d, hosts, h.Name, 1)
		if err != nil {
			t.Fatalf("seed %d: Compile(%s): %v", seed, h.Name, err)
		}
		inPlan := map[netip.Addr]string{} // address → interface, across this plan
		for _, sp := range p.Segments {
			self := sp.Address.Addr()
			claim(sp.Name, self, h.Name, "its own address")
			if !sp.CIDR.Contains(self) {
				t.Fatalf("seed %d: %s's address %s in %s is outside %s", seed, h.Name, self, sp.Name, sp.CIDR)
			}
			for _, peer := range sp.Peers {
				if peer.Name == h.Name {
					t.Fatalf("seed %d: %s is its own peer in %s", seed, h.Name, sp.Name)
				}
				if len(peer.AllowedIPs) != 1 || !peer.AllowedIPs[0].IsSingleIP() {
					t.Fatalf("seed %d: %s's peer %s in %s has allowed IPs %v, want its one address", seed, h.Name, peer.Name, sp.Name, peer.AllowedIPs)
				}
				a := peer.AllowedIPs[0].Addr()
				if a == self || !sp.CIDR.Contains(a) {
					t.Fatalf("seed %d: %s's peer %s in %s is allowed %s (self %s, cidr %s)", seed, h.Name, peer.Name, sp.Name, a, self, sp.CIDR)
				}
				if iface, dup := inPlan[a]; dup {
					t.Fatalf("seed %d: %s lists %s twice (%s and %s)", seed, h.Name, a, iface, sp.Interface)
				}
				inPlan[a] = sp.Interface
				claim(sp.Name, a, peer.Name, fmt.Sprintf("a peer in %s's plan", h.Name))
				n++
			}
		}
	}
	return n
}
