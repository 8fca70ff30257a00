package cluster

import (
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/memberlist"
)

// Gossip statuses as shown to operators.
const (
	StatusAlive   = "alive"
	StatusDead    = "dead"
	StatusUnknown = "unknown" // registered, never seen in gossip
)

// nodeMeta is what each agent announces about itself in gossip. It is
// liveness only: nothing in it is ever trusted for keys or addresses of
// the overlay.
type nodeMeta struct {
	Role   Role   `json:"r"`
	Index  uint64 `json:"i"`
	Leader string `json:"l,omitempty"` // servers: the Raft leader they follow
	Policy uint64 `json:"p,omitempty"` // the policy version its dataplane enforces
	// Failing lists, comma-separated, the services whose health checks
	// fail on the node: check results travel by gossip, not Raft.
	Failing string `json:"f,omitempty"`
	// RPCPort is a server's rpc port, so that a client that lost its
	// state can still find servers through gossip.
	RPCPort int `json:"rp,omitempty"`
}

// gossipPeer is this agent's view of another agent.
type gossipPeer struct {
	Name   string
	Addr   string
	Port   int
	Status string
	Meta   nodeMeta
	Since  time.Time
}

// gossip wraps memberlist: an encrypted LAN pool, never plaintext.
type gossip struct {
	ml    *memberlist.Memberlist
	meta  atomic.Pointer[[]byte]
	mu    sync.Mutex
	peers map[string]*gossipPeer
	// version counts changes of peers, so that readers can tell cheaply
	// whether anything changed.
	version atomic.Uint64
	// refuse says whether alive messages about a name must be ignored
	// (a removed node that still has the keyring).
	refuse func(name string) bool
}

type gossipConfig struct {
	Name          string
	BindAddr      string
	AdvertiseAddr string
	Port          int
	Keys          [][]byte
	LogOutput     io.Writer
	Refuse        func(name string) bool
	Meta          nodeMeta
}

func newGossip(gc gossipConfig) (*gossip, error) {
	if len(gc.Keys) == 0 {
		return nil, fmt.Errorf("cluster: gossip: no key (a plaintext pool is never started)")
	}
	keyring, err := memberlist.NewKeyring(gc.Keys, gc.Keys[0])
	if err != nil {
		return nil, fmt.Errorf("cluster: gossip keyring: %w", err)
	}
	g := &gossip{peers: map[string]*gossipPeer{}, refuse: gc.Refuse}
	g.setMeta(gc.Meta)

	conf := memberlist.DefaultLANConfig()
	conf.Name = gc.Name
	conf.BindAddr = gc.BindAddr
	conf.BindPort = gc.Port
	conf.AdvertiseAddr = gc.AdvertiseAddr
	conf.AdvertisePort = gc.Port
	conf.Keyring = keyring
	conf.GossipVerifyIncoming = true
	conf.GossipVerifyOutgoing = true
	conf.Delegate = g
	conf.Events = g
	conf.Alive = g
	conf.DeadNodeReclaimTime = 30 * time.Second
	// A full state exchange every 15 s (memberlist's LAN default is 30 s)
	// bounds how long any missed update can stay missed.
	conf.PushPullInterval = 15 * time.Second
	if gc.LogOutput == nil {
		gc.LogOutput = io.Discard
	}
	conf.Logger = log.New(gc.LogOutput, "", 0)
	ml, err := memberlist.Create(conf)
	if err != nil {
		return nil, fmt.Errorf("cluster: gossip: %w", err)
	}
	g.ml = ml
	return g, nil
}

func (g *gossip) setMeta(m nodeMeta) {
	b, _ := json.Marshal(m)
	g.meta.Store(&b)
}

// NodeMeta implements memberlist.Delegate.
func (g *gossip) NodeMeta(limit int) []byte {
	b := *g.meta.Load()
	if len(b) > limit {
		return nil
	}
	return b
}

// NotifyMsg implements memberlist.Delegate; weft sends no user messages.
func (g *gossip) NotifyMsg([]byte) {}

// GetBroadcasts implements memberlist.Delegate.
func (g *gossip) GetBroadcasts(overhead, limit int) [][]byte { return nil }

// LocalState implements memberlist.Delegate.
func (g *gossip) LocalState(join bool) []byte { return nil }

// MergeRemoteState implements memberlist.Delegate.
func (g *gossip) MergeRemoteState(buf []byte, join bool) {}

// NotifyAlive implements memberlist.AliveDelegate.
func (g *gossip) NotifyAlive(n *memberlist.Node) error {
	if g.refuse != nil && g.refuse(n.Name) {
		return fmt.Errorf("node %q was removed from the cluster", n.Name)
	}
	return nil
}

// The events carry memberlist's Node, whose State field memberlist does
// not maintain (its live state is elsewhere), so the status is taken from
// which event fired. A graceful gossip leave also reads as dead: a host
// that leaves weft is deregistered first and is no longer listed at all.

// NotifyJoin implements memberlist.EventDelegate.
func (g *gossip) NotifyJoin(n *memberlist.Node) { g.record(n, StatusAlive) }

// NotifyLeave implements memberlist.EventDelegate.
func (g *gossip) NotifyLeave(n *memberlist.Node) { g.record(n, StatusDead) }

// NotifyUpdate implements memberlist.EventDelegate.
func (g *gossip) NotifyUpdate(n *memberlist.Node) { g.record(n, StatusAlive) }

func (g *gossip) record(n *memberlist.Node, status string) {
	p := &gossipPeer{Name: n.Name, Addr: n.Addr.String(), Port: int(n.Port), Status: status, Since: time.Now()}
	_ = json.Unmarshal(n.Meta, &p.Meta) // meta is advisory; garbage reads as zero
	g.mu.Lock()
	g.peers[n.Name] = p
	g.mu.Unlock()
	g.version.Add(1)
}

// view returns every peer this agent knows of, by name. It is built from
// memberlist's events only: the nodes memberlist.Members returns are its
// live internal structs, and reading them races with its updates. So a
// suspect node reads as alive until it is declared dead.
func (g *gossip) view() map[string]gossipPeer {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make(map[string]gossipPeer, len(g.peers))
	for name, p := range g.peers {
		out[name] = *p
	}
	return out
}

// join contacts the given host:port addresses; it succeeds if any answers.
func (g *gossip) join(addrs []string) (int, error) {
	if len(addrs) == 0 {
		return 0, nil
	}
	return g.ml.Join(addrs)
}

func (g *gossip) leave(timeout time.Duration) error { return g.ml.Leave(timeout) }

func (g *gossip) shutdown() error { return g.ml.Shutdown() }

func joinAddr(host string, port int) string {
	return net.JoinHostPort(host, strconv.Itoa(port))
}
