package main

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"math"
	"net"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// gossipMeta mirrors the JSON of cluster's nodeMeta (unexported there):
// what every agent announces about itself.
type gossipMeta struct {
	Role   string `json:"r"`
	Index  uint64 `json:"i"`
	Policy uint64 `json:"p,omitempty"`
}

// Bounds of each wait, at the largest size. They are generous: a phase that
// hits one prints how far it got instead of a time.
const (
	convergeLimit = 60 * time.Second
	metaLimit     = 20 * time.Second
	stormLimit    = 30 * time.Second
	deadLimit     = 60 * time.Second
	rejoinLimit   = 45 * time.Second
	quietWindow   = 2 * time.Second
)

var errRefused = errors.New("sim: connection refused (host killed)")

// gossipRun is one pool of n memberlist instances on a MockNetwork, plus
// one spare transport (index n) for the agent that restarts.
type gossipRun struct {
	n      int
	agents []*agent
	byAddr map[string]*simTransport // read-only once built
	byName map[string]*simTransport
	bytes  atomic.Int64 // everything sent on the mock network
	drops  atomic.Int64 // packets dropped at a full receiver

	full, meta, dead milestone
	// joinPairs and stormPairs count (observer, peer) pairs: a peer seen
	// alive, a peer's storm update seen. Epidemic gossip reaches most
	// pairs fast and the last few through a later push-pull, so the sim
	// reports when 50% and 99% of them were reached, besides all.
	joinPairs, stormPairs pairCount
	falseDead             atomic.Int64 // a live agent reported dead by someone

	metaTarget, victim  int
	metaWant, stormWant atomic.Uint64
}

// milestone records when each observer reached something.
type milestone struct {
	mu sync.Mutex
	at []time.Time
}

func (m *milestone) add(t time.Time) {
	m.mu.Lock()
	m.at = append(m.at, t)
	m.mu.Unlock()
}

func (m *milestone) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.at)
}

// since returns the p50 and the last of the times, from t0.
func (m *milestone) since(t0 time.Time) (p50, last time.Duration) {
	m.mu.Lock()
	ds := make([]time.Duration, len(m.at))
	for i, t := range m.at {
		ds[i] = t.Sub(t0)
	}
	m.mu.Unlock()
	return quantile(ds, 0.5), quantile(ds, 1)
}

// pairCount counts pairs and remembers when it first reached 50%, 99% and
// 100% of total.
type pairCount struct {
	total int64
	n     atomic.Int64
	at    [3]atomic.Int64 // unix nanoseconds
}

var pairShares = [3]float64{0.5, 0.99, 1}

func (p *pairCount) add(now time.Time) {
	c := p.n.Add(1)
	for i, q := range pairShares {
		if c >= int64(math.Ceil(q*float64(p.total))) {
			p.at[i].CompareAndSwap(0, now.UnixNano())
		}
	}
}

// reached returns when share i was first reached, after t0; false if not.
func (p *pairCount) reached(i int, t0 time.Time) (time.Duration, bool) {
	at := p.at[i].Load()
	if at == 0 {
		return 0, false
	}
	return time.Unix(0, at).Sub(t0), true
}

// wait waits until every pair is reached, or until 5s after 99% were,
// or until limit.
func (p *pairCount) wait(limit time.Duration) bool {
	return waitFor(limit, func() bool {
		if p.at[2].Load() != 0 {
			return true
		}
		at := p.at[1].Load()
		return at != 0 && time.Since(time.Unix(0, at)) > 5*time.Second
	})
}

// simTransport is memberlist's MockTransport with a kill switch and a byte
// counter. A killed host behaves like a powered-off one: packets to it are
// lost and streams to it are refused. Without the switch a send to a
// shut-down MockTransport would block forever on its unbuffered channel.
type simTransport struct {
	*memberlist.MockTransport
	run     *gossipRun
	dead    atomic.Bool
	sent    atomic.Int64 // packets sent, and both directions of the streams it dialed
	pending atomic.Int64 // packets on their way to this host, not yet read
}

// maxPending is a receive buffer: Linux's default 208 KB of UDP socket
// buffer holds about 150 full gossip packets.
const maxPending = 150

var _ memberlist.NodeAwareTransport = (*simTransport)(nil)

func (t *simTransport) count(n int) {
	t.sent.Add(int64(n))
	t.run.bytes.Add(int64(n))
}

