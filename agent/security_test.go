package agent

import (
	"context"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weft-mesh/weft/client"
	"github.com/weft-mesh/weft/config"
)

// withUmask runs the rest of the test under umask m (process-wide: tests
// that use it must not run in parallel).
func withUmask(t *testing.T, m int) {
	t.Helper()
	old := syscall.Umask(m)
	t.Cleanup(func() { syscall.Umask(old) })
}

// dataModes lists every entry under dir with its permission bits, by path
// relative to dir ("." is dir itself); sockets are left out.
func dataModes(t *testing.T, dir string) map[string]fs.FileMode {
	t.Helper()
	out := map[string]fs.FileMode{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if fi.Mode()&fs.ModeSocket != 0 {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		out[rel] = fi.Mode() & (fs.ModePerm | fs.ModeDir)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestInvariantSecretFileModes: under umask 000, after a dev agent has
// bootstrapped and applied a policy, its data dir and every directory in
// it are 0700 and every file in it 0600: keys/, plan.json, state.json,
// node.key, server.key, gossip.key, raft/ (but for what raft makes inside
// raft/snapshots, see the comment in check).
func TestInvariantSecretFileModes(t *testing.T) {
	withUmask(t, 0)
	dataDir := filepath.Join(t.TempDir(), "data") // made by the agent
	rt := config.Dev(dataDir)
	p := freePorts(t, 3)
	rt.Ports = config.Ports{Gossip: p[0], RPC: p[1], Raft: p[2]}
	rt.NodeName, rt.Tags = "dev", []string{"t"}
	rt.DNS.Listen = []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:0")}
	c, _, stop := runAgent(t, rt, fakeBackends())
	ctx := context.Background()
	src := "segment \"s\" {\n  cidr    = \"10.90.7.0/24\"\n  port    = 51899\n  members = [\"tag:t\"]\n}\n"
	if _, err := c.ApplyPolicy(ctx, client.PolicyRequest{Filename: "p.hcl", Source: src, By: "test"}); err != nil {
		t.Fatal(err)
	}
	want := []string{"keys", "keys/s.key", "plan.json", "state.json", "node.key", "node.crt", "server.key", "server.crt", "gossip.key", "ca.pem", "node.json", "raft", "raft/raft.db"}
	waitFor(t, 10*time.Second, func() (bool, string) {
		got := dataModes(t, dataDir)
		var missing []string
		for _, w := range want {
			if _, ok := got[w]; !ok {
				missing = append(missing, w)
			}
		}
		return len(missing) == 0, fmt.Sprintf("missing %v", missing)
	})
	check := func(when string) {
		var bad []string
		for rel, m := range dataModes(t, dataDir) {
			if rel == "raft/snapshots" || strings.HasPrefix(rel, "raft/snapshots/") {
				// hashicorp/raft's own modes (0755, 0666 less the umask):
				// reported (cluster TestKnownBugRaftSnapshotModes); raft/
				// itself is checked to be 0700, which keeps them private.
				continue
			}
			wantMode := fs.FileMode(0o600)
			if m.IsDir() {
				wantMode = fs.ModeDir | 0o700
			}
			if m != wantMode {
				bad = append(bad, fmt.Sprintf("%s %v (want %v)", rel, m, wantMode))
			}
		}
		sort.Strings(bad)
		if len(bad) > 0 {
			t.Errorf("%s, under umask 000:\n  %s", when, strings.Join(bad, "\n  "))
		}
	}
	check("while the agent runs")
	stop()
	check("after the agent stopped")
	if _, err := os.Stat(dataDir); err != nil {
		t.Fatal(err)
	}
}
