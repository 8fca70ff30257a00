package config

import (
	"fmt"
	"log/slog"
)

// redacted stands in for a secret in String and LogValue output. An empty
// secret stays empty, so that one can still see whether it is set.
func redacted(secret string) string {
	if secret == "" {
		return ""
	}
	return "[redacted]"
}

// String formats r for people, with the join token redacted.
func (r Runtime) String() string {
	type plain Runtime // drops the methods, so that Sprintf does not recurse
	return fmt.Sprintf("%+v", plain(r))
}

// LogValue logs r with the join token redacted.
func (r Runtime) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("node_name", r.NodeName),
		slog.String("data_dir", r.DataDir),
		slog.String("socket", r.Socket),
		slog.String("bind_addr", r.BindAddr.String()),
		slog.String("advertise_addr", r.AdvertiseAddr.String()),
		slog.Int("gossip_port", r.Ports.Gossip),
		slog.Int("rpc_port", r.Ports.RPC),
		slog.Int("raft_port", r.Ports.Raft),
		slog.Bool("server", r.Server),
		slog.Bool("bootstrap", r.Bootstrap),
		slog.String("domain", r.Domain),
		slog.Any("tags", r.Tags),
		slog.Attr{Key: "join", Value: r.Join.LogValue()},
		slog.String("log_level", r.LogLevel.String()),
		slog.String("log_format", r.LogFormat),
		slog.Any("services", serviceNames(r.Services)),
		slog.Group("dns",
			slog.Bool("enabled", r.DNS.Enabled),
			slog.Any("listen", r.DNS.Listen),
			slog.String("domain", r.DNS.Domain),
			slog.Any("upstreams", r.DNS.Upstreams),
			slog.Any("allow_from", r.DNS.AllowFrom),
			slog.Duration("ttl", r.DNS.TTL),
			slog.Bool("resolved", r.DNS.Resolved),
		),
		slog.String("metrics_listen", r.Metrics.Listen),
	)
}

// serviceNames is what LogValue shows of the services: their blocks are
// too long for one log line, and `weft` can print them.
func serviceNames(ss []Service) []string {
	names := make([]string, len(ss))
	for i, s := range ss {
		names[i] = s.Name
	}
	return names
}

// String formats j with the token redacted; fmt uses it for %v and %s, also
// when j is a field of something printed.
func (j Join) String() string {
	return fmt.Sprintf("{Token:%s Addresses:%v}", redacted(j.Token), j.Addresses)
}

// GoString is String for %#v, which would otherwise print the token.
func (j Join) GoString() string {
	return fmt.Sprintf("config.Join{Token:%q, Addresses:%#v}", redacted(j.Token), j.Addresses)
}

// LogValue logs j with the token redacted.
func (j Join) LogValue() slog.Value {
	return slog.GroupValue(
		slog.String("token", redacted(j.Token)),
		slog.Any("addresses", j.Addresses),
	)
}
