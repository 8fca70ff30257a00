package policy

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func ipamDoc(t testing.TB, cidr string) *Document {
	t.Helper()
	return mustParse(t, `
segment "web" {
  cidr    = "`+cidr+`"
  port    = 51821
  members = ["tag:web"]
}
segment "db" {
  cidr    = "10.90.2.0/24"
  port    = 51822
  members = ["tag:db"]
}
rule "web-to-db" {
  action = "allow"
  from   = ["segment:web"]
  to     = ["segment:db"]
  ports  = ["tcp/5432"]
}
`)
}

func tagged(tag string, names ...string) []Host {
	var out []Host
	for _, n := range names {
		out = append(out, Host{Name: n, Tags: []string{tag}})
	}
	return out
}

type addrs = map[string]map[string]netip.Addr

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

func TestAllocate(t *testing.T) {
	d := ipamDoc(t, "10.90.1.0/24")
	tests := []struct {
		name    string
		hosts   []Host
		current addrs
		want    addrs
	}{
		{
			name:  "fresh: lowest first, in name order, guests too",
			hosts: append(tagged("web", "web-2", "web-1"), tagged("db", "db-1")...),
			want: addrs{
				"web": {"web-1": ip("10.90.1.1"), "web-2": ip("10.90.1.2")},
				"db":  {"db-1": ip("10.90.2.1"), "web-1": ip("10.90.2.2"), "web-2": ip("10.90.2.3")},
			},
		},
		{
			name:  "current kept, new host gets the lowest hole",
			hosts: tagged("web", "a", "web-1", "web-2"),
			current: addrs{"web": {
				"web-1": ip("10.90.1.7"),
				"web-2": ip("10.90.1.1"),
			}},
			want: addrs{"web": {"a": ip("10.90.1.2"), "web-1": ip("10.90.1.7"), "web-2": ip("10.90.1.1")}},
		},
		{
			name:  "released: hosts gone or no longer assigned lose theirs",
			hosts: append(tagged("web", "web-1"), tagged("db", "db-1")...),
			current: addrs{
				"web": {"web-1": ip("10.90.1.5"), "web-9": ip("10.90.1.1")},
				"db":  {"web-1": ip("10.90.2.9"), "web-9": ip("10.90.2.1")},
				"old": {"web-1": ip("10.99.0.1")},
			},
			want: addrs{
				"web": {"web-1": ip("10.90.1.5")},
				"db":  {"db-1": ip("10.90.2.1"), "web-1": ip("10.90.2.9")},
			},
		},
		{
			name:  "unusable current addresses are replaced",
			hosts: tagged("web", "net", "bcast", "outside", "v6", "ok"),
			current: addrs{"web": {
				"net":     ip("10.90.1.0"),
				"bcast":   ip("10.90.1.255"),
				"outside": ip("10.90.9.1"),
				"v6":      ip("fd00::1"),
				"ok":      ip("10.90.1.1"),
			}},
			want: addrs{"web": {
				"bcast":   ip("10.90.1.2"),
				"net":     ip("10.90.1.3"),
				"ok":      ip("10.90.1.1"),
				"outside": ip("10.90.1.4"),
				"v6":      ip("10.90.1.5"),
			}},
		},
		{
			name:  "a conflict is won by the first name",
			hosts: tagged("web", "web-1", "web-2"),
			current: addrs{"web": {
				"web-1": ip("10.90.1.3"),
				"web-2": ip("10.90.1.3"),
			}},
			want: addrs{"web": {"web-1": ip("10.90.1.3"), "web-2": ip("10.90.1.1")}},
		},
		{
			name: "no hosts",
			want: addrs{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Allocate(d, tt.hosts, tt.current)
			if err != nil {
				t.Fatalf("Allocate: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, netipOpts); diff != "" {
				t.Errorf("Allocate (-want +got):\n%s", diff)
			}
			again, err := Allocate(d, tt.hosts, got)
			if err != nil {
				t.Fatalf("Allocate again: %v", err)
			}
			if diff := cmp.Diff(got, again, netipOpts); diff != "" {
				t.Errorf("Allocate is not stable (-first +second):\n%s", diff)
			}
		})
	}
}

func TestAllocateSmallPrefixes(t *testing.T) {
	tests := []struct {
		cidr string
		want []string // for hosts h1, h2, ...
	}{
		{"10.90.1.0/30", []string{"10.90.1.1", "10.90.1.2"}}, // never .3, the broadcast address
		{"fd00::/126", []string{"fd00::1", "fd00::2", "fd00::3"}},
	}
	for _, tt := range tests {
		d := ipamDoc(t, tt.cidr)
		var names []string
		for i := range tt.want {
			names = append(names, fmt.Sprintf("h%d", i+1))
		}
		got, err := Allocate(d, tagged("web", names...), nil)
		if err != nil {
			t.Fatalf("%s: Allocate: %v", tt.cidr, err)
		}
		for i, n := range names {
			if got["web"][n] != ip(tt.want[i]) {
				t.Errorf("%s: %s got %s, want %s", tt.cidr, n, got["web"][n], tt.want[i])
			}
		}
		// One more host does not fit.
		_, err = Allocate(d, tagged("web", append(names, "one-too-many")...), nil)
		if !errors.Is(err, ErrExhausted) {
			t.Errorf("%s: Allocate of one host too many: err = %v, want ErrExhausted", tt.cidr, err)
		}
	}
}

func TestExhausted(t *testing.T) {
	// Two usable addresses in a /30; web has two members, db has one member
	// and the two web hosts as guests: db is fine, web is not with three.
	d := ipamDoc(t, "10.90.1.0/30")
	hosts := append(tagged("web", "web-1", "web-2", "web-3"), tagged("db", "db-1")...)

	err := d.Check(hosts)
	var ex *ExhaustedError
	if !errors.As(err, &ex) {
		t.Fatalf("Check: err = %v, want an *ExhaustedError", err)
	}
	want := &ExhaustedError{Segment: "web", CIDR: netip.MustParsePrefix("10.90.1.0/30"), Need: 3, Usable: 2}
	if diff := cmp.Diff(want, ex, netipOpts); diff != "" {
		t.Errorf("Check (-want +got):\n%s", diff)
	}
	for _, s := range []string{`segment "web"`, "10.90.1.0/30", "2 usable", "3 hosts"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
	if !errors.Is(err, ErrExhausted) {
		t.Errorf("errors.Is(%v, ErrExhausted) = false", err)
	}
	if _, err := Allocate(d, hosts, nil); !errors.Is(err, ErrExhausted) {
		t.Errorf("Allocate: err = %v, want ErrExhausted", err)
	}
	if err := d.Check(hosts[1:]); err != nil {
		t.Errorf("Check with two web hosts: %v", err)
	}
}

// TestAllocateNeverDuplicates moves a fleet through random changes (hosts
// join, leave and change tags) and checks after each step that addresses
// are unique and usable per segment, and that every host still assigned
// kept its address.
func TestAllocateNeverDuplicates(t *testing.T) {
	d := mustParse(t, `
segment "a" {
  cidr    = "10.1.0.0/27"
  port    = 1
  members = ["tag:a"]
}
segment "b" {
  cidr    = "10.2.0.0/27"
  port    = 2
  members = ["tag:b"]
}
rule "a-to-b" {
  action = "allow"
  from   = ["tag:x"]
  to     = ["segment:b"]
  ports  = ["any"]
}
`)
	rng := rand.New(rand.NewPCG(7, 11))
	pool := []string{"a", "b", "x"}
	hosts := map[string]Host{}
	var current addrs
	for step := range 300 {
		switch name := fmt.Sprintf("h%02d", rng.IntN(30)); {
		case rng.IntN(3) == 0:
			delete(hosts, name)
		default:
			var tags []string
			for _, tag := range pool {
				if rng.IntN(2) == 0 {
					tags = append(tags, tag)
				}
			}
			hosts[name] = Host{Name: name, Tags: tags}
		}
		var list []Host
		for _, h := range hosts {
			list = append(list, h)
		}
		next, err := Allocate(d, list, current)
		if errors.Is(err, ErrExhausted) {
			continue // a /27 holds 30; the step is undone
		}
		if err != nil {
			t.Fatalf("step %d: %v", step, err)
		}
		assigned := Assignments(d, list)
		for _, s := range d.Segments {
			seen := map[netip.Addr]string{}
			for h, a := range next[s.Name] {
				if other, dup := seen[a]; dup {
					t.Fatalf("step %d: %s and %s both have %s in %s", step, h, other, a, s.Name)
				}
				seen[a] = h
				if !usable(s.CIDR, a) {
					t.Fatalf("step %d: %s got unusable %s in %s", step, h, a, s.Name)
				}
				if _, ok := assigned[s.Name][h]; !ok {
					t.Fatalf("step %d: %s has an address in %s without being assigned", step, h, s.Name)
				}
				if old, ok := current[s.Name][h]; ok && old != a {
					t.Fatalf("step %d: %s moved from %s to %s in %s", step, h, old, a, s.Name)
				}
			}
			if len(next[s.Name]) != len(assigned[s.Name]) {
				t.Fatalf("step %d: %d addresses for %d hosts in %s", step, len(next[s.Name]), len(assigned[s.Name]), s.Name)
			}
		}
		// The result does not depend on the order of the hosts.
		slices.Reverse(list)
		if again, _ := Allocate(d, list, current); !cmp.Equal(next, again, netipOpts) {
			t.Fatalf("step %d: Allocate depends on the order of hosts", step)
		}
		current = next
	}
}

func TestUsableCount(t *testing.T) {
	for cidr, want := range map[string]uint64{
		"10.0.0.0/24":  254,
		"10.0.0.0/30":  2,
		"10.0.0.0/31":  1,
		"fd00::/126":   3,
		"fd00::/120":   255,
		"fd00::/64":    1<<64 - 1,
		"10.0.0.0/8":   1<<24 - 2,
		"fd00::/10":    1<<64 - 1,
		"10.0.0.64/26": 62,
	} {
		if got := usableCount(netip.MustParsePrefix(cidr)); got != want {
			t.Errorf("usableCount(%s) = %d, want %d", cidr, got, want)
		}
	}
}
