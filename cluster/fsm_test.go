package cluster

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/hashicorp/raft"
)

// stateOpts compare states by content. Index is compared separately where
// it matters: a refused command still advances it.
var (
	stateOpts   = []cmp.Option{cmpopts.EquateEmpty()}
	ignoreIndex = cmpopts.IgnoreFields(State{}, "Index")
	sameContent = []cmp.Option{cmpopts.EquateEmpty(), ignoreIndex}
)

// fixture tokens: the secret is what a joining host would present.
type fixtureToken struct{ id, secret string }

func (f fixtureToken) hash() string { return hashSecret(f.secret) }

var (
	tokClient  = fixtureToken{"c1c1c1c1c1c1c1c1", "client-secret-client-secret-0001"}
	tokServer  = fixtureToken{"5e5e5e5e5e5e5e5e", "server-secret-server-secret-0001"}
	tokUsed    = fixtureToken{"0d0d0d0d0d0d0d0d", "used-secret-used-secret-used-001"}
	tokExpired = fixtureToken{"e0e0e0e0e0e0e0e0", "expired-secret-expired-secret-01"}
)

func certs(notAfter time.Time, serials ...string) []CertRef {
	var out []CertRef
	for _, s := range serials {
		out = append(out, CertRef{Serial: s, NotAfter: notAfter})
	}
	return out
}

func testNode(name string, role Role, c []CertRef) Node {
	return Node{Name: name, Role: role, Addr: "127.0.0.1", GossipPort: 7946, RPCPort: 7373, RaftPort: 7374, Tags: []string{"t"}, Certs: c}
}

func initCmd() *InitCmd {
	return &InitCmd{
		Domain:     "weft.test",
		CACert:     "ca-cert-pem",
		CAKey:      "ca-key-pem",
		GossipKeys: []string{"Z29zc2lwLWtleQ=="},
		Node:       testNode("srv1", RoleServer, certs(t0.Add(365*24*time.Hour), "51", "52")),
	}
}

func tokenCmd(tok fixtureToken, server bool, expires time.Time, uses int) Command {
	return Command{Op: OpToken, Now: t0, Token: &Token{ID: tok.id, SecretHash: tok.hash(), Server: server, Expires: expires, UsesLeft: uses}}
}

func registerCmd(now time.Time, tok fixtureToken, n Node) Command {
	return Command{Op: OpRegister, Now: now, Register: &RegisterCmd{TokenID: tok.id, SecretHash: tok.hash(), Node: n}}
}

func logEntry(t testing.TB, index uint64, cmd Command) *raft.Log {
	t.Helper()
	b, err := json.Marshal(cmd)
	if err != nil {
		t.Fatal(err)
	}
	return &raft.Log{Index: index, Type: raft.LogCommand, Data: b}
}

func applyLog(t testing.TB, f *FSM, l *raft.Log) error {
	t.Helper()
	raw := f.Apply(l)
	res, ok := raw.(applyResult)
	if !ok {
		t.Fatalf("Apply returned %T, want applyResult", raw)
	}
	return res.Err
}

func mustApply(t testing.TB, f *FSM, index uint64, cmd Command) {
	t.Helper()
	if err := applyLog(t, f, logEntry(t, index, cmd)); err != nil {
		t.Fatalf("apply %s at %d: %v", cmd.Op, index, err)
	}
}

// fixtureFSM returns an FSM that holds an initialized cluster:
//
//	srv1    server, serials 51 and 52
//	spent   client, joined with tokUsed, which is now used up
//	web     client, serial 0a01 (expires t0+48h)
//	old     removed: serial 0b01 revoked (expires t0+30m), tombstone
//	tokens  tokClient (client, 1 use left, expires t0+1h),
//	        tokServer (server, 1 use, t0+1h), tokUsed (0 uses, t0+1h),
//	        tokExpired (client, 5 uses, t0+10m)
func fixtureFSM(t testing.TB) *FSM {
	t.Helper()
	f := NewFSM()
	cmds := []Command{
		{Op: OpInit, Now: t0, Init: initCmd()},
		tokenCmd(tokClient, false, t0.Add(time.Hour), 3),
		tokenCmd(tokServer, true, t0.Add(time.Hour), 1),
		tokenCmd(tokUsed, false, t0.Add(time.Hour), 1),
		tokenCmd(tokExpired, false, t0.Add(10*time.Minute), 5),
		registerCmd(t0, tokUsed, testNode("spent", RoleClient, certs(t0.Add(48*time.Hour), "0c01"))),
		registerCmd(t0, tokClient, testNode("web", RoleClient, certs(t0.Add(48*time.Hour), "0a01"))),
		registerCmd(t0, tokClient, testNode("old", RoleClient, certs(t0.Add(30*time.Minute), "0b01"))),
		{Op: OpDeregister, Now: t0, Deregister: &DeregisterCmd{Name: "old", Reason: "removed"}},
	}
	for i, c := range cmds {
		mustApply(t, f, uint64(i+1), c)
	}
	return f
}

