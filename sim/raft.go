package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"github.com/weft-mesh/weft/cluster"
	"github.com/weft-mesh/weft/identity"
)

const applyTimeout = 30 * time.Second

// raftCluster is n Raft servers on InmemTransport and in-memory stores,
// each running weft's real state machine. Nothing else of a weft server
// runs: no RPC, no TLS, no bolt.
type raftCluster struct {
	rafts []*raft.Raft
	fsms  []*cluster.FSM
	trans []*fastTransport
	// fsm is the first leader's state machine: the one the sync clients
	// read, as clients read from whichever server they picked.
	fsm     *cluster.FSM
	retries atomic.Int64 // proposals that met a leader change

	mu     sync.Mutex
	leader *raft.Raft
}

func newRaftCluster(servers int) (*raftCluster, error) {
	c := &raftCluster{}
	var cfg raft.Configuration
	peers := map[raft.ServerAddress]*fastTransport{}
	for i := range servers {
		// 10s, like the NetworkTransport of cluster/server.go.
		addr, t := raft.NewInmemTransportWithTimeout(raft.ServerAddress(serverName(i)), 10*time.Second)
		ft := &fastTransport{InmemTransport: t, peers: peers, done: make(chan struct{})}
		peers[addr] = ft
		c.trans = append(c.trans, ft)
		cfg.Servers = append(cfg.Servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(serverName(i)), Address: addr})
	}
	for i, a := range c.trans {
		for j, b := range c.trans {
			if i != j {
				a.Connect(b.LocalAddr(), b.InmemTransport)
			}
		}
	}
	for i := range servers {
		rc := raft.DefaultConfig()
		rc.LocalID = raft.ServerID(serverName(i))
		rc.Logger = hclog.NewNullLogger()
		rc.SnapshotThreshold = 1024 // as cluster/server.go
		store := raft.NewInmemStore()
		snaps := raft.NewInmemSnapshotStore()
		if err := raft.BootstrapCluster(rc, store, store, snaps, c.trans[i], cfg); err != nil {
			c.shutdown()
			return nil, fmt.Errorf("bootstrap %s: %w", serverName(i), err)
		}
		fsm := cluster.NewFSM()
		r, err := raft.NewRaft(rc, fsm, store, store, snaps, c.trans[i])
		if err != nil {
			c.shutdown()
			return nil, fmt.Errorf("raft %s: %w", serverName(i), err)
		}
		c.rafts = append(c.rafts, r)
		c.fsms = append(c.fsms, fsm)
	}
	if !c.findLeader(15 * time.Second) {
		c.shutdown()
		return nil, fmt.Errorf("no raft leader within 15s")
	}
	for i, r := range c.rafts {
		if r == c.currentLeader() {
			c.fsm = c.fsms[i]
		}
	}
	return c, nil
}

func (c *raftCluster) shutdown() {
	for _, t := range c.trans {
		close(t.done)
	}
	var wg sync.WaitGroup
	for _, r := range c.rafts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = r.Shutdown().Error()
		}()
	}
	wg.Wait()
	for _, t := range c.trans {
		_ = t.Close()
	}
}

// fastTransport is InmemTransport with the heartbeat fast path of raft's
// NetworkTransport, which weft uses: a follower answers a heartbeat even
// while its main loop waits for a slow FSM. Without it the sim's leader
// would step down whenever the FSMs fall behind, which a weft server does
// not do for that reason.
type fastTransport struct {
	*raft.InmemTransport
	peers map[raft.ServerAddress]*fastTransport // read-only once built
	done  chan struct{}                         // closed at shutdown

	mu        sync.Mutex
	heartbeat func(raft.RPC)
}

func (t *fastTransport) SetHeartbeatHandler(cb func(raft.RPC)) {
	t.mu.Lock()
	t.heartbeat = cb
	t.mu.Unlock()
}

func (t *fastTransport) AppendEntries(id raft.ServerID, target raft.ServerAddress, args *raft.AppendEntriesRequest, resp *raft.AppendEntriesResponse) error {
	// NetworkTransport's test for a heartbeat.
	beat := args.Term != 0 && (len(args.Addr) > 0 || len(args.Leader) > 0) &&
		args.PrevLogEntry == 0 && args.PrevLogTerm == 0 && len(args.Entries) == 0 && args.LeaderCommitIndex == 0
	if p := t.peers[target]; beat && p != nil {
		p.mu.Lock()
		fn := p.heartbeat
		p.mu.Unlock()
		if fn != nil {
			ch := make(chan raft.RPCResponse, 1)
			fn(raft.RPC{Command: args, RespChan: ch})
			select {
			case r := <-ch:
				if r.Error != nil {
					return r.Error
				}
				*resp = *r.Response.(*raft.AppendEntriesResponse)
				return nil
			case <-p.done: // a shut-down raft drops heartbeats unanswered
				return fmt.Errorf("heartbeat to %s: shut down", target)
			case <-time.After(10 * time.Second):
				return fmt.Errorf("heartbeat to %s timed out", target)
			}
		}
	}
	return t.InmemTransport.AppendEntries(id, target, args, resp)
}

