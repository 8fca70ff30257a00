package e2e

// Fault scenarios: a leader killed during policy writes, a partitioned
// server, every server down, a full disk, corrupt persisted files, kill -9
// in a loop and packet loss on every underlay. Each runs on its own bed, in
// parallel with the others, and checks what must keep working as well as
// what must not happen (a lost acknowledged write, two leaders in a term,
// a commit by a minority, a lost packet, a flapped interface, a torn file
// that gets loaded, a host declared dead). The tools are in
// faulthelpers_test.go.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// 1. The leader is killed while a client applies policy after policy and
// two clients ping each other: the survivors elect one leader, no
// acknowledged write is lost or reordered, and no echo request is lost.
func TestFaultLeaderKilledDuringWrites(t *testing.T) {
	t.Parallel()
	b, snap, _ := faultBed(t, []string{"s1", "s2", "s3"}, []string{"c1", "c2"})
	servers, all := b.Select("s1", "s2", "s3"), b.Hosts()
	c1 := b.Host("c1")
	dst := snap.addr("c2", "app")
	Eventually(t, probeRetryFor, func() (bool, string) {
		return pingOnce(c1, dst, 500*time.Millisecond), "no answer from c2 at " + dst.String()
	})
	leader, seen := faultLeader(servers)
	if leader == "" {
		t.Fatalf("the servers do not agree on a leader: %s", seen)
	}
	old := b.Host(leader)
	survivors := without(servers, old)

	flow := startFaultPing(t, c1, dst, 60)
	w := startFaultWriter(t, servers, 150*time.Millisecond)
	w.waitAcked(t, 5, time.Time{}, upTimeout)

	killed := time.Now()
	if err := old.Kill(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, err := old.Wait(killTimeout); err != nil {
		t.Fatal(err)
	}
	var newLeader string
	took := Eventually(t, failoverDeadline, func() (bool, string) {
		l, seen := faultLeader(survivors)
		if l == "" || l == old.Name {
			return false, seen
		}
		newLeader = l
		return true, ""
	})
	Figure(t, "fault_leader_election_during_writes", took.Seconds(), "s")
	t.Logf("leader %s killed; %s elected after %v", old.Name, newLeader, took.Round(time.Millisecond))

	// Writes go on after the election, through whichever server answers.
	w.waitAcked(t, 5, killed.Add(took), failoverDeadline)
	flow.wait(t, "across the leader's death and a stream of policy writes")
	w.halt()
	t.Logf("policy writes: %s", w.summary())

	var final PolicyInfo
	Eventually(t, upTimeout, func() (bool, string) {
		var ps []PolicyInfo
		for _, s := range survivors {
			p, err := faultPolicyOn(s)
			if err != nil {
				return false, err.Error()
			}
			ps = append(ps, p)
		}
		if ps[0].Version != ps[1].Version || ps[0].Source != ps[1].Source {
			return false, fmt.Sprintf("%s holds version %d, %s version %d", survivors[0].Name, ps[0].Version, survivors[1].Name, ps[1].Version)
		}
		final = ps[0]
		return true, ""
	})
	w.checkAcked(t, final)

	// The old leader comes back as a follower of the same cluster: one
	// leader that every agent names, the same state everywhere.
	old.Start(t)
	Eventually(t, formTimeout, func() (bool, string) { return agreement(all, names(all)) })
	for _, s := range servers {
		p, err := faultPolicyOn(s)
		if err != nil {
			t.Fatal(err)
		}
		if p.Version != final.Version || p.Source != final.Source {
			t.Errorf("%s holds policy version %d, the others %d", s.Name, p.Version, final.Version)
		}
	}
	faultOneLeaderPerTerm(t, servers)
	Eventually(t, settleTimeout, func() (bool, string) {
		vs, err := policyVersions(survivors[0])
		if err != nil {
			return false, err.Error()
		}
		for _, n := range faultClients {
			if vs[n] != final.Version {
				return false, fmt.Sprintf("policy versions %v, want %d on the clients", vs, final.Version)
			}
		}
		return true, ""
	})
}

// 2. One server is cut off from the other two, first both ways, then
// only what it receives: it commits nothing and its state stays, the
// majority goes on, every host keeps enforcing the policy, and once the
// cut heals all agree again without anybody doing anything.
func TestFaultPartition(t *testing.T) {
	t.Parallel()
	b, snap, v := faultBed(t, []string{"s1", "s2", "s3"}, []string{"c1", "c2"})
	servers, all := b.Select("s1", "s2", "s3"), b.Hosts()
	c1, c2 := b.Host("c1"), b.Host("c2")
	a1, a2 := snap.addr("c1", "app"), snap.addr("c2", "app")
	Eventually(t, probeRetryFor, func() (bool, string) {
		return pingOnce(c1, a2, 500*time.Millisecond) && pingOnce(c2, a1, 500*time.Millisecond), "c1 and c2 do not answer each other"
	})

	for i, tc := range []struct {
		name, figure string
		both         bool
	}{
		{"both directions", "fault_partition_heal_agree", true},
		{"inbound only", "fault_partition_inbound_heal_agree", false},
	} {
		leader, seen := faultLeader(servers)
		if leader == "" {
			t.Fatalf("the servers do not agree on a leader: %s", seen)
		}
		// The minority is a follower: cutting off the leader would be the
		// election scenario again.
		victim := b.Host("s3")
		if leader == victim.Name {
			victim = b.Host("s2")
		}
		majority := without(servers, victim)
		t.Logf("--- %s is cut off from %v, %s", victim.Name, names(majority), tc.name)
		idx0, err := faultStateIndex(victim)
		if err != nil {
			t.Fatal(err)
		}
		marks := map[*Host]int{}
		for _, s := range servers {
			marks[s] = faultLogMark(s)
		}
		faultIsolate(t, victim, majority, tc.both)
		cut := time.Now()

		// The minority is asked to commit; it must not.
		path := filepath.Join(victim.Dir, fmt.Sprintf("minority%d.hcl", i))
		if err := os.WriteFile(path, []byte(faultPolicy(900+i)), 0o600); err != nil {
			t.Fatal(err)
		}
		type result struct {
			out  string
			err  error
			took time.Duration
		}
		minority := make(chan result, 1)
		go func() {
			start := time.Now()
			out, _, err := victim.CLI("policy", "apply", path)
			minority <- result{out, err, time.Since(start)}
		}()

		// The majority commits (a token is a Raft write that changes no
		// policy).
		Eventually(t, failoverDeadline, func() (bool, string) {
			_, _, err := majority[0].CLI("token", "create")
			return err == nil, fmt.Sprint(err)
		})
		var idx1 uint64
		Eventually(t, upTimeout, func() (bool, string) {
			var idx []uint64
			for _, s := range majority {
				n, err := faultStateIndex(s)
				if err != nil {
					return false, err.Error()
				}
				idx = append(idx, n)
			}
			idx1 = idx[0]
			return idx[0] == idx[1] && idx[0] > idx0, fmt.Sprintf("majority state indexes %v, minority was at %d", idx, idx0)
		})

		// Both sides keep enforcing the policy: the clients reach each
		// other without a loss, and both report version v, as the majority
		// side (c1) and the cut-off server see them.
		f1, f2 := startFaultPing(t, c1, a2, 15), startFaultPing(t, c2, a1, 15)
		Consistently(t, 3*time.Second, func() (bool, string) {
			n, err := faultStateIndex(victim)
			if err != nil {
				return false, err.Error()
			}
			if n != idx0 {
				return false, fmt.Sprintf("the cut-off %s moved from state index %d to %d", victim.Name, idx0, n)
			}
			for _, via := range []*Host{c1, victim} {
				vs, err := policyVersions(via)
				if err != nil {
					return false, err.Error()
				}
				for _, n := range faultClients {
					if vs[n] != v {
						return false, fmt.Sprintf("%s reports policy versions %v, want %d on the clients", via.Name, vs, v)
					}
				}
			}
			return true, ""
		})
		f1.wait(t, "while "+victim.Name+" is cut off")
		f2.wait(t, "while "+victim.Name+" is cut off")

		var r result
		select {
		case r = <-minority:
		case <-time.After(cliTimeout + 10*time.Second):
			t.Fatalf("policy apply on the cut-off %s did not return", victim.Name)
		}
		if r.err == nil {
			t.Errorf("policy apply on the cut-off %s succeeded after %v: %q", victim.Name, r.took, r.out)
		} else {
			t.Logf("policy apply on the cut-off %s failed after %v, as it must: %v", victim.Name, r.took.Round(time.Millisecond), r.err)
		}
		if n, err := faultStateIndex(victim); err != nil || n != idx0 {
			t.Errorf("the cut-off %s: state index %d (%v), want it to stay at %d", victim.Name, n, err, idx0)
		}

		t.Logf("%s was cut off for %v", victim.Name, time.Since(cut).Round(time.Millisecond))
		faultHeal(t, victim)
		took := Eventually(t, formTimeout, func() (bool, string) { return agreement(all, names(all)) })
		Figure(t, tc.figure, took.Seconds(), "s")

		// What the minority was asked to commit never surfaces; what the
		// majority committed reaches it.
		for _, s := range servers {
			p, err := faultPolicyOn(s)
			if err != nil {
				t.Fatal(err)
			}
			if p.Version != v || p.Source != policyApp {
				t.Errorf("after healing, %s holds policy version %d (from %s), want %d: the minority's write surfaced?", s.Name, p.Version, p.Filename, v)
			}
		}
		if n, err := faultStateIndex(victim); err != nil || n < idx1 {
			t.Errorf("after healing, %s is at state index %d (%v), want at least the majority's %d", victim.Name, n, err, idx1)
		}
		// Not asserted: Raft allows the majority to elect again (on a
		// loaded machine a heartbeat can be late), but with pre-vote the
		// returning minority should not force it. Who started elections
		// is logged for the record.
		if l, seen := faultLeader(servers); l != leader {
			var why []string
			for _, s := range servers {
				for _, line := range faultLogLines(faultLogSince(s, marks[s]), "subsystem=raft") {
					if strings.Contains(line, "heartbeat timeout") || strings.Contains(line, "failed to contact") ||
						strings.Contains(line, "election won") || strings.Contains(line, "lost leadership") {
						why = append(why, s.Name+": "+line)
					}
				}
			}
			t.Logf("the leader changed from %s to %q across the partition: %s\n%s", leader, l, seen, strings.Join(why, "\n"))
		}
	}
}

// 3. Every server is down for a while: tunnels and DNS keep working, a
// restarted client comes back from its own copy, and when the servers
// return nothing on the clients changes: no interface recreated, no peer
// replaced, no new handshake forced.
func TestFaultAllServersDown(t *testing.T) {
	t.Parallel()
	// Operators care about outages of minutes; one minute keeps this
	// scenario's share of the CI budget bounded and is already far beyond
	// every timeout that could fire (gossip's dead timeout, the long poll's
	// 30 s, sync backoff up to 10 s).
	const outage = 60 * time.Second
	b, snap, v := faultBed(t, []string{"s1", "s2", "s3"}, []string{"c1", "c2"})
	servers, clients, all := b.Select("s1", "s2", "s3"), b.Select("c1", "c2"), b.Hosts()
	c1, c2 := b.Host("c1"), b.Host("c2")
	a1, a2 := snap.addr("c1", "app"), snap.addr("c2", "app")
	hidden := []string{"s1", "s2", "s3"} // no segment in common: never answered
	working := func() (bool, string) {
		if !pingOnce(c1, a2, 500*time.Millisecond) || !pingOnce(c2, a1, 500*time.Millisecond) {
			return false, "c1 and c2 do not answer each other"
		}
		if ok, seen := faultDNSAnswers(c1, "c2", a2, hidden...); !ok {
			return false, seen
		}
		return faultDNSAnswers(c2, "c1", a1, hidden...)
	}
	Eventually(t, probeRetryFor, working)
	if1, if2 := faultIfindex(t, c1, "app"), faultIfindex(t, c2, "app")

	flow := startFaultPing(t, c1, a2, 100)
	for _, s := range servers {
		if err := s.Kill(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range servers {
		if _, err := s.Wait(killTimeout); err != nil {
			t.Fatal(err)
		}
	}
	down := time.Now()
	// checkWorking checks once a second until the deadline, not every
	// 100ms: each round is a dozen processes.
	checkWorking := func(until time.Time, what string) {
		t.Helper()
		for time.Now().Before(until) {
			next := time.Now().Add(time.Second)
			if ok, seen := working(); !ok {
				t.Fatalf("%s, %v after the servers died: %s", what, time.Since(down).Round(time.Millisecond), seen)
			}
			time.Sleep(time.Until(next)) // pacing of a bounded loop
		}
	}
	checkWorking(time.Now().Add(10*time.Second), "with every server down")
	flow.wait(t, "while every server dies and stays down")
	after, err := takeSnapshot(clients)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(snap.stable().only("c1", "c2"), after.stable()); diff != "" {
		t.Errorf("the clients' segments changed with the servers down (-before +after):\n%s", diff)
	}

	// A client restarted meanwhile rebuilds from what it persisted.
	mark := faultLogMark(c2)
	idxBefore, err := faultStateIndex(c2)
	if err != nil {
		t.Fatal(err)
	}
	c2.Stop(t)
	restarted := time.Now()
	c2.Start(t)
	Eventually(t, upTimeout, func() (bool, string) {
		return pingOnce(c1, a2, 500*time.Millisecond) && pingOnce(c2, a1, 500*time.Millisecond), "c1 and c2 do not answer each other"
	})
	Figure(t, "fault_all_servers_down_client_restart_tunnel", time.Since(restarted).Seconds(), "s")
	Eventually(t, upTimeout, working)
	log := faultLogSince(c2, mark)
	if len(faultLogLines(log, "restored the dataplane from the persisted plan")) == 0 {
		t.Errorf("c2 did not restore its persisted plan at start:\n%s", tail(log, 30))
	}
	for _, bad := range []string{"ignoring persisted state", "ignoring the persisted plan"} {
		if l := faultLogLines(log, bad); len(l) > 0 {
			t.Errorf("c2 refused its own files at restart: %v", l)
		}
	}
	if st, err := c2.Status(); err != nil || !st.Joined || st.StateIndex != idxBefore {
		t.Errorf("c2 after the restart: %+v (%v), want joined at state index %d", st, err, idxBefore)
	}
	Eventually(t, upTimeout, func() (bool, string) {
		s, err := takeSnapshot(clients)
		if err != nil {
			return false, err.Error()
		}
		diff := cmp.Diff(snap.stable().only("c1", "c2"), s.stable())
		return diff == "", "segments after c2's restart (-before +after):\n" + diff
	})
	if n := faultIfindex(t, c1, "app"); n != if1 {
		t.Errorf("c1's wf-app was recreated with the servers down: ifindex %d, was %d", n, if1)
	}
	if2 = faultIfindex(t, c2, "app") // embedded wireguard-go: the device died with the process

	checkWorking(down.Add(outage), "with every server down")
	Figure(t, "fault_all_servers_down_window", time.Since(down).Seconds(), "s")

	// The servers come back. Nothing on the clients flaps.
	before, err := takeSnapshot(clients)
	if err != nil {
		t.Fatal(err)
	}
	marks := map[string]int{"c1": faultLogMark(c1), "c2": faultLogMark(c2)}
	flow = startFaultPing(t, c1, a2, 75)
	for _, s := range servers {
		s.Start(t)
	}
	took := Eventually(t, formTimeout, func() (bool, string) { return agreement(all, names(all)) })
	Figure(t, "fault_all_servers_back_agree", took.Seconds(), "s")
	flow.wait(t, "while the servers come back")
	after, err = takeSnapshot(clients)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before, after, cmp.Comparer(func(a, b SegmentPeer) bool {
		return a.Name == b.Name && a.PublicKey == b.PublicKey && a.Endpoint == b.Endpoint &&
			slices.Equal(a.AllowedIPs, b.AllowedIPs) && a.LastHandshake.Equal(b.LastHandshake)
	})); diff != "" {
		t.Errorf("the clients' segments or handshakes changed when the servers came back (-before +after):\n%s", diff)
	}
	for h, want := range map[*Host]int{c1: if1, c2: if2} {
		if n := faultIfindex(t, h, "app"); n != want {
			t.Errorf("%s's wf-app was recreated when the servers came back: ifindex %d, was %d", h.Name, n, want)
		}
		log := faultLogSince(h, marks[h.Name])
		for _, flap := range []string{"segment created", "segment updated", "interface removed", "dataplane applied"} {
			if l := faultLogLines(log, flap); len(l) > 0 {
				t.Errorf("%s when the servers came back: %v", h.Name, l)
			}
		}
	}
	vs, err := policyVersions(b.Host("s1"))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range faultClients {
		if vs[n] != v {
			t.Errorf("policy versions %v after the outage, want %d on the clients", vs, v)
			break
		}
	}
}

// 4. A client's disk fills up while the policy changes: it says so, keeps
// enforcing the new policy, never replaces a good file with a torn one,
// comes back from the last good files when restarted on the full disk, and
// catches up on disk once there is room again.
func TestFaultDiskFull(t *testing.T) {
	t.Parallel()
	// c1's data dir is a 2 MiB tmpfs, mounted in the root mount namespace
	// before its agent starts: the agent's own mount namespace (Start)
	// is a copy, so it sees the same file system, and so does the filler
	// written from here.
	b, snap, v := faultBedWith(t, []string{"s1"}, []string{"c1", "c2"}, func(b *Bed) {
		c1 := b.Host("c1")
		if err := os.Mkdir(c1.DataDir, 0o700); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=2m,mode=0700", "tmpfs", c1.DataDir).CombinedOutput(); err != nil {
			t.Fatalf("mount tmpfs at %s: %v: %s", c1.DataDir, err, out)
		}
		// Runs before the bed's cleanup: the agent goes first, then the
		// mount (lazily, should anything still hold it).
		t.Cleanup(func() {
			if c1.Running() {
				c1.Kill(syscall.SIGKILL)
				c1.Wait(killTimeout)
			}
			if out, err := exec.Command("umount", "-l", c1.DataDir).CombinedOutput(); err != nil {
				t.Errorf("umount %s: %v: %s", c1.DataDir, err, out)
			}
		})
	})
	s1, c1 := b.Host("s1"), b.Host("c1")
	a2 := snap.addr("c2", "app")
	Eventually(t, probeRetryFor, func() (bool, string) {
		return pingOnce(c1, a2, 500*time.Millisecond), "no answer from c2 at " + a2.String()
	})
	Eventually(t, upTimeout, func() (bool, string) {
		_, _, pv, err := faultOnDisk(c1)
		return err == nil && pv == v, fmt.Sprintf("c1's files: plan of version %d, %v", pv, err)
	})
	goodState, goodPlan := readFile(t, c1.DataFile("state.json")), readFile(t, c1.DataFile("plan.json"))
	goodIdx, _, _, err := faultOnDisk(c1)
	if err != nil {
		t.Fatal(err)
	}
	untouched := func(when string) {
		t.Helper()
		if !bytes.Equal(goodState, readFile(t, c1.DataFile("state.json"))) || !bytes.Equal(goodPlan, readFile(t, c1.DataFile("plan.json"))) {
			t.Errorf("%s: c1's state.json or plan.json changed while the disk is full", when)
		}
		if _, _, _, err := faultOnDisk(c1); err != nil {
			t.Errorf("%s: %v", when, err)
		}
		ents, err := os.ReadDir(c1.DataDir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if strings.Contains(e.Name(), ".tmp") {
				t.Errorf("%s: a temp file was left in c1's data dir: %s", when, e.Name())
			}
		}
	}

	mark := faultLogMark(c1)
	filler := filepath.Join(c1.DataDir, "filler")
	out, err := exec.Command("dd", "if=/dev/zero", "of="+filler, "bs=64k").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "No space left") {
		t.Fatalf("dd did not fill c1's data dir: %v: %s", err, out)
	}
	full := time.Now()

	// The policy changes while c1 cannot write.
	var last uint64
	for i := 1; i <= 3; i++ {
		last = applyPolicy(t, s1, fmt.Sprintf("full%d.hcl", i), faultPolicy(i))
	}
	Eventually(t, settleTimeout, func() (bool, string) {
		vs, err := policyVersions(s1)
		if err != nil {
			return false, err.Error()
		}
		return vs["c1"] == last, fmt.Sprintf("policy versions %v, want c1 at %d", vs, last)
	})
	Eventually(t, upTimeout, func() (bool, string) {
		l := faultLogLines(faultLogSince(c1, mark), "no space left on device")
		return len(l) > 0, "c1 logged nothing about the full disk"
	})
	t.Logf("c1 says: %s", strings.Join(faultLogLines(faultLogSince(c1, mark), "no space left on device"), "\n"))
	untouched("with the disk full")

	// Restarted on the full disk, c1 comes back from the last good files
	// and then follows the servers in memory.
	mark = faultLogMark(c1)
	c1.Stop(t)
	c1.Start(t)
	Eventually(t, upTimeout, func() (bool, string) {
		st, err := c1.Status()
		if err != nil {
			return false, err.Error()
		}
		want, err := faultStateIndex(s1)
		if err != nil {
			return false, err.Error()
		}
		return st.Joined && st.StateIndex == want, fmt.Sprintf("c1: joined=%t state index %d, s1 at %d", st.Joined, st.StateIndex, want)
	})
	Eventually(t, probeRetryFor, func() (bool, string) {
		return pingOnce(c1, a2, 500*time.Millisecond), "no answer from c2 after c1's restart on a full disk"
	})
	log := faultLogSince(c1, mark)
	if l := faultLogLines(log, "restored the dataplane from the persisted plan"); len(l) == 0 {
		t.Errorf("c1 did not restore its last good plan (state index %d) on the full disk:\n%s", goodIdx, tail(log, 30))
	}
	for _, bad := range []string{"ignoring persisted state", "ignoring the persisted plan"} {
		if l := faultLogLines(log, bad); len(l) > 0 {
			t.Errorf("c1 refused its files after a restart on the full disk: %v", l)
		}
	}
	if !c1.Running() {
		t.Fatalf("c1's agent exited on the full disk")
	}
	want, err := faultStateIndex(s1)
	if err != nil {
		t.Fatal(err)
	}
	// The restarted agent has tried, and failed, to write the state it
	// synced: the files on disk are now behind what it enforces.
	Eventually(t, upTimeout, func() (bool, string) {
		l := faultLogLines(faultLogSince(c1, mark), "could not persist state", fmt.Sprintf("index=%d", want), "no space left on device")
		return len(l) > 0, fmt.Sprintf("c1 has not tried to persist state index %d yet", want)
	})
	untouched("after a restart on the full disk")

	// Room again: the files catch up, with no further change in the
	// cluster to prompt a write.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	t.Logf("the disk was full for %v", time.Since(full).Round(time.Millisecond))
	took := Eventually(t, 20*time.Second, func() (bool, string) {
		idx, sv, pv, err := faultOnDisk(c1)
		if err != nil {
			return false, err.Error()
		}
		return idx == want && sv == last && pv == last, fmt.Sprintf("c1's files: state index %d with policy %d, plan of policy %d; c1 enforces policy %d at state index %d",
			idx, sv, pv, last, want)
	})
	if n, err := faultStateIndex(s1); err != nil || n != want {
		t.Logf("the cluster moved on meanwhile (state index %d, %v)", n, err)
	}
	Figure(t, "fault_disk_full_files_caught_up", took.Seconds(), "s")
}