const fixtureIndex = 9

// deepCopy copies a state through JSON, so that a later mutation of the
// original's shared values shows up as a difference.
func deepCopy(t testing.TB, st *State) *State {
	t.Helper()
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	var c State
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	c.normalize()
	return &c
}

func TestFSMFixture(t *testing.T) {
	st := fixtureFSM(t).State()
	if st.Index != fixtureIndex {
		t.Errorf("Index = %d, want %d", st.Index, fixtureIndex)
	}
	want := map[string]int{tokClient.id: 1, tokServer.id: 1, tokUsed.id: 0, tokExpired.id: 5}
	got := map[string]int{}
	for id, tok := range st.Tokens {
		got[id] = tok.UsesLeft
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("uses left (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"spent", "srv1", "web"}, nodeNames(st)); d != "" {
		t.Errorf("nodes (-want +got):\n%s", d)
	}
}

func nodeNames(st *State) []string {
	var out []string
	for _, n := range st.SortedNodes() {
		out = append(out, n.Name)
	}
	return out
}

func TestFSMApply(t *testing.T) {
	now := t0.Add(time.Minute)
	newTok := &Token{ID: "d1d1d1d1d1d1d1d1", SecretHash: hashSecret("new"), Expires: t0.Add(2 * time.Hour), UsesLeft: 2, CreatedAt: t0.Add(-time.Hour)}
	tests := []struct {
		name string
		cmd  Command
		// edit turns the state before into the state wanted after.
		edit func(want *State, idx uint64, now time.Time)
	}{
		{
			name: "token create stamps CreatedAt with the command's time",
			cmd:  Command{Op: OpToken, Now: now, Token: newTok},
			edit: func(want *State, _ uint64, now time.Time) {
				tok := *newTok
				tok.CreatedAt = now
				want.Tokens[tok.ID] = &tok
			},
		},
		{
			name: "register consumes one use",
			cmd:  registerCmd(now, tokClient, testNode("db", RoleClient, certs(t0.Add(time.Hour), "0d01"))),
			edit: func(want *State, idx uint64, now time.Time) {
				want.Tokens[tokClient.id].UsesLeft = 0 // used up, but kept to say why
				n := testNode("db", RoleClient, certs(t0.Add(time.Hour), "0d01"))
				n.RegisteredAt, n.RegisteredIndex = now, idx
				want.Nodes["db"] = &n
			},
		},
		{
			name: "server registers with a server token",
			cmd:  registerCmd(now, tokServer, testNode("srv2", RoleServer, certs(t0.Add(time.Hour), "0e01", "0e02"))),
			edit: func(want *State, idx uint64, now time.Time) {
				want.Tokens[tokServer.id].UsesLeft = 0
				n := testNode("srv2", RoleServer, certs(t0.Add(time.Hour), "0e01", "0e02"))
				n.RegisteredAt, n.RegisteredIndex = now, idx
				want.Nodes["srv2"] = &n
			},
		},
		{
			name: "re-register of an existing name revokes its old serials",
			cmd:  registerCmd(now, tokClient, testNode("web", RoleClient, certs(t0.Add(72*time.Hour), "0a02"))),
			edit: func(want *State, idx uint64, now time.Time) {
				want.Tokens[tokClient.id].UsesLeft = 0
				want.Revoked["0a01"] = t0.Add(48 * time.Hour)
				n := testNode("web", RoleClient, certs(t0.Add(72*time.Hour), "0a02"))
				n.RegisteredAt, n.RegisteredIndex = now, idx
				want.Nodes["web"] = &n
			},
		},
		{
			name: "register of a removed name clears its tombstone",
			cmd:  registerCmd(now, tokClient, testNode("old", RoleClient, certs(t0.Add(72*time.Hour), "0b02"))),
			edit: func(want *State, idx uint64, now time.Time) {
				want.Tokens[tokClient.id].UsesLeft = 0
				delete(want.Tombstones, "old")
				n := testNode("old", RoleClient, certs(t0.Add(72*time.Hour), "0b02"))
				n.RegisteredAt, n.RegisteredIndex = now, idx
				want.Nodes["old"] = &n
			},
		},
		{
			name: "deregister revokes, removes and leaves a tombstone",
			cmd:  Command{Op: OpDeregister, Now: now, Deregister: &DeregisterCmd{Name: "web", Reason: "left"}},
			edit: func(want *State, idx uint64, now time.Time) {
				want.Revoked["0a01"] = t0.Add(48 * time.Hour)
				delete(want.Nodes, "web")
				want.Tombstones["web"] = Tombstone{Reason: "left", Index: idx, RemovedAt: now}
			},
		},
		{
			name: "deregister of a server revokes both its certificates",
			cmd:  Command{Op: OpDeregister, Now: now, Deregister: &DeregisterCmd{Name: "srv1", Reason: "removed"}},
			edit: func(want *State, idx uint64, now time.Time) {
				want.Revoked["51"] = t0.Add(365 * 24 * time.Hour)
				want.Revoked["52"] = t0.Add(365 * 24 * time.Hour)
				delete(want.Nodes, "srv1")
				want.Tombstones["srv1"] = Tombstone{Reason: "removed", Index: idx, RemovedAt: now}
			},
		},
		{
			name: "prune drops expired revocations and keeps expired tokens for a day",
			cmd:  Command{Op: OpToken, Now: t0.Add(time.Hour), Token: newTok},
			edit: func(want *State, _ uint64, now time.Time) {
				delete(want.Revoked, "0b01") // expired at t0+30m
				tok := *newTok
				tok.CreatedAt = now
				want.Tokens[tok.ID] = &tok
			},
		},
		{
			name: "prune at the boundary keeps a token until a day after it expired",
			cmd:  Command{Op: OpToken, Now: t0.Add(25 * time.Hour), Token: newTok},
			edit: func(want *State, _ uint64, now time.Time) {
				delete(want.Revoked, "0b01")
				delete(want.Tokens, tokExpired.id) // expired t0+10m: past its day
				// the others expired at t0+1h: exactly a day ago, kept
				tok := *newTok
				tok.CreatedAt = now
				want.Tokens[tok.ID] = &tok
			},
		},
		{
			name: "prune drops every token a day past expiry",
			cmd:  Command{Op: OpDeregister, Now: t0.Add(25*time.Hour + time.Second), Deregister: &DeregisterCmd{Name: "spent", Reason: "removed"}},
			edit: func(want *State, idx uint64, now time.Time) {
				delete(want.Revoked, "0b01")
				want.Tokens = map[string]*Token{}
				want.Revoked["0c01"] = t0.Add(48 * time.Hour)
				delete(want.Nodes, "spent")
				want.Tombstones["spent"] = Tombstone{Reason: "removed", Index: idx, RemovedAt: now}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := fixtureFSM(t)
			before := f.State()
			frozen := deepCopy(t, before)
			want := deepCopy(t, before)
			const idx = fixtureIndex + 1
			tt.edit(want, idx, tt.cmd.Now)
			want.Index = idx

			if err := applyLog(t, f, logEntry(t, idx, tt.cmd)); err != nil {
				t.Fatalf("apply: %v", err)
			}
			if d := cmp.Diff(want, f.State(), stateOpts...); d != "" {
				t.Errorf("state after apply (-want +got):\n%s", d)
			}
			if d := cmp.Diff(frozen, before, stateOpts...); d != "" {
				t.Errorf("apply mutated the published state before it (-was +now):\n%s", d)
			}
		})
	}
}

func TestFSMInitOnce(t *testing.T) {
	f := NewFSM()
	mustApply(t, f, 1, Command{Op: OpInit, Now: t0, Init: initCmd()})
	st := f.State()
	if st.Domain != "weft.test" || st.CAKey == "" || len(st.GossipKeys) != 1 || st.Nodes["srv1"] == nil {
		t.Fatalf("init did not set up the cluster: %+v", st)
	}
	if n := st.Nodes["srv1"]; n.RegisteredIndex != 1 || !n.RegisteredAt.Equal(t0) {
		t.Errorf("srv1 registered at %d/%v, want 1/%v", n.RegisteredIndex, n.RegisteredAt, t0)
	}
	again := initCmd()
	again.Domain, again.CACert, again.CAKey = "other.test", "other-ca", "other-key"
	again.Node.Name = "usurper"
	err := applyLog(t, f, logEntry(t, 2, Command{Op: OpInit, Now: t0.Add(time.Minute), Init: again}))
	checkErr(t, err, ErrAlreadyInit)
	got := f.State()
	if got.Index != 2 {
		t.Errorf("Index = %d, want 2 (a refused command still advances it)", got.Index)
	}
	if d := cmp.Diff(st, got, sameContent...); d != "" {
		t.Errorf("second init changed the state (-before +after):\n%s", d)
	}
}

// TestFSMRefused checks every refusal, and that a refused command changes
// nothing but the index, even when its time would have pruned something.
func TestFSMRefused(t *testing.T) {
	now := t0.Add(time.Minute)
	incomplete := initCmd()
	incomplete.CAKey = ""
	noName := initCmd()
	noName.Node.Name = ""
	client := func(name string) Node { return testNode(name, RoleClient, certs(t0.Add(time.Hour), "0f01")) }
	server := func(name string) Node { return testNode(name, RoleServer, certs(t0.Add(time.Hour), "0f01", "0f02")) }
	wrongSecret := fixtureToken{tokClient.id, "not-the-secret-not-the-secret-01"}
	unknownID := fixtureToken{"ffffffffffffffff", tokClient.secret}
	tests := []struct {
		name  string
		empty bool   // start from the empty state, not the fixture
		data  string // the raw log data; "" means the JSON of cmd
		cmd   Command
		want  error
	}{
		{name: "second init", cmd: Command{Op: OpInit, Now: now, Init: initCmd()}, want: ErrAlreadyInit},
		{name: "init without CA key", empty: true, cmd: Command{Op: OpInit, Now: now, Init: incomplete}, want: ErrBadCommand},
		{name: "init without node name", empty: true, cmd: Command{Op: OpInit, Now: now, Init: noName}, want: ErrBadCommand},
		{name: "init without body", empty: true, cmd: Command{Op: OpInit, Now: now}, want: ErrBadCommand},
		{name: "token before init", empty: true, cmd: tokenCmd(tokClient, false, t0.Add(time.Hour), 1), want: ErrNotInitialized},
		{name: "token without uses", cmd: tokenCmd(fixtureToken{"d2d2d2d2d2d2d2d2", "x"}, false, t0.Add(time.Hour), 0), want: ErrBadCommand},
		{name: "token without hash", cmd: Command{Op: OpToken, Now: now, Token: &Token{ID: "d3d3d3d3d3d3d3d3", UsesLeft: 1, Expires: t0.Add(time.Hour)}}, want: ErrBadCommand},
		{name: "token without body", cmd: Command{Op: OpToken, Now: now}, want: ErrBadCommand},
		{name: "register with a used-up token", cmd: registerCmd(now, tokUsed, client("db")), want: ErrTokenUsedUp},
		{name: "register at the token's expiry", cmd: registerCmd(t0.Add(10*time.Minute), tokExpired, client("db")), want: ErrTokenExpired},
		{name: "register after the token's expiry", cmd: registerCmd(t0.Add(11*time.Minute), tokExpired, client("db")), want: ErrTokenExpired},
		{name: "register a day after the token's expiry", cmd: registerCmd(t0.Add(24*time.Hour+10*time.Minute), tokExpired, client("db")), want: ErrTokenExpired},
		{name: "register once the expired token is pruned", cmd: registerCmd(t0.Add(24*time.Hour+11*time.Minute), tokExpired, client("db")), want: ErrTokenUnknown},
		{name: "register with the wrong secret", cmd: registerCmd(now, wrongSecret, client("db")), want: ErrTokenUnknown},
		{name: "register with an unknown token", cmd: registerCmd(now, unknownID, client("db")), want: ErrTokenUnknown},
		{name: "register with an empty hash", cmd: Command{Op: OpRegister, Now: now, Register: &RegisterCmd{TokenID: tokClient.id, Node: client("db")}}, want: ErrTokenUnknown},
		{name: "register a client with a server token", cmd: registerCmd(now, tokServer, client("db")), want: ErrTokenWrongRole},
		{name: "register a server with a client token", cmd: registerCmd(now, tokClient, server("srv2")), want: ErrTokenWrongRole},
		{name: "register an existing name with a used-up token", cmd: registerCmd(now, tokUsed, client("web")), want: ErrTokenUsedUp},
		{name: "register without a name", cmd: registerCmd(now, tokClient, client("")), want: ErrBadCommand},
		{name: "register without body", cmd: Command{Op: OpRegister, Now: now}, want: ErrBadCommand},
		{name: "deregister an unknown node", cmd: Command{Op: OpDeregister, Now: now, Deregister: &DeregisterCmd{Name: "nope"}}, want: ErrNodeUnknown},
		{name: "deregister a removed node", cmd: Command{Op: OpDeregister, Now: now, Deregister: &DeregisterCmd{Name: "old"}}, want: ErrNodeUnknown},
		{name: "deregister without a name", cmd: Command{Op: OpDeregister, Now: now, Deregister: &DeregisterCmd{}}, want: ErrBadCommand},
		{name: "deregister without body", cmd: Command{Op: OpDeregister, Now: now}, want: ErrBadCommand},
		{name: "unknown op", cmd: Command{Op: "frobnicate", Now: now}, want: ErrBadCommand},
		{name: "refused late command prunes nothing", cmd: registerCmd(t0.Add(1000*time.Hour), unknownID, client("db")), want: ErrTokenUnknown},
		{name: "garbage", data: "not json at all", want: ErrBadCommand},
		{name: "binary garbage", data: "\xff\xfe\x00\x01", want: ErrBadCommand},
		{name: "json null", data: "null", want: ErrBadCommand},
		{name: "empty object", data: "{}", want: ErrBadCommand},
		{name: "array", data: "[1,2,3]", want: ErrBadCommand},
		{name: "wrong field type", data: `{"op":"register","register":{"node":{"name":7}}}`, want: ErrBadCommand},
		{name: "bad time", data: `{"op":"init","now":"yesterday"}`, want: ErrBadCommand},
		{name: "null body", data: `{"op":"register","register":null}`, want: ErrBadCommand},
		{name: "truncated", data: `{"op":"deregister","deregister":{"name":"web"`, want: ErrBadCommand},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, idx := NewFSM(), uint64(1)
			if !tt.empty {
				f, idx = fixtureFSM(t), fixtureIndex+1
			}
			before := f.State()
			frozen := deepCopy(t, before)
			l := logEntry(t, idx, tt.cmd)
			if tt.data != "" {
				l.Data = []byte(tt.data)
			}
			err := applyLog(t, f, l)
			checkErr(t, err, tt.want)
			after := f.State()
			if after.Index != idx {
				t.Errorf("Index = %d, want %d", after.Index, idx)
			}
			if d := cmp.Diff(frozen, after, sameContent...); d != "" {
				t.Errorf("refused command changed the state (-before +after):\n%s", d)
			}
			if d := cmp.Diff(frozen, before, stateOpts...); d != "" {
				t.Errorf("refused command mutated the published state (-was +now):\n%s", d)
			}
		})
	}
}

