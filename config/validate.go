package config

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// maxSocketPath is the size of sun_path on Linux, which includes the
// terminating NUL: a longer path cannot be bound.
const maxSocketPath = 108

var (
	dnsLabel = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	tagRE    = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,62}$`)
	// hostLabel is a label of a join address's host name: DNS names are
	// case-insensitive, so upper case is accepted there.
	hostLabel = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)
)

// Validate reports every problem with r, such as a Runtime built in code
// or returned by Dev or Default. Its error, when not nil, is Diagnostics.
func (r Runtime) Validate() error {
	return r.check(nil).err()
}

// check validates r. src, when not nil, says where each value was set, and
// which values already failed to parse and must not be judged again.
func (r Runtime) check(src *sources) Diagnostics {
	c := checker{src: src}

	if c.want(keyNodeName) && !dnsLabel.MatchString(r.NodeName) {
		detail := fmt.Sprintf("%q is not a DNS label: 1 to 63 of a-z, 0-9 and '-', not starting or ending with '-'", r.NodeName)
		if src != nil && !src.set(keyNodeName) {
			detail += "; node_name is not set, so the host name was used: set node_name"
		}
		c.add(keyNodeName, "Invalid node_name", detail)
	}

	c.path(keyDataDir, r.DataDir)
	if c.path(keySocket, r.Socket) && len(r.Socket) >= maxSocketPath {
		c.add(keySocket, "Invalid socket", fmt.Sprintf(
			"the path %q is %d bytes; a unix socket path must be shorter than %d bytes: choose a shorter socket path",
			r.Socket, len(r.Socket), maxSocketPath))
	}

	if c.want(keyBindAddr) && !r.BindAddr.IsValid() {
		c.add(keyBindAddr, "Invalid bind_addr", "bind_addr must be an IP address")
	}
	if c.want(keyAdvertiseAddr) {
		switch {
		case !r.AdvertiseAddr.IsValid():
			c.add(keyAdvertiseAddr, "Invalid advertise_addr", "advertise_addr must be an IP address")
		case r.AdvertiseAddr.IsUnspecified():
			c.add(keyAdvertiseAddr, "Invalid advertise_addr", fmt.Sprintf(
				"%s is the unspecified address, which other agents cannot reach: advertise one of this host's addresses", r.AdvertiseAddr))
		}
	}

	if c.want(keyDomain) {
		if why := dnsNameProblem(r.Domain); why != "" {
			c.add(keyDomain, "Invalid domain", fmt.Sprintf("%q is not a DNS name: %s", r.Domain, why))
		}
	}

	c.ports(r.Ports)

	if r.Bootstrap && c.want(keyBootstrap, keyServer) && !r.Server {
		c.add(keyBootstrap, "Invalid bootstrap", "bootstrap = true requires server = true: only a server can bootstrap the cluster")
	}

	joining := r.Join.Token != "" || len(r.Join.Addresses) > 0 || src.set(keyJoin)
	if r.Bootstrap && joining && c.want(keyBootstrap, keyJoin) {
		detail := "bootstrap = true starts a new cluster and a join block joins an existing one: remove one of them"
		if rng := src.rangeOf(keyBootstrap); rng != nil {
			detail += fmt.Sprintf(" (bootstrap is set at %s:%d:%d)", rng.Filename, rng.Start.Line, rng.Start.Column)
		}
		c.add(keyJoin, "Conflicting bootstrap and join", detail)
	}
	if joining {
		c.join(r.Join)
	}

	if c.want(keyTags) {
		for _, t := range r.Tags {
			if !tagRE.MatchString(t) {
				c.add(c.elemKey(keyTags, t), "Invalid tag", fmt.Sprintf(
					"%q must start with a-z or 0-9, and hold only a-z, 0-9, '_', '.' and '-', at most 63 in all", t))
			}
		}
	}

	if c.want(keyLogLevel) && !slices.Contains([]slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError}, r.LogLevel) {
		c.add(keyLogLevel, "Invalid log_level", fmt.Sprintf("%s is not one of %s", r.LogLevel, strings.Join(logLevels, ", ")))
	}
	if c.want(keyLogFormat) && r.LogFormat != "text" && r.LogFormat != "json" {
		c.add(keyLogFormat, "Invalid log_format", fmt.Sprintf("%q is not one of text, json", r.LogFormat))
	}

	c.services(r.Services)
	c.dns(r.DNS, r.Domain)
	c.metrics(r.Metrics)
	c.listens(r)
	return c.diags
}

type checker struct {
	src   *sources // nil when validating a Runtime built in code
	diags Diagnostics
}

// want reports whether a rule reading keys should run: not when one of
// them already failed to decode.
func (c *checker) want(keys ...string) bool {
	for _, k := range keys {
		if c.src.isPoisoned(k) {
			return false
		}
	}
	return true
}

func (c *checker) add(key, summary, detail string) {
	c.diags = append(c.diags, newDiagnostic(c.src.rangeOf(key), summary, detail))
}

// path checks that p is set and absolute, and reports whether it is.
func (c *checker) path(key, p string) bool {
	if !c.want(key) {
		return false
	}
	switch {
	case p == "":
		c.add(key, "Invalid "+key, key+" must not be empty")
	case !filepath.IsAbs(p):
		c.add(key, "Invalid "+key, fmt.Sprintf("%q is not an absolute path", p))
	default:
		return true
	}
	return false
}

func (c *checker) ports(p Ports) {
	all := []struct {
		key  string
		port int
	}{{keyGossip, p.Gossip}, {keyRPC, p.RPC}, {keyRaft, p.Raft}}
	for i, a := range all {
		if !c.want(a.key) {
			continue
		}
		if a.port < 1 || a.port > 65535 {
			c.add(a.key, "Invalid "+a.key, fmt.Sprintf("%d is not a port: it must be in 1..65535", a.port))
			continue
		}
		for _, b := range all[:i] {
			if b.port != a.port || !c.want(b.key) {
				continue
			}
			// Point at the port that a file set; if both were, at the later key.
			at, other := a.key, b.key
			if !c.src.set(a.key) && c.src.set(b.key) {
				at, other = b.key, a.key
			}
			c.add(at, "Duplicate port", fmt.Sprintf("%s and %s are both %d: each port must be different", other, at, a.port))
		}
	}
}

// join checks a join block. It never puts the token in a message.
func (c *checker) join(j Join) {
	if c.want(keyJoinToken) && strings.TrimSpace(j.Token) == "" {
		c.add(keyJoinToken, "Missing join.token", "a join block needs the token that `weft token create` printed on a server")
	}
	if !c.want(keyJoinAddresses) {
		return
	}
	if len(j.Addresses) == 0 {
		c.add(keyJoinAddresses, "Missing join.addresses", "a join block needs at least one server address, as \"host:port\" or \"host\"")
		return
	}
	for i, a := range j.Addresses {
		if why := hostPortProblem(a); why != "" {
			c.add(keyJoinAddresses+"["+strconv.Itoa(i)+"]", "Invalid join address", fmt.Sprintf("%q: %s", a, why))
		}
	}
}

// elemKey finds the key path of element v in the list key as written, so
// that a bad element is reported where it is, although Runtime holds the
// list sorted.
func (c *checker) elemKey(key, v string) string {
	if c.src != nil {
		if i := slices.Index(c.src.lists[key], v); i >= 0 {
			return elem(key, i)
		}
	}
	return key
}

// dnsNameProblem says why s is not a DNS name of lower-case labels, or "".
func dnsNameProblem(s string) string {
	switch {
	case s == "":
		return "it is empty"
	case len(s) > 253:
		return fmt.Sprintf("it is %d bytes, more than 253", len(s))
	case strings.HasSuffix(s, "."):
		return "it must not end with '.'"
	}
	for l := range strings.SplitSeq(s, ".") {
		if !dnsLabel.MatchString(l) {
			return fmt.Sprintf("label %q must be 1 to 63 of a-z, 0-9 and '-', not starting or ending with '-'", l)
		}
	}
	return ""
}

// hostPortProblem says why s is not "host:port", or "".
func hostPortProblem(s string) string {
	h, p, err := net.SplitHostPort(s)
	if err != nil {
		return "want \"host:port\" or \"host\""
	}
	if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
		return fmt.Sprintf("port %q is not in 1..65535", p)
	}
	if _, err := netip.ParseAddr(h); err == nil {
		return ""
	}
	if h == "" || len(h) > 253 {
		return "the host must be an IP address or a DNS name"
	}
	for l := range strings.SplitSeq(strings.TrimSuffix(h, "."), ".") {
		if !hostLabel.MatchString(l) {
			return "the host must be an IP address or a DNS name"
		}
	}
	return ""
}
