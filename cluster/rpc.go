package cluster

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/weft-mesh/weft/identity"
)

// The server RPC surface, HTTPS+JSON on the rpc port. Joining hosts have
// no certificate yet and authenticate with their token; everything else
// requires a client SVID: a node SVID for state sync and leave, a server
// SVID for the server-only calls.
const (
	rpcJoin  = "/rpc/v1/join"
	rpcState = "/rpc/v1/state"
	rpcLeave = "/rpc/v1/leave"
	rpcApply = "/rpc/v1/apply"
	// rpcSegmentKey registers the caller's own WireGuard key in a segment.
	rpcSegmentKey = "/rpc/v1/segment-key"
	// rpcLocal updates the caller's own tags and services.
	rpcLocal = "/rpc/v1/local"

	maxRPCBody   = 1 << 20
	maxStateWait = 60 * time.Second
)

// JoinRequest is what a joining host sends.
type joinRequest struct {
	TokenID    string    `json:"token_id"`
	Secret     string    `json:"secret"`
	Name       string    `json:"name"`
	Role       Role      `json:"role"`
	Addr       string    `json:"addr"`
	GossipPort int       `json:"gossip_port"`
	RPCPort    int       `json:"rpc_port"`
	RaftPort   int       `json:"raft_port"`
	Tags       []string  `json:"tags"`
	Services   []Service `json:"services,omitempty"`
	NodeCSR    string    `json:"node_csr"`
	ServerCSR  string    `json:"server_csr,omitempty"`
}

// joinResponse is what a joined host gets back.
type joinResponse struct {
	Domain     string   `json:"domain"`
	NodeCert   string   `json:"node_cert"`
	ServerCert string   `json:"server_cert,omitempty"`
	CABundle   string   `json:"ca_bundle"`
	GossipKeys []string `json:"gossip_keys"`
	State      *State   `json:"state"`
}

type applyResponse struct {
	Index uint64 `json:"index"`
}

type rpcError struct {
	Error string `json:"error"`
	Code  string `json:"code,omitempty"`
}

// RemoteError is an error a server returned.
type RemoteError struct {
	Status  int
	Message string
	cause   error
}

func (e *RemoteError) Error() string { return e.Message }

// Unwrap lets callers branch on the sentinel errors of this package.
func (e *RemoteError) Unwrap() error { return e.cause }

func (c *Cluster) rpcHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+rpcJoin, c.handleJoin)
	mux.HandleFunc("GET "+rpcState, c.handleState)
	mux.HandleFunc("POST "+rpcLeave, c.handleLeave)
	mux.HandleFunc("POST "+rpcApply, c.handleApply)
	mux.HandleFunc("POST "+rpcSegmentKey, c.handleSegmentKey)
	mux.HandleFunc("POST "+rpcLocal, c.handleLocal)
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	status := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrBadCommand), errors.Is(err, errBadRequest), errors.Is(err, ErrBadPolicy):
		status = http.StatusBadRequest
	case errors.Is(err, ErrTokenUnknown), errors.Is(err, ErrTokenExpired), errors.Is(err, ErrTokenUsedUp),
		errors.Is(err, ErrTokenWrongRole), errors.Is(err, errUnauthenticated):
		status = http.StatusUnauthorized
	case errors.Is(err, ErrRevoked), errors.Is(err, errForbidden):
		status = http.StatusForbidden
	case errors.Is(err, ErrNameInUse), errors.Is(err, ErrAlreadyInit):
		status = http.StatusConflict
	case errors.Is(err, ErrNodeUnknown):
		status = http.StatusNotFound
	case errors.Is(err, ErrNotLeader), errors.Is(err, ErrNotInitialized), errors.Is(err, ErrNotServer):
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, rpcError{Error: err.Error(), Code: errorCode(err)})
}

var (
	errBadRequest      = errors.New("bad request")
	errUnauthenticated = errors.New("a client certificate is required")
	errForbidden       = errors.New("this identity may not make this call")
)

func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxRPCBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("%w: %v", errBadRequest, err)
	}
	return nil
}

// peer verifies the client certificate of r against the current trust
// bundle and revocations and returns the caller's identity.
func (c *Cluster) peer(r *http.Request, kinds ...identity.Kind) (identity.ID, error) {
	if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
		return identity.ID{}, errUnauthenticated
	}
	raw := make([][]byte, len(r.TLS.PeerCertificates))
	for i, pc := range r.TLS.PeerCertificates {
		raw[i] = pc.Raw
	}
	id, _, err := c.verifier(kinds...).Verify(raw)
	switch {
	case errors.Is(err, identity.ErrRevoked):
		return identity.ID{}, ErrRevoked
	case errors.Is(err, identity.ErrWrongKind):
		return identity.ID{}, fmt.Errorf("%w: %v", errForbidden, err)
	case err != nil:
		return identity.ID{}, fmt.Errorf("%w: %v", errUnauthenticated, err)
	}
	return id, nil
}