func TestFSMNilData(t *testing.T) {
	f := fixtureFSM(t)
	err := applyLog(t, f, &raft.Log{Index: fixtureIndex + 1})
	checkErr(t, err, ErrBadCommand)
}

// memSink is a raft.SnapshotSink that keeps the snapshot in memory.
type memSink struct {
	bytes.Buffer
	failWrite         bool
	closed, cancelled bool
}

func (s *memSink) Write(p []byte) (int, error) {
	if s.failWrite {
		return 0, errors.New("disk full")
	}
	return s.Buffer.Write(p)
}
func (s *memSink) ID() string    { return "mem" }
func (s *memSink) Close() error  { s.closed = true; return nil }
func (s *memSink) Cancel() error { s.cancelled = true; return nil }

func TestFSMSnapshotRestore(t *testing.T) {
	f := fixtureFSM(t)
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(snap.Release)
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatalf("Persist: %v", err)
	}
	if !sink.closed || sink.cancelled {
		t.Errorf("sink closed=%v cancelled=%v, want closed only", sink.closed, sink.cancelled)
	}

	g := NewFSM()
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatalf("Restore: %v", err)
	}
	if d := cmp.Diff(f.State(), g.State(), stateOpts...); d != "" {
		t.Errorf("restored state differs (-snapshot +restored):\n%s", d)
	}
	if g.State().Index != fixtureIndex {
		t.Errorf("restored Index = %d, want %d", g.State().Index, fixtureIndex)
	}
	// The restored FSM goes on applying like the original.
	mustApply(t, g, fixtureIndex+1, registerCmd(t0, tokClient, testNode("db", RoleClient, nil)))
	if g.State().Tokens[tokClient.id].UsesLeft != 0 {
		t.Errorf("restored FSM did not consume the token")
	}
}