// apply proposes one command on the leader and waits until the leader has
// applied it. Like cluster.apply it retries across an election. It returns
// the commit latency and the command's own error, which the FSM returns in
// an unexported struct with an exported Err field.
func (c *raftCluster) apply(cmd *cluster.Command) (time.Duration, error) {
	cmd.Now = time.Now()
	data, err := json.Marshal(cmd)
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	for {
		f := c.currentLeader().Apply(data, applyTimeout)
		err := f.Error()
		if errors.Is(err, raft.ErrNotLeader) || errors.Is(err, raft.ErrLeadershipLost) || errors.Is(err, raft.ErrEnqueueTimeout) {
			c.retries.Add(1)
			if time.Since(t0) > applyTimeout || !c.findLeader(15*time.Second) {
				return 0, err
			}
			continue
		}
		if err != nil {
			return 0, err
		}
		took := time.Since(t0)
		if v := reflect.ValueOf(f.Response()); v.Kind() == reflect.Struct {
			if e := v.FieldByName("Err"); e.IsValid() && !e.IsNil() {
				return took, e.Interface().(error)
			}
		}
		return took, nil
	}
}

func (c *raftCluster) currentLeader() *raft.Raft {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.leader
}

// findLeader waits for a server to be leader.
func (c *raftCluster) findLeader(limit time.Duration) bool {
	return waitFor(limit, func() bool {
		for _, r := range c.rafts {
			if r.State() == raft.Leader {
				c.mu.Lock()
				c.leader = r
				c.mu.Unlock()
				return true
			}
		}
		return false
	})
}

// applyAll applies cmds with up to inflight proposals outstanding, as
// concurrent RPCs would. It returns each latency and the first error.
func (c *raftCluster) applyAll(cmds []*cluster.Command, inflight int) (lat []time.Duration, took time.Duration, failed int, first error) {
	lat = make([]time.Duration, len(cmds))
	var mu sync.Mutex
	var next atomic.Int64
	var wg sync.WaitGroup
	t0 := time.Now()
	for range inflight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(cmds) {
					return
				}
				d, err := c.apply(cmds[i])
				lat[i] = d
				if err != nil {
					mu.Lock()
					failed++
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
			}
		}()
	}
	wg.Wait()
	return lat, time.Since(t0), failed, first
}

// keysViaRaft is how many segment keys a run sends through Raft.
const keysViaRaft = 600

// caughtUp waits until every server has applied what the leader has.
func (c *raftCluster) caughtUp() error {
	idx := c.fsm.State().Index
	if !waitFor(30*time.Second, func() bool {
		for _, f := range c.fsms {
			if f.State().Index < idx {
				return false
			}
		}
		return true
	}) {
		return fmt.Errorf("servers did not catch up with index %d in 30s", idx)
	}
	return nil
}

// seed writes segment keys into every server's state machine, through
// FSM.Restore of one and the same state, once every server has applied
// everything so far.
func (c *raftCluster) seed(keys []*cluster.Command) error {
	if len(keys) == 0 {
		return nil
	}
	if err := c.caughtUp(); err != nil {
		return err
	}
	b, err := json.Marshal(c.fsm.State())
	if err != nil {
		return err
	}
	var st cluster.State
	if err := json.Unmarshal(b, &st); err != nil {
		return err
	}
	for _, k := range keys {
		sk := k.SegmentKey
		node := st.Nodes[sk.Name]
		ns := node.Segments[sk.Segment]
		ns.PublicKey = sk.PublicKey
		node.Segments[sk.Segment] = ns
	}
	if b, err = json.Marshal(&st); err != nil {
		return err
	}
	for _, f := range c.fsms {
		if err := f.Restore(io.NopCloser(bytes.NewReader(b))); err != nil {
			return err
		}
	}
	return nil
}

// bufferSink is a raft.SnapshotSink in memory.
type bufferSink struct{ bytes.Buffer }

func (s *bufferSink) ID() string    { return "sim" }
func (s *bufferSink) Cancel() error { return nil }
func (s *bufferSink) Close() error  { return nil }

