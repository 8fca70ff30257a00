package config

import (
	"fmt"
	"log/slog"
	"net/netip"
	"time"
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
	Services      []Service  // service blocks, sorted by name
	DNS           DNS
	Metrics       Metrics
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

// Service is a service this host offers to the mesh (a service block).
type Service struct {
	Name      string           // the block's label; a DNS label, unique
	Port      int              // port; required
	Tags      []string         // tags, sorted and deduplicated
	Check     *Check           // check; nil without a check block
	Identity  *ServiceIdentity // identity; nil without an identity block
	Upstreams []Upstream       // upstream blocks, sorted by Service
}

// Check is a service's health check: the service passes while it does.
// Exactly one of TCP and HTTP is set.
type Check struct {
	TCP      string        // check.tcp: "host:port" that must accept a connection
	HTTP     string        // check.http: http or https URL that must answer 2xx
	Interval time.Duration // check.interval; default 10s, at least 100ms
	Timeout  time.Duration // check.timeout; default 2s, less than Interval
}

// ServiceIdentity says which local process may fetch a service's SVID.
type ServiceIdentity struct {
	UID int // identity.uid: a local user id, 0..4294967294
}

// Upstream is a local listener that forwards to a mesh service over mutual TLS.
type Upstream struct {
	Service string // the block's label: the service it forwards to
	Listen  string // listen: "host:port"
}

// DNS is the agent's DNS server for the mesh domain.
type DNS struct {
	Enabled bool             // dns.enabled; default true
	Listen  []netip.AddrPort // dns.listen; default [127.0.0.1:8600]
	Domain  string           // dns.domain; default: Runtime.Domain
	// Upstreams answer the names outside Domain, in order; with none, such
	// queries are REFUSED. dns.upstreams; the port defaults to 53.
	Upstreams []netip.AddrPort
	// AllowFrom are the networks that may query, besides loopback.
	AllowFrom []netip.Prefix
	TTL       time.Duration // dns.ttl of node and service records; default 5s, 0s..1h
	Resolved  bool          // dns.resolved: register Domain with systemd-resolved
}

// Metrics is the metrics endpoint.
type Metrics struct {
	Listen string // metrics.listen, "host:port"; empty: no endpoint
}

// String formats c as %+v would; without it, fmt shows a *Check inside a
// Runtime as an address.
func (c Check) String() string {
	type plain Check
	return fmt.Sprintf("%+v", plain(c))
}

// String formats id as %+v would, for the same reason as Check.String.
func (id ServiceIdentity) String() string {
	type plain ServiceIdentity
	return fmt.Sprintf("%+v", plain(id))
}