func TestFSMSnapshotOfEmptyState(t *testing.T) {
	f := NewFSM()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(snap.Release)
	sink := &memSink{}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	g := fixtureFSM(t)
	if err := g.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(emptyState(), g.State(), stateOpts...); d != "" {
		t.Errorf("restore of the empty state (-want +got):\n%s", d)
	}
	// Restored maps are usable (normalized), not nil.
	mustApply(t, g, 1, Command{Op: OpInit, Now: t0, Init: initCmd()})
}

func TestFSMPersistFailure(t *testing.T) {
	snap, err := fixtureFSM(t).Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(snap.Release)
	sink := &memSink{failWrite: true}
	if err := snap.Persist(sink); err == nil {
		t.Fatal("Persist into a failing sink succeeded")
	}
	if !sink.cancelled || sink.closed {
		t.Errorf("sink closed=%v cancelled=%v, want cancelled only", sink.closed, sink.cancelled)
	}
}

func TestFSMRestoreGarbage(t *testing.T) {
	f := fixtureFSM(t)
	before := f.State()
	if err := f.Restore(io.NopCloser(bytes.NewReader([]byte("{not json")))); err == nil {
		t.Fatal("Restore of garbage succeeded")
	}
	if f.State() != before {
		t.Errorf("a failed Restore replaced the state")
	}
}

