package agent

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"reflect"
	"sync"
	"time"

	"github.com/weft-mesh/weft/cluster"
	"github.com/weft-mesh/weft/internal/sealed"
	"github.com/weft-mesh/weft/overlay"
	"github.com/weft-mesh/weft/policy"
)

// dataplane enforces the policy on this host: from every new state it
// compiles this host's plan, makes sure the host's public key of each of
// its segments is registered, applies the plan to the overlay and persists
// it, so that after a restart with no server reachable the host rebuilds
// its tunnels and firewall alone.
//
// Fail static: a state without a policy, or in which this host is not
// registered, changes nothing; only a newer policy or registry does. A
// control-plane outage therefore never tears a tunnel down or widens
// access.
type dataplane struct {
	self     string
	cluster  *cluster.Cluster
	overlay  *overlay.Overlay
	keys     overlay.KeyStore
	planFile string
	log      *slog.Logger

	mu       sync.Mutex
	plan     *policy.Plan // last applied
	index    uint64       // the state index plan was compiled from
	applyErr error
	unsaved  bool // plan is applied but not yet persisted (say, a full disk)
}

// savedPlan is the persisted form of the applied plan.
type savedPlan struct {
	StateIndex uint64       `json:"state_index"`
	Plan       *policy.Plan `json:"plan"`
}

// retryInterval is how soon a failed apply or key registration is tried
// again when no new state arrives.
const retryInterval = 2 * time.Second

// restore applies the persisted plan, before any server is contacted.
func (d *dataplane) restore() {
	var saved savedPlan
	ok, err := sealed.Read(d.planFile, &saved)
	if err != nil {
		d.log.Warn("ignoring the persisted plan; waiting for state from the servers", "err", err)
		return
	}
	if !ok || saved.Plan == nil {
		return
	}
	if err := d.apply(saved.Plan, saved.StateIndex); err != nil {
		d.log.Error("restoring the persisted plan failed; will retry with the next state", "err", err)
		return
	}
	d.log.Info("restored the dataplane from the persisted plan", "policy_version", saved.Plan.PolicyVersion, "segments", len(saved.Plan.Segments), "index", saved.StateIndex)
}

// run reconciles on every state change until ctx ends.
func (d *dataplane) run(ctx context.Context) {
	var index uint64
	for ctx.Err() == nil {
		wait, cancel := context.WithTimeout(ctx, retryInterval)
		st := d.cluster.WaitState(wait, index)
		cancel()
		if ctx.Err() != nil {
			return
		}
		d.persist()
		if st.Index == index && d.healthy() {
			continue
		}
		index = st.Index
		if err := d.reconcile(ctx, st); err != nil {
			d.log.Warn("dataplane: will retry", "index", st.Index, "err", err)
		}
	}
}

func (d *dataplane) healthy() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.applyErr == nil
}

// reconcile brings the host to what st implies.
func (d *dataplane) reconcile(ctx context.Context, st *cluster.State) error {
	d.mu.Lock()
	stale := st.Index < d.index
	d.mu.Unlock()
	if st.Policy == nil || stale {
		// A server that restarts replays an older snapshot before it
		// catches up: never step back to what an older state implied.
		return nil
	}
	self, ok := st.Nodes[d.self]
	if !ok {
		return nil // not (or no longer) registered: keep what we have
	}
	doc, err := st.Document()
	if err != nil {
		return d.fail(err)
	}
	hosts := st.PolicyHosts()
	var errs []error
	for seg, byHost := range policy.Assignments(doc, hosts) {
		if _, mine := byHost[d.self]; !mine {
			continue
		}
		pub, err := d.keys.Ensure(seg)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if self.Segments[seg].PublicKey == pub.String() {
			continue
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if err := d.cluster.RegisterSegmentKey(rctx, seg, pub.String()); err != nil {
			errs = append(errs, err)
		} else {
			d.log.Info("registered segment key", "segment", seg)
		}
		cancel()
	}
	plan, err := policy.Compile(doc, hosts, d.self, st.Policy.Version)
	if err != nil {
		return d.fail(errors.Join(append(errs, err)...))
	}
	errs = append(errs, d.apply(plan, st.Index))
	return d.fail(errors.Join(errs...))
}

// apply applies plan (compiled from the state at index) unless it is the
// one applied already, and persists it.
func (d *dataplane) apply(plan *policy.Plan, index uint64) error {
	d.mu.Lock()
	same := d.plan != nil && d.applyErr == nil && reflect.DeepEqual(d.plan, plan)
	d.mu.Unlock()
	if same {
		d.mu.Lock()
		d.index = max(d.index, index)
		d.mu.Unlock()
		return nil
	}
	start := time.Now()
	err := d.overlay.Apply(plan)
	if err == nil {
		d.cluster.SetPolicyApplied(plan.PolicyVersion)
		d.log.Info("dataplane applied", "policy_version", plan.PolicyVersion, "segments", len(plan.Segments), "rules", len(plan.Firewall), "took", time.Since(start).Round(time.Microsecond))
	}
	d.mu.Lock()
	d.plan, d.applyErr = plan, err
	if err == nil {
		d.index, d.unsaved = index, true
	}
	d.mu.Unlock()
	d.persist()
	return err
}

// persist writes the applied plan if it is not on disk yet. A failed
// write (a full disk) is tried again on every pass of run, so that the
// file never stays behind what is enforced: a host restarted without
// servers must come back to the current plan, not an older, maybe wider
// one.
func (d *dataplane) persist() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.unsaved || d.plan == nil {
		return
	}
	if err := sealed.Write(d.planFile, savedPlan{StateIndex: d.index, Plan: d.plan}); err != nil {
		d.log.Error("could not persist the plan; will retry", "policy_version", d.plan.PolicyVersion, "err", err)
		return
	}
	d.unsaved = false
}

func (d *dataplane) fail(err error) error {
	if err != nil {
		d.mu.Lock()
		d.applyErr = err
		d.mu.Unlock()
	}
	return err
}

// check reports the dataplane's health.
func (d *dataplane) check() (ok bool, reason string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.applyErr != nil {
		return false, d.applyErr.Error()
	}
	return true, ""
}

// cleanup removes the interfaces, the firewall table, the keys and the
// persisted plan (after leaving, or weft agent -cleanup).
func (d *dataplane) cleanup() error {
	err := d.overlay.Cleanup()
	if rerr := os.RemoveAll(d.keys.Dir); rerr != nil {
		err = errors.Join(err, rerr)
	}
	if rerr := os.Remove(d.planFile); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		err = errors.Join(err, rerr)
	}
	d.cluster.SetPolicyApplied(0)
	return err
}

// status returns the host's segments as the overlay reports them.
func (d *dataplane) status() ([]overlay.SegmentStatus, error) { return d.overlay.Status() }

// ruleActions maps the counters of the applied plan's firewall rules to
// their actions, for the flow metrics.
func (d *dataplane) ruleActions() map[string]string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[string]string{}
	if d.plan != nil {
		for _, r := range d.plan.Firewall {
			out[r.Counter] = string(r.Action)
		}
	}
	return out
}
