package cluster

import (
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

const testPolicy = `
segment "s" {
  cidr    = "10.90.1.0/29"
  port    = 51821
  members = ["tag:t"]
}
`

func policyCmd(src string) Command {
	return Command{Op: OpPolicy, Now: t0, Policy: &PolicyCmd{Filename: "p.hcl", Source: src, By: "test"}}
}

func addrs(st *State, seg string) map[string]string {
	out := map[string]string{}
	for name, n := range st.Nodes {
		if ns, ok := n.Segments[seg]; ok {
			out[name] = ns.Addr
		}
	}
	return out
}

// TestPolicyIPAM: applying a policy allocates addresses, joins get the
// lowest free one, leaves release theirs, and addresses never move.
func TestPolicyIPAM(t *testing.T) {
	f := fixtureFSM(t)
	mustApply(t, f, fixtureIndex+1, policyCmd(testPolicy))
	st := f.State()
	if st.Policy == nil || st.Policy.Version != 1 || st.Policy.AppliedBy != "test" {
		t.Fatalf("policy = %+v", st.Policy)
	}
	want := map[string]string{"spent": "10.90.1.1", "srv1": "10.90.1.2", "web": "10.90.1.3"}
	if d := cmp.Diff(want, addrs(st, "s")); d != "" {
		t.Fatalf("addresses after apply (-want +got):\n%s", d)
	}

	mustApply(t, f, fixtureIndex+2, Command{Op: OpDeregister, Now: t0, Deregister: &DeregisterCmd{Name: "spent", Reason: "left"}})
	mustApply(t, f, fixtureIndex+3, tokenCmd(fixtureToken{"abababababababab", "another-secret-another-secret-01"}, false, t0.Add(time.Hour), 2))
	mustApply(t, f, fixtureIndex+4, registerCmd(t0, fixtureToken{"abababababababab", "another-secret-another-secret-01"}, testNode("new", RoleClient, certs(t0.Add(time.Hour), "0e01"))))
	want = map[string]string{"new": "10.90.1.1", "srv1": "10.90.1.2", "web": "10.90.1.3"}
	if d := cmp.Diff(want, addrs(f.State(), "s")); d != "" {
		t.Fatalf("addresses after a leave and a join (-want +got):\n%s", d)
	}

	// A second apply keeps every address and bumps the version.
	mustApply(t, f, fixtureIndex+5, policyCmd(testPolicy+"\n"))
	if v := f.State().Policy.Version; v != 2 {
		t.Fatalf("version = %d, want 2", v)
	}
	if d := cmp.Diff(want, addrs(f.State(), "s")); d != "" {
		t.Fatalf("addresses moved on re-apply (-want +got):\n%s", d)
	}
}

// TestPolicyRefused: a bad document, or one whose CIDR cannot hold its
// members, changes nothing.
func TestPolicyRefused(t *testing.T) {
	f := fixtureFSM(t)
	mustApply(t, f, fixtureIndex+1, policyCmd(testPolicy))
	before := deepCopy(t, f.State())
	for i, src := range []string{
		`segment "s" { cidr = "10.90.1.0/29" port = 51821 members = ["tag:t"] colour = "red" }`,
		`segment "s" { cidr = "10.90.1.0/30" port = 51821 members = ["tag:t"] }`,
		`rule "r" { action = "allow" from = ["segment:nope"] to = ["tag:t"] ports = ["any"] }`,
		"{{{",
	} {
		err := applyLog(t, f, logEntry(t, uint64(fixtureIndex+2+i), policyCmd(src)))
		if !errors.Is(err, ErrBadPolicy) {
			t.Errorf("policy %d: err = %v, want ErrBadPolicy", i, err)
		}
		if d := cmp.Diff(before, f.State(), append(stateOpts, ignoreIndex)...); d != "" {
			t.Errorf("policy %d changed the state (-before +after):\n%s", i, d)
		}
	}
}

// TestSegmentKey: a node registers its own public key in a segment of the
// policy; anything else is refused and changes nothing.
func TestSegmentKey(t *testing.T) {
	f := fixtureFSM(t)
	mustApply(t, f, fixtureIndex+1, policyCmd(testPolicy))
	key := "mUmFHfaOrPQ5nnTH+WwAfgpqWubvAJYRQNHxeE2xM0s="
	mustApply(t, f, fixtureIndex+2, Command{Op: OpSegmentKey, SegmentKey: &SegmentKeyCmd{Name: "web", Segment: "s", PublicKey: key}})
	if got := f.State().Nodes["web"].Segments["s"]; got.PublicKey != key || got.Addr != "10.90.1.3" {
		t.Fatalf("web in s = %+v", got)
	}
	before := deepCopy(t, f.State())
	for i, c := range []SegmentKeyCmd{
		{Name: "web", Segment: "nope", PublicKey: key},
		{Name: "nobody", Segment: "s", PublicKey: key},
		{Name: "web", Segment: "s", PublicKey: "not a key"},
		{Name: "web", Segment: "s", PublicKey: "AAAA"},
	} {
		if err := applyLog(t, f, logEntry(t, uint64(fixtureIndex+3+i), Command{Op: OpSegmentKey, SegmentKey: &c})); err == nil {
			t.Errorf("segment key %+v accepted", c)
		}
	}
	if d := cmp.Diff(before, f.State(), append(stateOpts, ignoreIndex)...); d != "" {
		t.Errorf("refused keys changed the state (-before +after):\n%s", d)
	}
}

// TestPolicyHostsFromRegistry: the compiler sees keys and addresses only
// from the registry.
func TestPolicyHostsFromRegistry(t *testing.T) {
	f := fixtureFSM(t)
	mustApply(t, f, fixtureIndex+1, policyCmd(testPolicy))
	hosts := f.State().PolicyHosts()
	if len(hosts) != 3 || hosts[2].Name != "web" || hosts[2].Segments["s"].Addr.String() != "10.90.1.3" || hosts[2].Segments["s"].PublicKey != "" {
		t.Fatalf("hosts = %+v", hosts)
	}
	doc, err := f.State().Document()
	if err != nil || doc == nil || len(doc.Segments) != 1 {
		t.Fatalf("Document() = %v, %v", doc, err)
	}
}