// 5. A client's persisted state and plan are altered while it is down: it
// refuses both (their checksums), gets the state from the servers again
// and ends where everybody else is, with a working tunnel.
func TestFaultCorruptState(t *testing.T) {
	t.Parallel()
	b, snap, v := faultBed(t, []string{"s1"}, []string{"c1", "c2"})
	s1, c1, c2 := b.Host("s1"), b.Host("c1"), b.Host("c2")
	a1, a2 := snap.addr("c1", "app"), snap.addr("c2", "app")
	Eventually(t, upTimeout, func() (bool, string) {
		_, _, pv, err := faultOnDisk(c1)
		return err == nil && pv == v, fmt.Sprintf("c1's files: plan of version %d, %v", pv, err)
	})
	c1.Stop(t)
	for _, f := range []string{"state.json", "plan.json"} {
		path := c1.DataFile(f)
		raw := readFile(t, path)
		bad := faultFlipDigit(t, raw)
		if err := os.WriteFile(path, bad, 0o600); err != nil {
			t.Fatal(err)
		}
		// Still JSON: only the checksum can tell.
		var sf faultSealedFile
		if err := json.Unmarshal(bad, &sf); err != nil {
			t.Fatalf("%s no longer parses; the test meant to alter a digit only: %v", f, err)
		}
		if err := faultReadSealed(path, &faultPersistedState{}); err == nil || !strings.Contains(err.Error(), "checksum") {
			t.Fatalf("%s altered, but its checksum still matches (%v)", f, err)
		}
	}
	mark := faultLogMark(c1)
	c1.Start(t)
	started := time.Now()
	Eventually(t, upTimeout, func() (bool, string) {
		log := faultLogSince(c1, mark)
		s := faultLogLines(log, "ignoring persisted state", "checksum")
		p := faultLogLines(log, "ignoring the persisted plan", "checksum")
		return len(s) > 0 && len(p) > 0, "c1 has not said that it refuses both files:\n" + tail(log, 20)
	})
	t.Logf("c1 says:\n%s", strings.Join(faultLogLines(faultLogSince(c1, mark), "ignoring"), "\n"))
	took := Eventually(t, upTimeout, func() (bool, string) {
		st, err := c1.Status()
		if err != nil {
			return false, err.Error()
		}
		want, err := faultStateIndex(s1)
		if err != nil {
			return false, err.Error()
		}
		if !st.Joined || st.StateIndex != want {
			return false, fmt.Sprintf("c1: joined=%t state index %d, s1 at %d; checks %+v", st.Joined, st.StateIndex, want, st.Checks)
		}
		if !pingOnce(c1, a2, 500*time.Millisecond) || !pingOnce(c2, a1, 500*time.Millisecond) {
			return false, "c1 and c2 do not answer each other"
		}
		return true, ""
	})
	Figure(t, "fault_corrupt_state_resynced", time.Since(started).Seconds(), "s")
	t.Logf("c1 back in step %v after its start", took.Round(time.Millisecond))
	if l := faultLogLines(faultLogSince(c1, mark), "restored the dataplane from the persisted plan"); len(l) > 0 {
		t.Errorf("c1 restored a plan from the altered plan.json: %v", l)
	}
	// The same interfaces and peers as before, and good files again.
	Eventually(t, upTimeout, func() (bool, string) {
		s, err := takeSnapshot([]*Host{c1})
		if err != nil {
			return false, err.Error()
		}
		diff := cmp.Diff(snap.stable().only("c1"), s.stable())
		return diff == "", "c1's segments (-before +after):\n" + diff
	})
	Eventually(t, upTimeout, func() (bool, string) {
		want, err := faultStateIndex(s1)
		if err != nil {
			return false, err.Error()
		}
		idx, _, pv, err := faultOnDisk(c1)
		return err == nil && idx == want && pv == v, fmt.Sprintf("c1's files: state index %d, plan of version %d, %v; want %d, %d", idx, pv, err, want, v)
	})
}