func (t *simTransport) peer(a memberlist.Address) *simTransport {
	if a.Name != "" {
		if p, ok := t.run.byName[a.Name]; ok {
			return p
		}
	}
	return t.run.byAddr[a.Addr]
}

func (t *simTransport) WriteTo(b []byte, addr string) (time.Time, error) {
	return t.WriteToAddress(b, memberlist.Address{Addr: addr})
}

// WriteToAddress sends like UDP: it never blocks. MockTransport hands a
// packet over on an unbuffered channel, and memberlist answers a ping from
// the goroutine that reads packets, so two agents pinging each other
// deadlock, and at a few dozen agents the whole pool freezes. Each packet
// is handed over from its own goroutine instead, and a receiver with
// maxPending packets not yet read drops the next ones, as a full socket
// buffer would.
func (t *simTransport) WriteToAddress(b []byte, a memberlist.Address) (time.Time, error) {
	now := time.Now()
	if t.dead.Load() {
		return now, nil
	}
	p := t.peer(a)
	if p == nil {
		return now, fmt.Errorf("no route to %s", a.Addr)
	}
	t.count(len(b))
	if p.dead.Load() {
		return now, nil // UDP into a dead host
	}
	if p.pending.Add(1) > maxPending {
		p.pending.Add(-1)
		t.run.drops.Add(1)
		return now, nil
	}
	buf := append([]byte(nil), b...)
	go func() {
		defer p.pending.Add(-1)
		_, _ = t.MockTransport.WriteToAddress(buf, a)
	}()
	return now, nil
}

func (t *simTransport) DialTimeout(addr string, timeout time.Duration) (net.Conn, error) {
	return t.DialAddressTimeout(memberlist.Address{Addr: addr}, timeout)
}

func (t *simTransport) DialAddressTimeout(a memberlist.Address, timeout time.Duration) (net.Conn, error) {
	if p := t.peer(a); t.dead.Load() || (p != nil && p.dead.Load()) {
		return nil, errRefused
	}
	c, err := t.MockTransport.DialAddressTimeout(a, timeout)
	if err != nil {
		return nil, err
	}
	return &countConn{Conn: c, t: t}, nil
}

// drain empties a killed transport's channels until stop, so that a sender
// that raced the kill switch does not block forever.
func (t *simTransport) drain(stop <-chan struct{}) {
	for {
		select {
		case <-t.PacketCh():
		case c := <-t.StreamCh():
			c.Close()
		case <-stop:
			return
		}
	}
}

type countConn struct {
	net.Conn
	t *simTransport
}

func (c *countConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.t.count(n)
	return n, err
}

func (c *countConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.t.count(n)
	return n, err
}

// agent is one host's memberlist with weft's delegate shape: its meta is
// nodeMeta's JSON, and its view is built from memberlist's events as
// cluster/gossip.go builds it. The view is a bitset so that tracking costs
// nothing next to what memberlist itself holds per peer.
type agent struct {
	run  *gossipRun
	idx  int
	name string
	tr   *simTransport
	ml   *memberlist.Memberlist
	meta atomic.Pointer[[]byte]

	mu        sync.Mutex
	alive     bitset
	nAlive    int
	full      bool
	stormSeen bitset
	sawMeta   bool
	sawDead   bool
}

type bitset []uint64

func newBitset(n int) bitset    { return make(bitset, (n+63)/64) }
func (b bitset) has(i int) bool { return b[i/64]&(1<<(i%64)) != 0 }
func (b bitset) set(i int)      { b[i/64] |= 1 << (i % 64) }
func (b bitset) clear(i int)    { b[i/64] &^= 1 << (i % 64) }

// orNaN is v when ok, else NaN (printed "-").
func orNaN(v float64, ok bool) float64 {
	if !ok {
		return math.NaN()
	}
	return v
}

// agentIndex is i for the name hostName(i), -1 for any other name.
func agentIndex(name string) int {
	i, err := strconv.Atoi(name[1:])
	if err != nil || hostName(i) != name {
		return -1
	}
	return i
}

func (a *agent) setMeta(m gossipMeta) {
	b, _ := json.Marshal(m)
	a.meta.Store(&b)
}

func (a *agent) NodeMeta(limit int) []byte {
	b := *a.meta.Load()
	if len(b) > limit {
		return nil
	}
	return b
}
func (a *agent) NotifyMsg([]byte)                           {}
func (a *agent) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (a *agent) LocalState(join bool) []byte                { return nil }
func (a *agent) MergeRemoteState(buf []byte, join bool)     {}
func (a *agent) NotifyAlive(*memberlist.Node) error         { return nil }
func (a *agent) NotifyJoin(n *memberlist.Node)              { a.record(n, true) }
func (a *agent) NotifyUpdate(n *memberlist.Node)            { a.record(n, true) }
func (a *agent) NotifyLeave(n *memberlist.Node)             { a.record(n, false) }

