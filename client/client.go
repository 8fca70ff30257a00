// Package client is the typed client of the agent's admin API (HTTP+JSON
// over the agent's unix socket), used by the weft CLI. It imports only the
// standard library, and it defines the API's JSON shapes, which the agent
// encodes.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"
)

// DefaultSocket is where the agent listens unless configured otherwise.
const DefaultSocket = "/run/weft/weft.sock"

// SocketFromEnv returns flagValue, else $WEFT_SOCKET, else DefaultSocket.
func SocketFromEnv(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if s := os.Getenv("WEFT_SOCKET"); s != "" {
		return s
	}
	return DefaultSocket
}

// Client talks to one agent.
type Client struct {
	socket string
	http   *http.Client
}

// New returns a client of the agent listening on socket.
func New(socket string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}
	return &Client{socket: socket, http: &http.Client{Transport: tr}}
}

// APIError is an error the agent answered with.
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string { return e.Message }

// ErrNoAgent says nothing listens on the socket.
var ErrNoAgent = errors.New("no agent is running there")

func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return err
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://weft"+path, body)
	if err != nil {
		return err
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ne *net.OpError
		if errors.As(err, &ne) && ne.Op == "dial" {
			return fmt.Errorf("%s: %w (is the agent running? set -socket or WEFT_SOCKET)", c.socket, ErrNoAgent)
		}
		return err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 32<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e Error
		if json.Unmarshal(raw, &e) != nil || e.Error == "" {
			e.Error = fmt.Sprintf("HTTP %d", resp.StatusCode)
		}
		return &APIError{Status: resp.StatusCode, Message: e.Error}
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(raw, out)
}

// Members lists the hosts of the cluster.
func (c *Client) Members(ctx context.Context) ([]Member, error) {
	var out []Member
	return out, c.do(ctx, "GET", "/v1/members", nil, &out)
}

// Status describes the agent.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var out Status
	return out, c.do(ctx, "GET", "/v1/status", nil, &out)
}

// Nodes lists the node registry.
func (c *Client) Nodes(ctx context.Context) ([]Node, error) {
	var out []Node
	return out, c.do(ctx, "GET", "/v1/nodes", nil, &out)
}

// CreateToken asks a server agent for a new join token.
func (c *Client) CreateToken(ctx context.Context, req TokenRequest) (Token, error) {
	var out Token
	return out, c.do(ctx, "POST", "/v1/tokens", req, &out)
}

// Join makes an agent with no identity join through the given servers.
func (c *Client) Join(ctx context.Context, req JoinRequest) error {
	return c.do(ctx, "POST", "/v1/join", req, nil)
}

// Leave makes the agent leave the cluster; the agent exits afterwards.
func (c *Client) Leave(ctx context.Context) error {
	return c.do(ctx, "POST", "/v1/leave", nil, nil)
}

// RemoveNode deregisters another host (on a server agent).
func (c *Client) RemoveNode(ctx context.Context, name string) error {
	return c.do(ctx, "DELETE", "/v1/nodes/"+url.PathEscape(name), nil, nil)
}

// Ready returns the agent's readiness.
func (c *Client) Ready(ctx context.Context) (Health, error) {
	var out Health
	err := c.do(ctx, "GET", "/v1/ready", nil, &out)
	var ae *APIError
	if errors.As(err, &ae) && ae.Status == http.StatusServiceUnavailable {
		return out, nil // not ready is an answer, not a failure
	}
	return out, err
}

// ApplyPolicy commits a policy document (on a server agent).
func (c *Client) ApplyPolicy(ctx context.Context, req PolicyRequest) (PolicyApplied, error) {
	var out PolicyApplied
	return out, c.do(ctx, "POST", "/v1/policy", req, &out)
}

// PlanPolicy shows what a policy document would change on every host.
func (c *Client) PlanPolicy(ctx context.Context, req PolicyRequest) (PolicyPlan, error) {
	var out PolicyPlan
	return out, c.do(ctx, "POST", "/v1/policy/plan", req, &out)
}

// Policy returns the applied policy document.
func (c *Client) Policy(ctx context.Context) (Policy, error) {
	var out Policy
	return out, c.do(ctx, "GET", "/v1/policy", nil, &out)
}

// Explain says whether a flow from one host to another is allowed.
func (c *Client) Explain(ctx context.Context, from, to, port string) (Explanation, error) {
	var out Explanation
	q := url.Values{"from": {from}, "to": {to}, "port": {port}}
	return out, c.do(ctx, "GET", "/v1/policy/explain?"+q.Encode(), nil, &out)
}

// Segments lists this host's WireGuard interfaces with their peers.
func (c *Client) Segments(ctx context.Context) ([]Segment, error) {
	var out []Segment
	return out, c.do(ctx, "GET", "/v1/segments", nil, &out)
}

// DNSQuery asks the agent's own resolver.
func (c *Client) DNSQuery(ctx context.Context, name, qtype string) (DNSAnswer, error) {
	var out DNSAnswer
	q := url.Values{"name": {name}, "type": {qtype}}
	return out, c.do(ctx, "GET", "/v1/dns/query?"+q.Encode(), nil, &out)
}

// Flows returns this host's firewall counters per rule and the sources
// it dropped most.
func (c *Client) Flows(ctx context.Context) (Flows, error) {
	var out Flows
	return out, c.do(ctx, "GET", "/v1/flows", nil, &out)
}

// DefaultTimeout bounds one CLI call.
const DefaultTimeout = 30 * time.Second