func (c *Cluster) handleJoin(w http.ResponseWriter, r *http.Request) {
	var req joinRequest
	if err := decodeBody(r, &req); err != nil {
		writeError(w, err)
		return
	}
	resp, err := c.serveJoin(r.Context(), &req)
	if err != nil {
		c.log.Warn("refused a join", "peer", req.Name, "remote", r.RemoteAddr, "err", err)
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, resp)
}

func (c *Cluster) handleState(w http.ResponseWriter, r *http.Request) {
	if _, err := c.peer(r, identity.KindNode, identity.KindServer); err != nil {
		writeError(w, err)
		return
	}
	q := r.URL.Query()
	var index uint64
	if s := q.Get("index"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			writeError(w, fmt.Errorf("%w: index: %v", errBadRequest, err))
			return
		}
		index = v
	}
	wait := time.Duration(0)
	if s := q.Get("wait"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			writeError(w, fmt.Errorf("%w: wait: %q", errBadRequest, s))
			return
		}
		wait = min(d, maxStateWait)
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	st := c.fsm.Wait(ctx, index)
	body, err := c.publicJSON(st)
	if err != nil {
		writeError(w, err)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}

// publicJSON encodes the public form of st once per index: every client
// long-polling for the same change gets the same bytes (the encode is the
// costly part of a fan-out, once per client otherwise).
func (c *Cluster) publicJSON(st *State) ([]byte, error) {
	c.publicMu.Lock()
	defer c.publicMu.Unlock()
	if c.publicBody != nil && c.publicIndex == st.Index {
		return c.publicBody, nil
	}
	body, err := json.Marshal(st.Public())
	if err != nil {
		return nil, err
	}
	c.publicIndex, c.publicBody = st.Index, append(body, '\n')
	return c.publicBody, nil
}

func (c *Cluster) handleLeave(w http.ResponseWriter, r *http.Request) {
	id, err := c.peer(r, identity.KindNode, identity.KindServer)
	if err != nil {
		writeError(w, err)
		return
	}
	idx, err := c.apply(r.Context(), &Command{Op: OpDeregister, Deregister: &DeregisterCmd{Name: id.Name, Reason: "left"}})
	if err != nil {
		writeError(w, err)
		return
	}
	c.log.Info("node left", "peer", id.Name, "index", idx)
	writeJSON(w, http.StatusOK, applyResponse{Index: idx})
}

func (c *Cluster) handleSegmentKey(w http.ResponseWriter, r *http.Request) {
	id, err := c.peer(r, identity.KindNode, identity.KindServer)
	if err != nil {
		writeError(w, err)
		return
	}
	var req SegmentKeyCmd
	if err := decodeBody(r, &req); err != nil {
		writeError(w, err)
		return
	}
	req.Name = id.Name // a host registers only its own key
	idx, err := c.apply(r.Context(), &Command{Op: OpSegmentKey, SegmentKey: &req})
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, applyResponse{Index: idx})
}

func (c *Cluster) handleApply(w http.ResponseWriter, r *http.Request) {
	if _, err := c.peer(r, identity.KindServer); err != nil {
		writeError(w, err)
		return
	}
	var cmd Command
	if err := decodeBody(r, &cmd); err != nil {
		writeError(w, err)
		return
	}
	if !c.isLeader() {
		writeError(w, ErrNotLeader)
		return
	}
	idx, err := c.applyLocal(&cmd)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, applyResponse{Index: idx})
}

// rpcClient calls servers. It presents this host's SVID when it has one
// and accepts only a server SVID of the trusted CA, or, while joining, of
// the CA pinned by the token.
type rpcClient struct {
	http *http.Client
}

func newRPCClient(tlsConf *tls.Config) *rpcClient {
	tr := &http.Transport{
		TLSClientConfig:     tlsConf,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		TLSHandshakeTimeout: handshakeTimeout,
		MaxIdleConnsPerHost: 2,
		IdleConnTimeout:     90 * time.Second,
		ForceAttemptHTTP2:   true,
	}
	return &rpcClient{http: &http.Client{Transport: tr}}
}

func (rc *rpcClient) close() { rc.http.CloseIdleConnections() }

// do sends a request to addr and decodes the JSON answer into out.
func (rc *rpcClient) do(ctx context.Context, method, addr, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "https://"+addr+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := rc.http.Do(req)
	if err != nil {
		return fmt.Errorf("%s: %w", addr, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s: %w", addr, err)
	}
	if resp.StatusCode != http.StatusOK {
		var re rpcError
		if json.Unmarshal(raw, &re) != nil || re.Error == "" {
			re.Error = fmt.Sprintf("HTTP %d", resp.StatusCode)
		}
		return &RemoteError{Status: resp.StatusCode, Message: fmt.Sprintf("%s: %s", addr, re.Error), cause: errorCodes[re.Code]}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return fmt.Errorf("%s: bad answer: %w", addr, err)
	}
	return nil
}
