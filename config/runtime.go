package config

import (
	"log/slog"
	"net/netip"
)

// Runtime is the validated, value-typed agent configuration built from the
// merged files. Every field has its default applied; nothing downstream reads
// a file or a flag.
type Runtime struct {
	NodeName string     // node_name; default: the host name, lower-cased, up to its first "."
	DataDir  string     // data_dir; default "/var/lib/weft"; always absolute
	Socket   string     // socket; default "/run/weft/weft.sock"; always absolute
	BindAddr netip.Addr // bind_addr; default 0.0.0.0
	// AdvertiseAddr is advertise_addr; default: BindAddr, or when that is
	// unspecified, the first private IPv4 of the host (falls back to 127.0.0.1).
	AdvertiseAddr netip.Addr
	Ports         Ports
	Server        bool     // server
	Bootstrap     bool     // bootstrap; requires server
	Domain        string   // domain; default "weft.internal"
	Tags          []string // tags, sorted and deduplicated
	Join          Join
	LogLevel      slog.Level // log_level: "debug"|"info"|"warn"|"error"; default info
	LogFormat     string     // log_format: "text"|"json"; default "text"
}

// Ports are the underlay ports of the agent.
type Ports struct {
	Gossip int // ports.gossip; default 7946 (TCP+UDP)
	RPC    int // ports.rpc; default 7947 (TCP, TLS)
	Raft   int // ports.raft; default 7948 (TCP, mutual TLS, servers only)
}

// Join says how an agent without an identity joins the cluster.
type Join struct {
	Token     string   // join.token; secret, never logged
	Addresses []string // join.addresses, "host:port" (port defaults to ports.rpc)
}
