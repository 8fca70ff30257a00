package cluster

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestLocalUpdate: a node's tags and services change through OpLocal;
// tags decide segment membership, so IPAM follows; bad input changes
// nothing.
func TestLocalUpdate(t *testing.T) {
	f := fixtureFSM(t)
	mustApply(t, f, fixtureIndex+1, policyCmd(testPolicy))
	if _, ok := f.State().Nodes["web"].Segments["s"]; !ok {
		t.Fatal("web has no address in s")
	}
	svc := []Service{{Name: "postgres", Port: 5432, Tags: []string{"primary"}}}
	mustApply(t, f, fixtureIndex+2, Command{Op: OpLocal, Local: &LocalCmd{Name: "web", Tags: []string{"other"}, Services: svc}})
	n := f.State().Nodes["web"]
	if d := cmp.Diff(svc, n.Services); d != "" || len(n.Tags) != 1 || n.Tags[0] != "other" {
		t.Fatalf("web = %+v (services diff %s)", n, d)
	}
	if _, ok := n.Segments["s"]; ok {
		t.Fatal("web kept its address in s after losing the tag")
	}
	hosts := f.State().PolicyHosts()
	for _, h := range hosts {
		if h.Name == "web" && (len(h.Services) != 1 || h.Services[0] != "postgres") {
			t.Fatalf("policy host web = %+v", h)
		}
	}

	before := deepCopy(t, f.State())
	for i, c := range []LocalCmd{
		{Name: "nobody"},
		{Name: "web", Tags: []string{"Bad Tag"}},
		{Name: "web", Services: []Service{{Name: "x", Port: 0}}},
		{Name: "web", Services: []Service{{Name: "UPPER", Port: 1}}},
		{Name: "web", Services: []Service{{Name: "a", Port: 1}, {Name: "a", Port: 2}}},
	} {
		if err := applyLog(t, f, logEntry(t, uint64(fixtureIndex+3+i), Command{Op: OpLocal, Local: &c})); err == nil {
			t.Errorf("local update %+v accepted", c)
		}
	}
	if d := cmp.Diff(before, f.State(), append(stateOpts, ignoreIndex)...); d != "" {
		t.Errorf("refused updates changed the state (-before +after):\n%s", d)
	}
}
