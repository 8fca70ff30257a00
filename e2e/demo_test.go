package e2e

import (
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"
)

var demoTags = map[string][]string{"s1": {"ops"}, "s2": {"ops"}, "s3": {"ops"}, "c1": {"web"}, "c2": {"postgres"}}

const demoPolicy = `segment "ops" {
  cidr    = "10.90.3.0/24"
  port    = 51823
  members = ["tag:ops"]
}

segment "web" {
  cidr    = "10.90.1.0/24"
  port    = 51821
  members = ["tag:web"]
}

segment "db" {
  cidr    = "10.90.2.0/24"
  port    = 51822
  members = ["tag:postgres"]
}

rule "web-to-db" {
  action = "allow"
  from   = ["segment:web"]
  to     = ["segment:db"]
  ports  = ["tcp/5432"]
}

rule "ops-ping" {
  action = "allow"
  from   = ["segment:ops"]
  to     = ["segment:web", "segment:db"]
  ports  = ["icmp"]
}
`

const demoGrid = `
from\to  s1  s2  s3  c1    c2
s1       .   *   *   icmp  icmp
s2       *   .   *   icmp  icmp
s3       *   *   .   icmp  icmp
c1       -   -   -   .     5432
c2       -   -   -   -     .
`

var demoDefs = defsABC

// TestDemo is `make demo`: a cluster of namespace hosts, shown with weft's
// own CLI, kept running until Ctrl-C (or printed and torn down at once with
// WEFT_DEMO_ONESHOT=1). Every namespace it made is removed on the way out.
func TestDemo(t *testing.T) {
	if os.Getenv("WEFT_DEMO") != "1" {
		t.Skip("run with make demo")
	}
	needNetns(t)
	b := NewBed(t, "s1", "s2", "s3", "c1", "c2")
	all := b.Hosts()
	servers, clients := b.Select("s1", "s2", "s3"), b.Select("c1", "c2")
	f := formTaggedCluster(t, servers, clients, demoTags)
	s1, c1 := b.Host("s1"), b.Host("c1")

	show := func(on *Host, args ...string) {
		out, errOut, err := on.CLI(args...)
		fmt.Printf("\n$ weft %s   (on %s)\n%s%s", strings.Join(args, " "), on.Name, out, errOut)
		if err != nil {
			t.Errorf("weft %s: %v", strings.Join(args, " "), err)
		}
	}
	fmt.Printf("\nweft demo: 3 servers and 2 clients, each in its own network namespace, formed in %.1fs\n", f.took.Seconds())
	show(c1, "members")
	show(c1, "status")

	// A policy: the servers in ops, c1 in web, c2 in db; web reaches db on
	// 5432, ops pings both.
	ls := startListeners(t, all)
	start := time.Now()
	v := applyPolicy(t, s1, "demo.hcl", demoPolicy)
	fmt.Printf("\n$ weft policy apply demo.hcl   (on s1)\npolicy version %d applied\n%s", v, demoPolicy)
	g := parseGrid(t, demoGrid)
	snap := settle(t, s1, all, v, topology(g, segOfHosts(demoTags, all, demoDefs), names(all)), demoDefs)
	fmt.Printf("\nevery host enforces it %.1fs after the apply\n", time.Since(start).Seconds())
	for _, h := range all {
		show(h, "segments")
	}
	show(s1, "policy", "explain", "c1", "c2", "tcp/5432")
	show(s1, "policy", "explain", "c2", "c1", "tcp/5432")

	// Reachability with real packets, checked against the policy.
	res := matrix{hosts: all, explain: s1, grid: g, snap: snap, listeners: ls}.check(t)
	for _, spec := range []string{"icmp", "tcp/5432"} {
		fmt.Printf("\nreachability, %s, measured (rows: from, columns: to)\n%-8s", spec, "")
		for _, to := range all {
			fmt.Printf("%-6s", to.Name)
		}
		fmt.Println()
		for _, a := range all {
			fmt.Printf("%-8s", a.Name)
			for _, to := range all {
				cell := "--"
				switch {
				case a == to:
					cell = "."
				case res[[2]string{a.Name, to.Name}][spec]:
					cell = "ok"
				}
				fmt.Printf("%-6s", cell)
			}
			fmt.Println()
		}
	}

	if os.Getenv("WEFT_DEMO_ONESHOT") != "" {
		return
	}
	fmt.Printf("\nThe cluster keeps running. Try, in another shell:\n")
	fmt.Printf("  sudo ip netns exec %s env WEFT_SOCKET=%s %s members\n", c1.NS, c1.Socket, weftBinary(t))
	fmt.Printf("Press Ctrl-C to stop and remove every namespace.\n")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	select {
	case <-sig:
	case <-time.After(24 * time.Hour):
	}
	fmt.Println("\nstopping the demo and removing its namespaces")
}