func (a *agent) record(n *memberlist.Node, alive bool) {
	r := a.run
	i := agentIndex(n.Name)
	if i < 0 || i == a.idx || i >= r.n { // self, or the restarting agent
		return
	}
	var m gossipMeta
	_ = json.Unmarshal(n.Meta, &m)
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if !alive {
		if a.alive.has(i) {
			a.alive.clear(i)
			a.nAlive--
		}
		if i == r.victim {
			if !a.sawDead {
				a.sawDead = true
				r.dead.add(now)
			}
		} else {
			r.falseDead.Add(1)
		}
		return
	}
	if !a.alive.has(i) {
		a.alive.set(i)
		a.nAlive++
		r.joinPairs.add(now)
	}
	if !a.full && a.nAlive == r.n-1 {
		a.full = true
		r.full.add(now)
	}
	if w := r.metaWant.Load(); w != 0 && i == r.metaTarget && m.Policy == w && !a.sawMeta {
		a.sawMeta = true
		r.meta.add(now)
	}
	if w := r.stormWant.Load(); w != 0 && m.Policy == w && !a.stormSeen.has(i) {
		a.stormSeen.set(i)
		r.stormPairs.add(now)
	}
}

// newAgent starts memberlist on a transport, configured as
// cluster/gossip.go configures it.
func (r *gossipRun) newAgent(i int, key []byte) (*agent, error) {
	a := &agent{run: r, idx: i, name: hostName(i), tr: r.byName[hostName(i)], alive: newBitset(r.n), stormSeen: newBitset(r.n)}
	a.setMeta(gossipMeta{Role: "client", Index: 2100, Policy: 1})
	keyring, err := memberlist.NewKeyring([][]byte{key}, key)
	if err != nil {
		return nil, err
	}
	conf := memberlist.DefaultLANConfig()
	conf.Name = a.name
	conf.Transport = a.tr
	conf.Keyring = keyring
	conf.GossipVerifyIncoming = true
	conf.GossipVerifyOutgoing = true
	conf.Delegate = a
	conf.Events = a
	conf.Alive = a
	conf.DeadNodeReclaimTime = 30 * time.Second
	conf.Logger = log.New(io.Discard, "", 0)
	ml, err := memberlist.Create(conf)
	if err != nil {
		return nil, fmt.Errorf("memberlist %s: %w", a.name, err)
	}
	a.ml = ml
	return a, nil
}

func (r *gossipRun) addr(i int) string {
	ip, port, _ := r.agents[i].tr.FinalAdvertiseAddr("", 0)
	return net.JoinHostPort(ip.String(), strconv.Itoa(port))
}