func TestStatePublic(t *testing.T) {
	st := fixtureFSM(t).State()
	frozen := deepCopy(t, st)
	pub := st.Public()
	if pub.CAKey != "" || pub.GossipKeys != nil || len(pub.Tokens) != 0 {
		t.Errorf("Public kept secrets: CAKey=%q GossipKeys=%v Tokens=%d", pub.CAKey, pub.GossipKeys, len(pub.Tokens))
	}
	want := deepCopy(t, st)
	want.CAKey, want.GossipKeys, want.Tokens = "", nil, map[string]*Token{}
	if d := cmp.Diff(want, pub, stateOpts...); d != "" {
		t.Errorf("Public dropped more than the secrets (-want +got):\n%s", d)
	}
	if d := cmp.Diff(frozen, st, stateOpts...); d != "" {
		t.Errorf("Public changed the original (-was +now):\n%s", d)
	}
	// On the wire, nothing secret either.
	b, err := json.Marshal(pub)
	if err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{"ca-key-pem", initCmd().GossipKeys[0], tokClient.hash(), tokClient.id} {
		if bytes.Contains(b, []byte(secret)) {
			t.Errorf("public state JSON contains %q", secret)
		}
	}
}

func TestFSMWait(t *testing.T) {
	f := fixtureFSM(t)
	st := f.State()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	if got := f.Wait(ctx, st.Index-1); got != st {
		t.Fatalf("Wait for an older index returned index %d, want the current state", got.Index)
	}
	if ctx.Err() != nil {
		t.Fatalf("Wait for an older index did not return at once")
	}

	done := make(chan *State, 1)
	go func() { done <- f.Wait(ctx, st.Index) }()
	select {
	case got := <-done:
		t.Fatalf("Wait returned index %d before anything newer was applied", got.Index)
	default:
	}
	mustApply(t, f, st.Index+1, tokenCmd(fixtureToken{"d4d4d4d4d4d4d4d4", "s"}, false, t0.Add(time.Hour), 1))
	select {
	case got := <-done:
		if got.Index != st.Index+1 {
			t.Errorf("Wait returned index %d, want %d", got.Index, st.Index+1)
		}
	case <-ctx.Done():
		t.Fatal("Wait did not return after a newer Apply")
	}

	// A refused command is news too: the index moved.
	go func() { done <- f.Wait(ctx, st.Index+1) }()
	if err := applyLog(t, f, &raft.Log{Index: st.Index + 2, Data: []byte("garbage")}); err == nil {
		t.Fatal("garbage applied")
	}
	select {
	case got := <-done:
		if got.Index != st.Index+2 {
			t.Errorf("Wait returned index %d, want %d", got.Index, st.Index+2)
		}
	case <-ctx.Done():
		t.Fatal("Wait did not return after a refused Apply")
	}
}

