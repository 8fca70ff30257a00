package agent

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/weft-mesh/weft/config"
)

// TestReload: SIGHUP's work. Tags, services, log level and DNS settings
// apply at once (tags and services reach the registry); what needs a
// restart is named in the log and kept.
func TestReload(t *testing.T) {
	dir, err := os.MkdirTemp("", "wfa")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	rt := config.Dev(dir)
	p := freePorts(t, 3)
	rt.Ports = config.Ports{Gossip: p[0], RPC: p[1], Raft: p[2]}
	rt.NodeName = "dev"
	rt.DNS.Listen = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}
	logs := &syncBuffer{}
	a, err := New(Options{Runtime: rt, LogOutput: logs, Backends: fakeBackends()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	waitFor(t, 20*time.Second, func() (bool, string) {
		st := a.status()
		return st.Ready, fmt.Sprint(st.Checks)
	})

	next := rt
	next.LogLevel = slog.LevelDebug
	next.Tags = []string{"reloaded"}
	next.Services = []config.Service{{Name: "api", Port: 8080}}
	next.DNS.TTL = 30 * time.Second
	next.Ports.Gossip = p[0] + 1 // needs a restart
	a.Reload(next)

	if !a.log.Enabled(context.Background(), slog.LevelDebug) {
		t.Error("log level not reloaded")
	}
	if _, ttl := a.dnsConfig(); ttl != 30*time.Second {
		t.Errorf("dns ttl = %v after reload", ttl)
	}
	if got := a.config().Ports.Gossip; got != p[0] {
		t.Errorf("gossip port changed to %d at run time; it needs a restart", got)
	}
	waitFor(t, 10*time.Second, func() (bool, string) {
		n, ok := a.cluster.State().Nodes["dev"]
		if !ok {
			return false, "dev not registered"
		}
		return slices.Equal(n.Tags, []string{"reloaded"}) && len(n.Services) == 1 && n.Services[0].Name == "api",
			fmt.Sprintf("tags %v services %v", n.Tags, n.Services)
	})
	log := logs.String()
	if !strings.Contains(log, "needs a restart") || !strings.Contains(log, "key=ports") {
		t.Errorf("the log does not name the setting that needs a restart:\n%s", log)
	}
}
