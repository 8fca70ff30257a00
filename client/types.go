package client

import "time"

// Member is one host of the cluster, from GET /v1/members.
type Member struct {
	Name       string   `json:"name"`
	Addr       string   `json:"addr"`
	GossipPort int      `json:"gossip_port"`
	RPCPort    int      `json:"rpc_port"`
	Role       string   `json:"role"`
	Status     string   `json:"status"` // alive, dead, left, unknown
	StateIndex uint64   `json:"state_index"`
	Tags       []string `json:"tags"`
}

// Status describes one agent, from GET /v1/status.
type Status struct {
	Node       string     `json:"node"`
	Role       string     `json:"role"`
	Domain     string     `json:"domain"`
	Joined     bool       `json:"joined"`
	Leader     string     `json:"leader"`
	RaftState  string     `json:"raft_state"`
	RaftPeers  []RaftPeer `json:"raft_peers"`
	StateIndex uint64     `json:"state_index"`
	Ready      bool       `json:"ready"`
	Checks     []Check    `json:"checks"`
	Version    string     `json:"version"`
}

// RaftPeer is one server of the Raft configuration.
type RaftPeer struct {
	ID      string `json:"id"`
	Address string `json:"address"`
	Voter   bool   `json:"voter"`
}

// Check is one health condition.
type Check struct {
	Name   string `json:"name"`
	OK     bool   `json:"ok"`
	Reason string `json:"reason"`
}

// Health is the answer of /v1/health and /v1/ready.
type Health struct {
	OK     bool    `json:"ok"`
	Checks []Check `json:"checks"`
}

// Node is one entry of the node registry, from GET /v1/nodes.
type Node struct {
	Name            string   `json:"name"`
	Role            string   `json:"role"`
	Addr            string   `json:"addr"`
	Tags            []string `json:"tags"`
	Serials         []string `json:"serials"`
	RegisteredIndex uint64   `json:"registered_index"`
}

// TokenRequest asks for a join token (POST /v1/tokens).
type TokenRequest struct {
	Server bool   `json:"server"`
	TTL    string `json:"ttl"` // a Go duration, e.g. "1h"
	Uses   int    `json:"uses"`
}

// Token is a new join token. This is the only time its secret is shown.
type Token struct {
	Token   string    `json:"token"`
	Expires time.Time `json:"expires"`
	Uses    int       `json:"uses"`
	Server  bool      `json:"server"`
}

// JoinRequest asks an agent to join (POST /v1/join).
type JoinRequest struct {
	Token     string   `json:"token"`
	Addresses []string `json:"addresses"`
}

// Error is the body of every failed call.
type Error struct {
	Error string `json:"error"`
}
