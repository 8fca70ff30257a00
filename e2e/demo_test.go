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

// TestDemo is `make demo`: a cluster of namespace hosts, shown with weft's
// own CLI, kept running until Ctrl-C (or printed and torn down at once with
// WEFT_DEMO_ONESHOT=1). Every namespace it made is removed on the way out.
func TestDemo(t *testing.T) {
	if os.Getenv("WEFT_DEMO") != "1" {
		t.Skip("run with make demo")
	}
	needNetns(t)
	b := NewBed(t, "s1", "s2", "s3", "c1", "c2")
	servers, clients := b.Select("s1", "s2", "s3"), b.Select("c1", "c2")
	f := formCluster(t, servers, clients)
	c1 := b.Host("c1")

	show := func(args ...string) {
		out, errOut, err := c1.CLI(args...)
		fmt.Printf("\n$ weft %s   (on c1)\n%s%s", strings.Join(args, " "), out, errOut)
		if err != nil {
			t.Errorf("weft %s: %v", strings.Join(args, " "), err)
		}
	}
	fmt.Printf("\nweft demo: 3 servers and 2 clients, each in its own network namespace, formed in %.1fs\n", f.took.Seconds())
	show("members")
	show("status")

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