func TestFSMWaitContextEnds(t *testing.T) {
	f := fixtureFSM(t)
	st := f.State()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if got := f.Wait(ctx, st.Index); got != st {
		t.Errorf("Wait with an ended context returned index %d, want the current state", got.Index)
	}
}

func TestFSMOnApplyHook(t *testing.T) {
	f := fixtureFSM(t)
	var seen []uint64
	f.onApply = func(st *State) { seen = append(seen, st.Index) }
	mustApply(t, f, fixtureIndex+1, tokenCmd(fixtureToken{"d5d5d5d5d5d5d5d5", "s"}, false, t0.Add(time.Hour), 1))
	_ = applyLog(t, f, &raft.Log{Index: fixtureIndex + 2, Data: []byte("x")})
	if d := cmp.Diff([]uint64{fixtureIndex + 1, fixtureIndex + 2}, seen); d != "" {
		t.Errorf("onApply calls (-want +got):\n%s", d)
	}
}

func FuzzFSMApply(f *testing.F) {
	now := t0.Add(time.Minute)
	seeds := []Command{
		{Op: OpInit, Now: now, Init: initCmd()},
		tokenCmd(fixtureToken{"d6d6d6d6d6d6d6d6", "s"}, true, t0.Add(time.Hour), 2),
		registerCmd(now, tokClient, testNode("db", RoleClient, certs(t0.Add(time.Hour), "0f01"))),
		registerCmd(now, tokServer, testNode("srv2", RoleServer, certs(t0.Add(time.Hour), "0f01", "0f02"))),
		registerCmd(now, tokClient, testNode("web", RoleClient, nil)),
		registerCmd(now, tokUsed, testNode("db", RoleClient, nil)),
		registerCmd(t0.Add(time.Hour), tokExpired, testNode("db", RoleClient, nil)),
		{Op: OpDeregister, Now: now, Deregister: &DeregisterCmd{Name: "web", Reason: "removed"}},
		{Op: OpDeregister, Now: now, Deregister: &DeregisterCmd{Name: "nope"}},
		{Op: OpToken, Now: t0.Add(1000 * time.Hour), Token: &Token{ID: "x", SecretHash: "y", UsesLeft: 1}},
	}
	for _, c := range seeds {
		b, err := json.Marshal(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("{}"))
	f.Add([]byte(`{"op":"register","register":{"token_id":"c1c1c1c1c1c1c1c1"}}`))

	// Published states are immutable, so every run can start from the same
	// one; frozen catches a run that mutates it anyway.
	before := fixtureFSM(f).State()
	frozen := deepCopy(f, before)
	f.Fuzz(func(t *testing.T, data []byte) {
		fsm := NewFSM()
		fsm.state = before
		res, ok := fsm.Apply(&raft.Log{Index: fixtureIndex + 1, Data: data}).(applyResult)
		if !ok {
			t.Fatal("Apply did not return an applyResult")
		}
		after := fsm.State()
		if after.Index != fixtureIndex+1 {
			t.Fatalf("Index = %d, want %d", after.Index, fixtureIndex+1)
		}
		if d := cmp.Diff(frozen, before, stateOpts...); d != "" {
			t.Fatalf("Apply mutated the published state (-was +now):\n%s", d)
		}
		if res.Err != nil {
			if d := cmp.Diff(frozen, after, sameContent...); d != "" {
				t.Fatalf("failed command (%v) changed the state (-before +after):\n%s", res.Err, d)
			}
			return
		}
		for id, tok := range after.Tokens {
			if tok.UsesLeft < 0 {
				t.Fatalf("token %s has %d uses left", id, tok.UsesLeft)
			}
		}
		for name, n := range after.Nodes {
			if n == nil || n.Name != name {
				t.Fatalf("registry entry %q holds %+v", name, n)
			}
		}
	})
}