// runGossip measures one pool of n agents; largest is the largest pool of
// the run, which gets the full wait limits.
func runGossip(rep *report, n, largest int, logf func(string, ...any)) error {
	const sec = secGossip
	scale := float64(n) / float64(largest)
	limit := func(d time.Duration) time.Duration {
		return max(5*time.Second, time.Duration(float64(d)*max(scale, 0.5)))
	}

	heap0 := liveHeap()
	g0 := runtime.NumGoroutine()
	cpuStart := cpuTime()

	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return err
	}
	r := &gossipRun{n: n, joinPairs: pairCount{total: int64(n * (n - 1))}, stormPairs: pairCount{total: int64(n * (n - 1))}, byAddr: map[string]*simTransport{}, byName: map[string]*simTransport{}, metaTarget: n - 1, victim: n / 2}
	// Every transport exists before any memberlist runs: MockNetwork's
	// maps are not safe to grow while others read them.
	mnet := &memberlist.MockNetwork{}
	for i := 0; i <= n; i++ {
		t := &simTransport{MockTransport: mnet.NewTransport(hostName(i)), run: r}
		ip, port, _ := t.FinalAdvertiseAddr("", 0)
		r.byAddr[net.JoinHostPort(ip.String(), strconv.Itoa(port))] = t
		r.byName[hostName(i)] = t
	}
	r.agents = make([]*agent, n+1)
	stop := make(chan struct{})
	defer func() {
		for _, a := range r.agents {
			if a != nil {
				a.tr.dead.Store(true)
				go a.tr.drain(stop)
			}
		}
		for _, a := range r.agents {
			if a != nil && a.ml != nil {
				_ = a.ml.Shutdown()
			}
		}
		time.AfterFunc(2*time.Second, func() { close(stop) })
	}()

	for i := range n {
		a, err := r.newAgent(i, key)
		if err != nil {
			return err
		}
		r.agents[i] = a
	}
	// Join: every agent joins through three seeds (the servers of a real
	// fleet), eight at a time.
	seeds := []string{r.addr(0)}
	for i := 1; i < min(3, n); i++ {
		if _, err := r.agents[i].ml.Join(seeds[:1]); err != nil {
			return fmt.Errorf("seed join: %w", err)
		}
		seeds = append(seeds, r.addr(i))
	}
	t0, cpu0 := time.Now(), cpuTime()
	jobs := make(chan int)
	var wg sync.WaitGroup
	var joinErrs atomic.Int64
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				if _, err := r.agents[i].ml.Join(seeds); err != nil {
					joinErrs.Add(1)
				}
			}
		}()
	}
	for i := len(seeds); i < n; i++ {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	joined := time.Since(t0)
	ok := r.joinPairs.wait(limit(convergeLimit))
	convCPU := cpuTime() - cpu0
	convWall := time.Since(t0)
	rep.set(sec, "join calls (8 at a time, 3 seeds) done", uSeconds, false, n, joined.Seconds())
	for i, name := range []string{"views 50% complete (from first join)", "views 99% complete", "every agent sees all N alive"} {
		d, ok := r.joinPairs.reached(i, t0)
		rep.set(sec, name, uSeconds, false, n, orNaN(d.Seconds(), ok))
	}
	if !ok {
		rep.note("N=%d: gossip views were not complete within %v (%d/%d agents with a full view)", n, limit(convergeLimit), r.full.count(), n)
	}
	rep.set(sec, "CPU cores busy while converging", uCount, false, n, convCPU.Seconds()/convWall.Seconds())
	rep.set(sec, "  join+converge CPU per host", uSeconds, true, n, convCPU.Seconds()/float64(n))
	if joinErrs.Load() > 0 {
		rep.note("N=%d: %d join calls failed", n, joinErrs.Load())
	}
	logf("gossip N=%d: joins %v, converged=%v after %v", n, joined.Round(time.Millisecond), ok, convWall.Round(time.Millisecond))

	// Quiet traffic: probes, acks, push-pulls and what is left of the
	// join broadcasts.
	b0, q0, cpu0 := r.bytes.Load(), time.Now(), cpuTime()
	<-time.After(quietWindow) // a measuring window, not a wait for an event
	quiet := time.Since(q0).Seconds()
	rep.set(sec, "gossip bytes/s per host, 2s after converging", uBytesSec, false, n, float64(r.bytes.Load()-b0)/quiet/float64(n))
	rep.set(sec, "  gossip CPU per host then, ms per s", uCount, false, n, 1e3*(cpuTime()-cpu0).Seconds()/quiet/float64(n))

	rep.set(sec, "goroutines per agent", uCount, false, n, float64(runtime.NumGoroutine()-g0)/float64(n))
	rep.set(sec, "heap per agent (all N peers known)", uBytes, true, n, float64(int64(liveHeap())-int64(heap0))/float64(n))

	// One agent's meta changes (what metaLoop does after a sync).
	r.metaWant.Store(2)
	target := r.agents[r.metaTarget]
	target.setMeta(gossipMeta{Role: "client", Index: 2101, Policy: 2})
	t0 = time.Now()
	go target.ml.UpdateNode(50 * time.Millisecond)
	ok = waitFor(limit(metaLimit), func() bool { return r.meta.count() == n-1 })
	p50, last := r.meta.since(t0)
	rep.set(sec, "one meta update seen by all (p50)", uSeconds, false, n, p50.Seconds())
	rep.set(sec, "one meta update seen by all (last)", uSeconds, false, n, orNaN(last.Seconds(), ok))
	if !ok {
		rep.note("N=%d: one meta update had reached %d of %d agents after %v", n, r.meta.count(), n-1, limit(metaLimit))
	}

	// Every agent's meta changes at once: what one Raft write causes, since
	// every agent announces the state index it applied.
	r.stormWant.Store(3)
	b0, t0, cpu0 = r.bytes.Load(), time.Now(), cpuTime()
	for i := range n {
		a := r.agents[i]
		a.setMeta(gossipMeta{Role: "client", Index: 2102, Policy: 3})
		go a.ml.UpdateNode(50 * time.Millisecond)
	}
	ok = r.stormPairs.wait(limit(stormLimit))
	stormTook := time.Since(t0)
	for i, name := range []string{"N meta updates at once: 50% of pairs", "  … 99% of pairs", "  … every agent has every update"} {
		d, ok := r.stormPairs.reached(i, t0)
		rep.set(sec, name, uSeconds, false, n, orNaN(d.Seconds(), ok))
	}
	if !ok {
		rep.note("N=%d: %.1f%% of the storm's updates had arrived after %v", n, 100*float64(r.stormPairs.n.Load())/float64(r.stormPairs.total), stormTook.Round(time.Second))
	}
	rep.set(sec, "  gossip bytes per host for it", uBytes, true, n, float64(r.bytes.Load()-b0)/float64(n))
	rep.set(sec, "  CPU per host for it", uSeconds, true, n, (cpuTime()-cpu0).Seconds()/float64(n))
	logf("gossip N=%d: storm done=%v in %v", n, ok, stormTook.Round(time.Millisecond))

	// A host dies without leaving.
	v := r.agents[r.victim]
	v.tr.dead.Store(true)
	_ = v.ml.Shutdown()
	go v.tr.drain(stop)
	t0 = time.Now()
	ok = waitFor(limit(deadLimit), func() bool { return r.dead.count() == n-1 })
	p50, last = r.dead.since(t0)
	rep.set(sec, "killed host seen dead by all (p50)", uSeconds, false, n, p50.Seconds())
	rep.set(sec, "killed host seen dead by all (last)", uSeconds, false, n, orNaN(last.Seconds(), ok))
	if !ok {
		rep.note("N=%d: %d of %d agents had seen the killed host dead after %v", n, r.dead.count(), n-1, limit(deadLimit))
	}
	rep.set(sec, "live hosts wrongly reported dead (events)", uCount, false, n, float64(r.falseDead.Load()))
	if r.falseDead.Load() > 0 {
		rep.note("N=%d: live agents were declared dead: the process was short of CPU for %d agents' timers, so this size's gossip times measure the sim host as much as memberlist", n, n)
	}
	rep.set(sec, "packets dropped at a full receiver (whole run)", uCount, false, n, float64(r.drops.Load()))
	logf("gossip N=%d: dead seen=%v in %v", n, ok, last.Round(time.Millisecond))

	// An agent restarts. cluster.rejoinLoop's first pass joins every
	// registered node it does not see alive, which after a restart is all
	// of them: one push-pull of the whole member list per host.
	ra, err := r.newAgent(n, key)
	if err != nil {
		return err
	}
	r.agents[n] = ra
	all := make([]string, 0, n)
	for i := range n {
		all = append(all, r.addr(i))
	}
	b0, t0 = ra.tr.sent.Load(), time.Now()
	fleet0 := r.bytes.Load()
	done := make(chan int, 1)
	go func() { c, _ := ra.ml.Join(all); done <- c }()
	var contacted int
	select {
	case contacted = <-done:
	case <-time.After(limit(rejoinLimit)):
		ra.tr.dead.Store(true) // the rest of the loop fails fast
		contacted = <-done
		rep.note("N=%d: the restarted agent's join of all %d hosts was cut at %v", n, n, limit(rejoinLimit))
	}
	took := time.Since(t0)
	sent := ra.tr.sent.Load() - b0
	rep.set(sec, "restarted agent: Join(all registered) time", uSeconds, true, n, took.Seconds())
	rep.set(sec, "  its bytes (both ways)", uBytes, true, n, float64(sent))
	if contacted > 0 {
		rep.set(sec, "  bytes per push-pull", uBytes, true, n, float64(sent)/float64(contacted))
		// After the first, each push-pull carries the whole list both ways.
		rep.set(sec, "  … per member listed, per direction", uBytes, false, n, float64(sent)/float64(contacted)/float64(2*n))
	}
	rep.set(sec, "  fleet bytes meanwhile", uBytes, true, n, float64(r.bytes.Load()-fleet0))
	rep.set(sec, "sim: process CPU for this pool's whole run", uSeconds, true, n, (cpuTime() - cpuStart).Seconds())
	logf("gossip N=%d: rejoin contacted %d in %v, %d bytes", n, contacted, took.Round(time.Millisecond), sent)
	return nil
}
