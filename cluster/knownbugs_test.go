package cluster

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/weft-mesh/weft/identity"
)

// Reproductions of bugs found while hardening, reported and not fixed in
// this change. They are skipped unless WEFT_KNOWN_BUGS=1; remove the skip
// with the fix.
func knownBug(t *testing.T, what string) {
	t.Helper()
	if os.Getenv("WEFT_KNOWN_BUGS") == "" {
		t.Skip("known bug, reported: " + what + " (WEFT_KNOWN_BUGS=1 runs it)")
	}
}

// TestKnownBugRaftSnapshotModes: hashicorp/raft's FileSnapshotStore makes
// raft/snapshots 0755 and writes each snapshot's state.bin and meta.json
// with os.Create (0666 less the umask): under umask 000 the full FSM state,
// CA key and gossip keyring included, is world-readable inside raft/. Only
// raft/ (0700, cluster.ensureDir) and the data dir keep other users out.
// Want 0700 directories and 0600 files, e.g. by wrapping the snapshot
// store or fixing the modes after each snapshot.
func TestKnownBugRaftSnapshotModes(t *testing.T) {
	knownBug(t, "raft snapshots are 0755/0666 under umask 000")
	withUmask(t, 0)
	h := newHarness(t, 30*time.Second)
	o := h.options(t, "s1", 1, true, true)
	s1 := h.start(t, o)
	if err := s1.raftNode().Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	err := filepath.WalkDir(filepath.Join(o.DataDir, dirRaft), func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		want := os.FileMode(0o600)
		if fi.IsDir() {
			want = 0o700
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: %v, want %v", p, fi.Mode().Perm(), want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestKnownBugClientTokenTakesServerName: a join with a client token may
// take the name of a registered server that the leader does not see alive
// in gossip (restarting, partitioned): the registration replaces the
// server's entry with a client one and revokes the server's certificates,
// so one holder of a client token can evict a server for good (it needs a
// new server token to come back). Want: a name registered with another
// role is refused (ErrNameInUse, or ErrTokenWrongRole) unless an operator
// removed it first.
func TestClientTokenCannotTakeServerName(t *testing.T) {
	// Fixed: the FSM and serveJoin refuse a name registered with another role.
	c := fuzzLeader(t)
	ctx := context.Background()
	join := func(tok fixtureToken, role Role, csrs ...[]byte) error {
		req := &joinRequest{TokenID: tok.id, Secret: tok.secret, Name: "s2", Role: role, Addr: "127.0.0.9", NodeCSR: string(csrs[0])}
		if len(csrs) > 1 {
			req.ServerCSR = string(csrs[1])
		}
		_, err := c.serveJoin(ctx, req)
		return err
	}
	node := identity.ID{Domain: testDomain, Kind: identity.KindNode, Name: "s2"}
	server := identity.ID{Domain: testDomain, Kind: identity.KindServer, Name: "s2"}
	if err := join(fuzzServerTok, RoleServer, csrPEM(t, node), csrPEM(t, server)); err != nil {
		t.Fatal(err)
	}
	serverSerials := c.State().Nodes["s2"].Certs
	if err := join(fuzzClientTok, RoleClient, csrPEM(t, node)); err == nil {
		st := c.State()
		t.Errorf("a client token re-registered server s2 as a %s; its certificates %v are revoked: %v",
			st.Nodes["s2"].Role, serverSerials, st.IsRevoked(serverSerials[1].Serial))
	}
}
