package cluster

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// Errors a command can fail with. They travel back to callers as the
// result of an Apply and as RPC error codes.
var (
	ErrTokenUnknown    = errors.New("join token is not valid")
	ErrTokenExpired    = errors.New("join token has expired")
	ErrTokenUsedUp     = errors.New("join token has been used up")
	ErrTokenWrongRole  = errors.New("join token does not allow this role")
	ErrNodeUnknown     = errors.New("no such node")
	ErrAlreadyInit     = errors.New("cluster is already initialized")
	ErrNotInitialized  = errors.New("cluster is not initialized")
	ErrNameInUse       = errors.New("node name is in use by a live node")
	ErrBadCommand      = errors.New("malformed command")
	ErrNotLeader       = errors.New("not the raft leader")
	ErrNotServer       = errors.New("this agent is not a server")
	ErrNotJoined       = errors.New("this agent has not joined a cluster")
	ErrAlreadyJoined   = errors.New("this agent has already joined a cluster")
	ErrRevoked         = errors.New("this node's certificate has been revoked; join again with a new token")
	ErrNoServerReached = errors.New("no server could be reached")
	ErrInvalid         = errors.New("invalid request")
)

// errorCodes give errors stable names on the wire.
var errorCodes = map[string]error{
	"token_unknown":    ErrTokenUnknown,
	"token_expired":    ErrTokenExpired,
	"token_used_up":    ErrTokenUsedUp,
	"token_wrong_role": ErrTokenWrongRole,
	"node_unknown":     ErrNodeUnknown,
	"already_init":     ErrAlreadyInit,
	"not_initialized":  ErrNotInitialized,
	"name_in_use":      ErrNameInUse,
	"bad_command":      ErrBadCommand,
	"not_leader":       ErrNotLeader,
	"not_server":       ErrNotServer,
	"revoked":          ErrRevoked,
}

// errorCode returns the wire name of err, or "" when it has none.
func errorCode(err error) string {
	for code, e := range errorCodes {
		if errors.Is(err, e) {
			return code
		}
	}
	return ""
}

// Op names a command.
type Op string

// The commands of the state machine.
const (
	OpInit       Op = "init"
	OpToken      Op = "token"
	OpRegister   Op = "register"
	OpDeregister Op = "deregister"
)

// Command is one entry of the Raft log. Now is stamped by the node that
// proposes it, so that applying is deterministic on every server.
type Command struct {
	Op         Op             `json:"op"`
	Now        time.Time      `json:"now"`
	Init       *InitCmd       `json:"init,omitempty"`
	Token      *Token         `json:"token,omitempty"`
	Register   *RegisterCmd   `json:"register,omitempty"`
	Deregister *DeregisterCmd `json:"deregister,omitempty"`
	Policy     *PolicyCmd     `json:"policy,omitempty"`
	SegmentKey *SegmentKeyCmd `json:"segment_key,omitempty"`
	Local      *LocalCmd      `json:"local,omitempty"`
}

// InitCmd creates the cluster: its CA, gossip keyring and first server.
type InitCmd struct {
	Domain     string   `json:"domain"`
	CACert     string   `json:"ca_cert"`
	CAKey      string   `json:"ca_key"`
	GossipKeys []string `json:"gossip_keys"`
	Node       Node     `json:"node"`
}

// RegisterCmd consumes one use of a token and registers a node.
type RegisterCmd struct {
	TokenID    string `json:"token_id"`
	SecretHash string `json:"secret_hash"`
	Node       Node   `json:"node"`
}

// DeregisterCmd removes a node and revokes its certificates.
type DeregisterCmd struct {
	Name   string `json:"name"`
	Reason string `json:"reason"`
}

// applyResult is what FSM.Apply returns for a log entry.
type applyResult struct {
	Err error
}

// FSM is the replicated state machine. Readers get immutable snapshots of
// the state and may wait for a newer one.
type FSM struct {
	mu      sync.Mutex
	state   *State
	changed chan struct{} // closed and replaced whenever state changes
	onApply func(*State)  // optional, called without the lock after a change
}

// NewFSM returns an FSM holding the empty state.
func NewFSM() *FSM {
	return &FSM{state: emptyState(), changed: make(chan struct{})}
}

// State returns the current state; it must not be modified.
func (f *FSM) State() *State {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.state
}

// Wait returns the state once its index is greater than index, or the
// current state when ctx ends first.
func (f *FSM) Wait(ctx context.Context, index uint64) *State {
	for {
		f.mu.Lock()
		st, ch := f.state, f.changed
		f.mu.Unlock()
		if st.Index > index {
			return st
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return st
		}
	}
}

func (f *FSM) publish(st *State) {
	f.mu.Lock()
	f.state = st
	close(f.changed)
	f.changed = make(chan struct{})
	hook := f.onApply
	f.mu.Unlock()
	if hook != nil {
		hook(st)
	}
}

// Apply applies one Raft log entry. A command that fails changes nothing
// but the index.
func (f *FSM) Apply(l *raft.Log) any {
	var cmd Command
	var err error
	if jerr := json.Unmarshal(l.Data, &cmd); jerr != nil {
		err = fmt.Errorf("%w: %v", ErrBadCommand, jerr)
	}
	cur := f.State()
	next := cur.clone()
	if err == nil {
		err = apply(next, &cmd, l.Index)
	}
	if err != nil {
		next = cur.clone()
	}
	next.Index = l.Index
	f.publish(next)
	return applyResult{Err: err}
}