// 6. kill -9 at random moments while policies are written: clients every
// round, a server (one at a time, so a quorum stays) every fifth. Every
// restart comes back with the same identity and catches up with the
// cluster.
func TestFaultKill9Loop(t *testing.T) {
	t.Parallel()
	const rounds = 20
	b, snap, _ := faultBed(t, []string{"s1", "s2", "s3"}, []string{"c1", "c2"})
	servers, all := b.Select("s1", "s2", "s3"), b.Hosts()
	c1, c2 := b.Host("c1"), b.Host("c2")
	a1, a2 := snap.addr("c1", "app"), snap.addr("c2", "app")
	reg := registry(t, b.Host("s1"))
	certs := map[string][]byte{}
	for _, h := range all {
		certs[h.Name] = readFile(t, h.DataFile("node.crt"))
	}
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 0))
	t.Logf("seed %d", seed)

	w := startFaultWriter(t, servers, 100*time.Millisecond)
	w.waitAcked(t, 2, time.Time{}, upTimeout)
	var took []time.Duration
	for r := 1; r <= rounds; r++ {
		victim := []*Host{c1, c2}[r%2]
		if r%5 == 0 {
			victim = servers[rng.IntN(len(servers))]
		}
		live := without(servers, victim)
		// A random moment in the stream of writes: the only way to pick
		// one is to wait for it.
		time.Sleep(time.Duration(rng.IntN(700)) * time.Millisecond)
		if err := victim.Kill(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if _, err := victim.Wait(killTimeout); err != nil {
			t.Fatal(err)
		}
		killed := time.Now()
		victim.Start(t)
		// Back: joined, knowing a leader, and at least at the index the
		// cluster had when it came back.
		var target uint64
		for _, s := range live {
			if n, err := faultStateIndex(s); err == nil {
				target = max(target, n)
			}
		}
		Eventually(t, upTimeout, func() (bool, string) {
			st, err := victim.Status()
			if err != nil {
				return false, err.Error()
			}
			return st.Joined && st.Leader != "" && st.StateIndex >= target,
				fmt.Sprintf("round %d: %s: joined=%t leader=%q state index %d, want ≥ %d", r, victim.Name, st.Joined, st.Leader, st.StateIndex, target)
		})
		took = append(took, time.Since(killed))
		if !bytes.Equal(certs[victim.Name], readFile(t, victim.DataFile("node.crt"))) {
			t.Errorf("round %d: %s has a new node.crt after kill -9", r, victim.Name)
		}
		if got := registry(t, live[0])[victim.Name]; !slices.Equal(got, reg[victim.Name]) {
			t.Errorf("round %d: %s's serials went from %v to %v", r, victim.Name, reg[victim.Name], got)
		}
	}
	slices.Sort(took)
	Figure(t, "fault_kill9_back_in_step_median", took[len(took)/2].Seconds(), "s")
	Figure(t, "fault_kill9_back_in_step_max", took[len(took)-1].Seconds(), "s")

	w.waitAcked(t, 2, time.Now(), failoverDeadline)
	w.halt()
	t.Logf("policy writes: %s", w.summary())
	Eventually(t, formTimeout, func() (bool, string) { return agreement(all, names(all)) })
	final, err := faultPolicyOn(b.Host("s1"))
	if err != nil {
		t.Fatal(err)
	}
	w.checkAcked(t, final)
	for _, s := range servers[1:] {
		if p, err := faultPolicyOn(s); err != nil || p.Version != final.Version || p.Source != final.Source {
			t.Errorf("%s holds policy version %d (%v), s1 %d", s.Name, p.Version, err, final.Version)
		}
	}
	if diff := cmp.Diff(reg, registry(t, b.Host("s1"))); diff != "" {
		t.Errorf("the registry changed across %d kills (-before +after):\n%s", rounds, diff)
	}
	faultOneLeaderPerTerm(t, servers)
	// Every host enforces the last policy and has it on disk; the tunnel
	// works.
	want, err := faultStateIndex(b.Host("s1"))
	if err != nil {
		t.Fatal(err)
	}
	Eventually(t, settleTimeout, func() (bool, string) {
		vs, err := policyVersions(b.Host("s1"))
		if err != nil {
			return false, err.Error()
		}
		for _, n := range faultClients {
			if vs[n] != final.Version {
				return false, fmt.Sprintf("policy versions %v, want %d on the clients", vs, final.Version)
			}
		}
		for _, c := range []*Host{c1, c2} {
			idx, sv, pv, err := faultOnDisk(c)
			if err != nil || idx != want || sv != final.Version || pv != final.Version {
				return false, fmt.Sprintf("%s's files: state index %d with policy %d, plan of policy %d, %v; want %d, %d", c.Name, idx, sv, pv, err, want, final.Version)
			}
		}
		return true, ""
	})
	Eventually(t, probeRetryFor, func() (bool, string) {
		return pingOnce(c1, a2, 500*time.Millisecond) && pingOnce(c2, a1, 500*time.Millisecond), "c1 and c2 do not answer each other"
	})
}