// countWriter counts what is written to it.
type countWriter struct{ n int64 }

func (w *countWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

// raftResult is what the planning phase needs from the Raft phase.
type raftResult struct {
	state *cluster.State // after the segment keys, before the late joins
}

// runRaft measures Raft and state propagation for n client hosts.
func runRaft(rep *report, n, servers int, logf func(string, ...any)) (*raftResult, error) {
	const sec = secRaft
	c, err := newRaftCluster(servers)
	if err != nil {
		return nil, err
	}
	defer c.shutdown()
	f := newFleet(uint64(n))
	ca, err := identity.NewCA(domain, time.Now(), 10*365*24*time.Hour)
	if err != nil {
		return nil, err
	}
	gk := make([]byte, 32) // a gossip key's shape; its value plays no part here
	must := func(what string, err error) error {
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	}
	d, err := c.apply(&cluster.Command{Op: cluster.OpInit, Init: &cluster.InitCmd{
		Domain: domain, CACert: string(ca.CertPEM), CAKey: string(ca.KeyPEM),
		GossipKeys: []string{base64.StdEncoding.EncodeToString(gk)}, Node: f.server(0),
	}})
	if err := must("init", err); err != nil {
		return nil, err
	}
	exp := time.Now().Add(time.Hour)
	if _, err := c.apply(&cluster.Command{Op: cluster.OpToken, Token: &cluster.Token{ID: serverToken, SecretHash: secretHash(), Server: true, Expires: exp, UsesLeft: servers}}); err != nil {
		return nil, fmt.Errorf("server token: %w", err)
	}
	if _, err := c.apply(&cluster.Command{Op: cluster.OpToken, Token: &cluster.Token{ID: clientToken, SecretHash: secretHash(), Expires: exp, UsesLeft: n + extraJoiners}}); err != nil {
		return nil, fmt.Errorf("client token: %w", err)
	}
	for i := 1; i < servers; i++ {
		if _, err := c.apply(&cluster.Command{Op: cluster.OpRegister, Register: &cluster.RegisterCmd{TokenID: serverToken, SecretHash: secretHash(), Node: f.server(i)}}); err != nil {
			return nil, fmt.Errorf("register %s: %w", serverName(i), err)
		}
	}

	// Registrations, 32 proposals in flight (joins arriving together).
	regs := make([]*cluster.Command, n)
	for i := range n {
		regs[i] = &cluster.Command{Op: cluster.OpRegister, Register: &cluster.RegisterCmd{TokenID: clientToken, SecretHash: secretHash(), Node: f.node(i)}}
	}
	cpu0 := cpuTime()
	lat, took, failed, first := c.applyAll(regs, 32)
	cpu := cpuTime() - cpu0
	if failed > 0 {
		return nil, fmt.Errorf("%d of %d registrations failed, first: %w", failed, n, first)
	}
	rep.set(sec, "register (no policy yet): commands/s", uPerSec, true, n, float64(n)/took.Seconds())
	rep.set(sec, "  register latency p50 (32 in flight)", uSeconds, true, n, quantile(lat, 0.5).Seconds())
	rep.set(sec, "  register latency p99 (32 in flight)", uSeconds, true, n, quantile(lat, 0.99).Seconds())
	rep.set(sec, "  register CPU per command, all servers", uSeconds, true, n, cpu.Seconds()/float64(n))
	logf("raft N=%d: %d registrations in %v", n, n, took.Round(time.Millisecond))

	// The policy: parse, check and IPAM over every host, on every server.
	cpu0 = cpuTime()
	d, err = c.apply(&cluster.Command{Op: cluster.OpPolicy, Policy: &cluster.PolicyCmd{Filename: "sim.hcl", Source: policyDoc(0), By: "sim"}})
	if err := must("policy", err); err != nil {
		return nil, err
	}
	rep.set(sec, "policy write (IPAM of all hosts): latency", uSeconds, true, n, d.Seconds())
	rep.set(sec, "  policy write CPU, all servers", uSeconds, true, n, (cpuTime() - cpu0).Seconds())

	// Segment keys: one command per host and segment it has an address in.
	var keys []*cluster.Command
	for _, node := range c.fsm.State().SortedNodes() {
		for _, seg := range sortedKeys(node.Segments) {
			keys = append(keys, &cluster.Command{Op: cluster.OpSegmentKey, SegmentKey: &cluster.SegmentKeyCmd{Name: node.Name, Segment: seg, PublicKey: f.wgKey()}})
		}
	}
	// The first keysViaRaft go through Raft and are measured. Their cost
	// does not grow with N (it is mostly parsing the policy, in every
	// server's FSM), so the rest are written into every server's FSM at
	// once, to keep the run short: the state is the same as if Raft had
	// applied them.
	viaRaft := keys[:min(len(keys), keysViaRaft)]
	cpu0 = cpuTime()
	lat, took, failed, first = c.applyAll(viaRaft, 32)
	cpu = cpuTime() - cpu0
	if failed > 0 {
		return nil, fmt.Errorf("%d of %d segment keys failed, first: %w", failed, len(viaRaft), first)
	}
	if err := c.seed(keys[len(viaRaft):]); err != nil {
		return nil, fmt.Errorf("seeding segment keys: %w", err)
	}
	rep.set(sec, "segment keys (hosts × their segments)", uCount, true, n, float64(len(keys)))
	rep.set(sec, "segment_key: commands/s", uPerSec, false, n, float64(len(viaRaft))/took.Seconds())
	rep.set(sec, "  segment_key latency p50 (32 in flight)", uSeconds, false, n, quantile(lat, 0.5).Seconds())
	rep.set(sec, "  segment_key latency p99 (32 in flight)", uSeconds, false, n, quantile(lat, 0.99).Seconds())
	rep.set(sec, "  segment_key CPU per command, all servers", uSeconds, true, n, cpu.Seconds()/float64(len(viaRaft)))
	logf("raft N=%d: %d of %d segment keys through raft in %v", n, len(viaRaft), len(keys), took.Round(time.Millisecond))

	// One writer at a time: the latency of a single change on an idle
	// cluster (a key rotation).
	var seq []time.Duration
	for i := range 50 {
		k := *keys[(i*7919)%len(keys)].SegmentKey
		k.PublicKey = f.wgKey()
		d, err := c.apply(&cluster.Command{Op: cluster.OpSegmentKey, SegmentKey: &k})
		if err := must("key rotation", err); err != nil {
			return nil, err
		}
		seq = append(seq, d)
	}
	rep.set(sec, "single writer: commit latency p50", uSeconds, true, n, quantile(seq, 0.5).Seconds())
	rep.set(sec, "single writer: commit latency p99", uSeconds, true, n, quantile(seq, 0.99).Seconds())

	// Snapshot and restore, as Raft would do them.
	st := c.fsm.State()
	snap, err := c.fsm.Snapshot()
	if err != nil {
		return nil, err
	}
	sink := &bufferSink{}
	t0 := time.Now()
	if err := snap.Persist(sink); err != nil {
		return nil, err
	}
	rep.set(sec, "snapshot size", uBytes, true, n, float64(sink.Len()))
	rep.set(sec, "snapshot persist time", uSeconds, true, n, time.Since(t0).Seconds())
	fresh := cluster.NewFSM()
	t0 = time.Now()
	if err := fresh.Restore(io.NopCloser(bytes.NewReader(sink.Bytes()))); err != nil {
		return nil, err
	}
	rep.set(sec, "snapshot restore time", uSeconds, true, n, time.Since(t0).Seconds())
	// The memory of the state: several decoded copies, once the followers
	// have caught up and nothing else allocates.
	if err := c.caughtUp(); err != nil {
		return nil, err
	}
	const copies = 4
	heap0 := liveHeap()
	held := make([]*cluster.State, copies)
	for i := range held {
		held[i] = new(cluster.State)
		if err := json.Unmarshal(sink.Bytes(), held[i]); err != nil {
			return nil, err
		}
	}
	rep.set(sec, "state in memory (one copy)", uBytes, true, n, float64(int64(liveHeap())-int64(heap0))/copies)
	runtime.KeepAlive(held)
	pub, _ := json.Marshal(st.Public())
	rep.set(sec, "bytes per sync (Public state JSON)", uBytes, true, n, float64(len(pub)))
	rep.set(sec, "  per host", uBytes, false, n, float64(len(pub))/float64(n))

	if err := fanOut(rep, sec, n, servers, c, pub, logf); err != nil {
		return nil, err
	}

	// Late joins: registrations with a policy in place run IPAM over the
	// whole registry on every server.
	var late []time.Duration
	cpu0 = cpuTime()
	for i := range extraJoiners {
		d, err := c.apply(&cluster.Command{Op: cluster.OpRegister, Register: &cluster.RegisterCmd{TokenID: clientToken, SecretHash: secretHash(), Node: f.node(n + i)}})
		if err := must("late register", err); err != nil {
			return nil, err
		}
		late = append(late, d)
	}
	rep.set(sec, "register with policy (single writer): latency p50", uSeconds, true, n, quantile(late, 0.5).Seconds())
	rep.set(sec, "  late register CPU per command, all servers", uSeconds, true, n, (cpuTime()-cpu0).Seconds()/float64(extraJoiners))
	rep.set(sec, "proposals that met a leader change (retried)", uCount, false, n, float64(c.retries.Load()))
	return &raftResult{state: st}, nil
}

// fanOut measures what one write costs when n clients long-poll: each
// client's request waits in FSM.Wait, then the server encodes
// State.Public() for it, as rpc.go handleState does. The clients' decoding
// (join.go syncLoop) runs on the clients in a fleet, so it is timed once,
// not n times on the sim's cores.
func fanOut(rep *report, sec string, n, servers int, c *raftCluster, pub []byte, logf func(string, ...any)) error {
	write := func(variant int) error {
		_, err := c.apply(&cluster.Command{Op: cluster.OpPolicy, Policy: &cluster.PolicyCmd{Filename: "sim.hcl", Source: policyDoc(variant), By: "sim"}})
		return err
	}
	// The same write with nobody waiting, to take its own CPU out.
	cpu0 := cpuTime()
	if err := write(1); err != nil {
		return err
	}
	writeCPU := cpuTime() - cpu0

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	start := c.fsm.State().Index
	var parked, finished sync.WaitGroup
	var mu sync.Mutex
	var at []time.Time
	var total atomic.Int64
	parked.Add(n)
	finished.Add(n)
	for range n {
		go func() {
			defer finished.Done()
			parked.Done()
			st := c.fsm.Wait(ctx, start)
			if st.Index <= start {
				return // cancelled
			}
			var w countWriter
			_ = json.NewEncoder(&w).Encode(st.Public())
			total.Add(w.n)
			now := time.Now()
			mu.Lock()
			at = append(at, now)
			mu.Unlock()
		}()
	}
	parked.Wait()
	<-time.After(time.Second) // lets every poller park in Wait; nothing to poll for
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	base := ms.HeapInuse
	var peak atomic.Uint64
	sampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		var m runtime.MemStats
		for {
			select {
			case <-sampling:
				return
			case <-time.After(20 * time.Millisecond):
			}
			runtime.ReadMemStats(&m)
			if m.HeapInuse > base && m.HeapInuse-base > peak.Load() {
				peak.Store(m.HeapInuse - base)
			}
		}
	}()
	cpu0 = cpuTime()
	t0 := time.Now()
	if err := write(2); err != nil {
		close(sampling)
		return err
	}
	ok := waitFor(120*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(at) >= n
	})
	cpu := cpuTime() - cpu0 - writeCPU
	close(sampling)
	<-sampled
	cancel()
	finished.Wait()
	ds := make([]time.Duration, len(at))
	for i, t := range at {
		ds[i] = t.Sub(t0)
	}
	if !ok {
		rep.note("N=%d: the fan-out had served %d of %d clients after 120s", n, len(ds), n)
	}

	// One client's decode, the median of five.
	var dec []time.Duration
	for range 5 {
		t := time.Now()
		var cs cluster.State
		if err := json.Unmarshal(pub, &cs); err != nil {
			return err
		}
		dec = append(dec, time.Since(t))
	}
	decode := quantile(dec, 0.5)
	last := quantile(ds, 1)

	rep.set(sec, "one write → N long-polls: server CPU, all servers", uSeconds, true, n, cpu.Seconds())
	rep.set(sec, "  per server (N/3 clients each)", uSeconds, true, n, cpu.Seconds()/float64(servers))
	rep.set(sec, "  per client served (Public + JSON encode)", uSeconds, true, n, cpu.Seconds()/float64(n))
	rep.set(sec, "  bytes sent, all servers", uBytes, true, n, float64(total.Load()))
	rep.set(sec, "  peak extra server heap while encoding", uBytes, true, n, float64(peak.Load()))
	rep.set(sec, "  p50 client served (one process, 2 cores)", uSeconds, true, n, quantile(ds, 0.5).Seconds())
	rep.set(sec, "  last client served", uSeconds, true, n, last.Seconds())
	rep.set(sec, "  client CPU per sync (JSON decode)", uSeconds, true, n, decode.Seconds())
	rep.set(sec, "  all N clients have it (last served + decode)", uSeconds, true, n, (last + decode).Seconds())
	logf("raft N=%d: fan-out server CPU %v, last client served after %v", n, cpu.Round(time.Millisecond), last.Round(time.Millisecond))
	return nil
}

func sortedKeys[V any](m map[string]V) []string { return slices.Sorted(maps.Keys(m)) }