// apply changes st according to cmd; st is a private clone.
func apply(st *State, cmd *Command, index uint64) error {
	pruneExpired(st, cmd.Now)
	switch cmd.Op {
	case OpInit:
		c := cmd.Init
		if c == nil || c.Domain == "" || c.CACert == "" || c.CAKey == "" || len(c.GossipKeys) == 0 || c.Node.Name == "" {
			return fmt.Errorf("%w: incomplete init", ErrBadCommand)
		}
		if st.CACert != "" {
			return ErrAlreadyInit
		}
		st.Domain, st.CACert, st.CAKey, st.GossipKeys = c.Domain, c.CACert, c.CAKey, c.GossipKeys
		n := c.Node
		n.RegisteredAt, n.RegisteredIndex = cmd.Now, index
		st.Nodes[n.Name] = &n
		return nil
	case OpToken:
		t := cmd.Token
		if t == nil || t.ID == "" || t.SecretHash == "" || t.UsesLeft < 1 {
			return fmt.Errorf("%w: incomplete token", ErrBadCommand)
		}
		if st.CACert == "" {
			return ErrNotInitialized
		}
		tc := *t
		tc.CreatedAt = cmd.Now
		st.Tokens[tc.ID] = &tc
		return nil
	case OpRegister:
		c := cmd.Register
		if c == nil || c.Node.Name == "" {
			return fmt.Errorf("%w: incomplete registration", ErrBadCommand)
		}
		if err := checkToken(st, c.TokenID, c.SecretHash, c.Node.Role, cmd.Now); err != nil {
			return err
		}
		if old, ok := st.Nodes[c.Node.Name]; ok && old.Role != c.Node.Role {
			// A client token must never take over a server's name (and so
			// revoke its certificates): an operator removes it first.
			return fmt.Errorf("%w: %q is registered as a %s", ErrNameInUse, c.Node.Name, old.Role)
		}
		t := *st.Tokens[c.TokenID]
		t.UsesLeft-- // a used-up token stays until it expires, to say why it is refused
		st.Tokens[t.ID] = &t
		if old, ok := st.Nodes[c.Node.Name]; ok {
			revoke(st, old)
		}
		n := c.Node
		n.RegisteredAt, n.RegisteredIndex = cmd.Now, index
		st.Nodes[n.Name] = &n
		delete(st.Tombstones, n.Name)
		reallocateAfter(st)
		return nil
	case OpDeregister:
		c := cmd.Deregister
		if c == nil || c.Name == "" {
			return fmt.Errorf("%w: incomplete deregistration", ErrBadCommand)
		}
		old, ok := st.Nodes[c.Name]
		if !ok {
			return fmt.Errorf("%w: %q", ErrNodeUnknown, c.Name)
		}
		revoke(st, old)
		delete(st.Nodes, c.Name)
		st.Tombstones[c.Name] = Tombstone{Reason: c.Reason, Index: index, RemovedAt: cmd.Now}
		reallocateAfter(st)
		return nil
	case OpPolicy:
		if cmd.Policy == nil {
			return fmt.Errorf("%w: incomplete policy", ErrBadCommand)
		}
		if st.CACert == "" {
			return ErrNotInitialized
		}
		return applyPolicy(st, cmd.Policy, cmd.Now)
	case OpLocal:
		if cmd.Local == nil {
			return fmt.Errorf("%w: incomplete local update", ErrBadCommand)
		}
		return applyLocal(st, cmd.Local)
	case OpSegmentKey:
		if cmd.SegmentKey == nil {
			return fmt.Errorf("%w: incomplete segment key", ErrBadCommand)
		}
		return applySegmentKey(st, cmd.SegmentKey)
	}
	return fmt.Errorf("%w: unknown op %q", ErrBadCommand, cmd.Op)
}

// checkToken verifies a join token against the stored hash. It is used by
// the FSM and, before any certificate is signed, by the leader.
func checkToken(st *State, id, secretHash string, role Role, now time.Time) error {
	t, ok := st.Tokens[id]
	if !ok || subtle.ConstantTimeCompare([]byte(t.SecretHash), []byte(secretHash)) != 1 {
		return ErrTokenUnknown
	}
	if !now.Before(t.Expires) {
		return ErrTokenExpired
	}
	if t.UsesLeft < 1 {
		return ErrTokenUsedUp
	}
	if (role == RoleServer) != t.Server {
		return ErrTokenWrongRole
	}
	return nil
}

func revoke(st *State, n *Node) {
	for _, c := range n.Certs {
		st.Revoked[c.Serial] = c.NotAfter
	}
}

// pruneExpired drops tokens and revocations that no longer matter. An
// expired token is kept for a day so that its use is refused as
// "expired" rather than "unknown".
func pruneExpired(st *State, now time.Time) {
	if now.IsZero() {
		return
	}
	for id, t := range st.Tokens {
		if now.After(t.Expires.Add(24 * time.Hour)) {
			delete(st.Tokens, id)
		}
	}
	for serial, notAfter := range st.Revoked {
		if now.After(notAfter) {
			delete(st.Revoked, serial)
		}
	}
}

// Snapshot returns the current state for Raft to persist.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	return &fsmSnapshot{state: f.State()}, nil
}

// Restore replaces the state with a snapshot.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	var st State
	if err := json.NewDecoder(rc).Decode(&st); err != nil {
		return fmt.Errorf("cluster: restore snapshot: %w", err)
	}
	st.normalize()
	f.publish(&st)
	return nil
}

type fsmSnapshot struct{ state *State }

func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := json.NewEncoder(sink).Encode(s.state); err != nil {
		sink.Cancel()
		return fmt.Errorf("cluster: persist snapshot: %w", err)
	}
	return sink.Close()
}

func (s *fsmSnapshot) Release() {}