// 7. 5% of the packets every host receives on its underlay are lost for a
// minute: nobody is ever declared dead, and the leader stays.
func TestFaultPacketLoss(t *testing.T) {
	// Not parallel: this is about lost packets, not about a CPU shared
	// with every other scenario. Run alone, a starved leader missing its
	// lease cannot pass for a lossy network.
	const (
		window  = 60 * time.Second
		percent = 5
	)
	b, snap, _ := faultBed(t, []string{"s1", "s2", "s3"}, []string{"c1", "c2"})
	servers, all := b.Select("s1", "s2", "s3"), b.Hosts()
	c1, c2 := b.Host("c1"), b.Host("c2")
	leader, seen := faultLeader(servers)
	if leader == "" {
		t.Fatalf("the servers do not agree on a leader: %s", seen)
	}
	marks := map[string]int{}
	for _, s := range servers {
		marks[s.Name] = faultLogMark(s)
	}
	for _, h := range all {
		faultLoss(t, h, percent)
	}
	start := time.Now()
	polls := 0
	for time.Since(start) < window {
		next := time.Now().Add(time.Second)
		for _, v := range observe(all) {
			if v.err != nil {
				t.Fatal(v.err)
			}
			if !slices.Equal(v.memberNames(), names(all)) {
				t.Fatalf("%v into the loss: %s lists members %v", time.Since(start).Round(time.Second), v.host.Name, v.memberNames())
			}
			for _, m := range v.members {
				if m.Status != "alive" {
					t.Fatalf("%v into the loss: %s reports %s %s", time.Since(start).Round(time.Second), v.host.Name, m.Name, m.Status)
				}
			}
			if v.status.Leader != leader {
				t.Fatalf("%v into the loss: %s names leader %q, was %s", time.Since(start).Round(time.Second), v.host.Name, v.status.Leader, leader)
			}
		}
		polls++
		time.Sleep(time.Until(next)) // pacing of a bounded loop
	}
	dropped := 0
	for _, h := range all {
		dropped += faultDropped(t, h)
		faultHeal(t, h)
	}
	Figure(t, "fault_packet_loss_5pct_window", time.Since(start).Seconds(), "s")
	t.Logf("%d polls of %d hosts; %d packets dropped", polls, len(all), dropped)
	if dropped == 0 {
		t.Errorf("the loss rules dropped nothing: the scenario tested nothing")
	}
	// No election was even attempted.
	for _, s := range servers {
		log := faultLogSince(s, marks[s.Name])
		if l := faultLogLines(log, "entering candidate state"); len(l) > 0 {
			t.Errorf("%s started an election under %d%% loss: %v", s.Name, percent, l)
		}
	}
	a1, a2 := snap.addr("c1", "app"), snap.addr("c2", "app")
	Eventually(t, probeRetryFor, func() (bool, string) {
		return pingOnce(c1, a2, 500*time.Millisecond) && pingOnce(c2, a1, 500*time.Millisecond), "c1 and c2 do not answer each other"
	})
}
