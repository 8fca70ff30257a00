package config

import (
	"cmp"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Defaults of the keys that do not depend on the host.
const (
	DefaultDataDir    = "/var/lib/weft"
	DefaultSocket     = "/run/weft/weft.sock"
	DefaultDomain     = "weft.internal"
	DefaultGossipPort = 7946
	DefaultRPCPort    = 7947
	DefaultRaftPort   = 7948
	DefaultLogFormat  = "text"

	DefaultCheckInterval = 10 * time.Second
	DefaultCheckTimeout  = 2 * time.Second
	// DefaultDNSListen keeps clear of port 53, where systemd-resolved
	// (127.0.0.53) or another local resolver usually is.
	DefaultDNSListen = "127.0.0.1:8600"
	DefaultDNSTTL    = 5 * time.Second
)

// host is what two defaults need from the OS; tests pass a fake.
type host struct {
	hostname       func() (string, error)
	interfaceAddrs func() ([]net.Addr, error)
}

func systemHost() host { return host{hostname: os.Hostname, interfaceAddrs: net.InterfaceAddrs} }

// Load reads the files in the order given, then the *.hcl files of each dir
// in lexical name order, merges them (a later file wins per key, also per key
// inside blocks; a service block changes the service of the same name; a list
// is one key and is replaced whole), applies the defaults and validates the
// result.
//
// The error, when not nil, is Diagnostics listing every problem found, each
// with the file:line:col it is at. Validation is skipped when a file cannot
// be read or parsed, since what was merged is then incomplete.
func Load(files []string, dirs []string) (Runtime, error) {
	return load(files, dirs, systemHost())
}

func load(files, dirs []string, h host) (Runtime, error) {
	src := newSources()
	paths, diags := configPaths(files, dirs)
	var merged fileConfig
	for i, path := range paths {
		src.files[path] = i
		fc, body, ds := parseFile(path, src)
		diags = append(diags, ds...)
		if fc != nil {
			merged.merge(fc, body, src)
		}
	}
	if len(diags) > 0 && src.broken {
		return Runtime{}, diags.sorted(src)
	}
	r, ds := build(&merged, src, h)
	diags = append(diags, ds...)
	diags = append(diags, r.check(src)...)
	if len(diags) > 0 {
		return Runtime{}, diags.sorted(src)
	}
	return r, nil
}

// Default returns the configuration of an agent without any config file.
// The node name is the host's name; it is empty if that cannot be read.
func Default() Runtime {
	r, _ := build(&fileConfig{}, newSources(), systemHost())
	return r
}

// Dev returns the configuration of a single-node development server that
// keeps its state, and its admin socket, in dataDir.
func Dev(dataDir string) Runtime {
	return dev(dataDir, systemHost())
}

func dev(dataDir string, h host) Runtime {
	if abs, err := filepath.Abs(dataDir); err == nil && dataDir != "" {
		dataDir = abs
	}
	yes, loopback := true, "127.0.0.1"
	socket := filepath.Join(dataDir, "weft.sock")
	r, _ := build(&fileConfig{
		DataDir:       &dataDir,
		Socket:        &socket,
		BindAddr:      &loopback,
		AdvertiseAddr: &loopback,
		Server:        &yes,
		Bootstrap:     &yes,
	}, newSources(), h)
	return r
}

// build applies the defaults to the merged files and turns the values that
// Runtime holds in a parsed form (addresses, log level, paths) into it. The
// problems it finds are those the parsed form cannot represent; check finds
// the rest.
func build(m *fileConfig, src *sources, h host) (Runtime, Diagnostics) {
	var diags Diagnostics
	bad := func(key, summary, detail string) {
		base, _, _ := splitIndex(key) // a bad element spoils its list
		src.poisoned[base] = true
		diags = append(diags, newDiagnostic(src.rangeOf(key), summary, detail))
	}

	r := Runtime{
		DataDir:   DefaultDataDir,
		Socket:    DefaultSocket,
		BindAddr:  netip.IPv4Unspecified(),
		Ports:     Ports{Gossip: DefaultGossipPort, RPC: DefaultRPCPort, Raft: DefaultRaftPort},
		Domain:    DefaultDomain,
		LogLevel:  slog.LevelInfo,
		LogFormat: DefaultLogFormat,
	}

	if m.NodeName != nil {
		r.NodeName = *m.NodeName
	} else if name, err := h.hostname(); err != nil {
		bad(keyNodeName, "Cannot determine node_name", "node_name is not set and the host name cannot be read ("+err.Error()+"); set node_name")
	} else {
		r.NodeName = hostNodeName(name)
	}

	for _, p := range []struct {
		key string
		v   *string
		dst *string
	}{
		{keyDataDir, m.DataDir, &r.DataDir},
		{keySocket, m.Socket, &r.Socket},
	} {
		if p.v == nil {
			continue
		}
		if *p.v == "" {
			// filepath.Abs would quietly turn "" into the working directory.
			bad(p.key, "Invalid "+p.key, p.key+" must not be empty")
			continue
		}
		abs, err := filepath.Abs(*p.v)
		if err != nil {
			bad(p.key, "Invalid "+p.key, "cannot make "+strconv.Quote(*p.v)+" absolute: "+err.Error())
			continue
		}
		*p.dst = abs
	}

	if m.BindAddr != nil {
		if a, err := netip.ParseAddr(*m.BindAddr); err != nil {
			bad(keyBindAddr, "Invalid bind_addr", strconv.Quote(*m.BindAddr)+" is not an IP address")
		} else {
			r.BindAddr = a
		}
	}
	if m.AdvertiseAddr != nil {
		if a, err := netip.ParseAddr(*m.AdvertiseAddr); err != nil {
			bad(keyAdvertiseAddr, "Invalid advertise_addr", strconv.Quote(*m.AdvertiseAddr)+" is not an IP address")
		} else {
			r.AdvertiseAddr = a
		}
	} else if r.BindAddr.IsUnspecified() {
		r.AdvertiseAddr = privateIPv4(h)
	} else {
		r.AdvertiseAddr = r.BindAddr
	}

	if m.Domain != nil {
		r.Domain = *m.Domain
	}
	if p := m.Ports; p != nil {
		setInt(&r.Ports.Gossip, p.Gossip)
		setInt(&r.Ports.RPC, p.RPC)
		setInt(&r.Ports.Raft, p.Raft)
	}
	if m.Server != nil {
		r.Server = *m.Server
	}
	if m.Bootstrap != nil {
		r.Bootstrap = *m.Bootstrap
	}
	if m.Tags != nil && len(*m.Tags) > 0 {
		r.Tags = slices.Compact(slices.Sorted(slices.Values(*m.Tags)))
	}

	if j := m.Join; j != nil {
		if j.Token != nil {
			r.Join.Token = *j.Token
		}
		if j.Addresses != nil && len(*j.Addresses) > 0 {
			r.Join.Addresses = make([]string, len(*j.Addresses))
			for i, a := range *j.Addresses {
				// Keep the index: check reports a bad address by its position.
				r.Join.Addresses[i] = withDefaultPort(a, r.Ports.RPC)
			}
		}
	}

	if m.LogLevel != nil {
		if l, ok := parseLevel(*m.LogLevel); ok {
			r.LogLevel = l
		} else {
			bad(keyLogLevel, "Invalid log_level", strconv.Quote(*m.LogLevel)+" is not one of "+strings.Join(logLevels, ", "))
		}
	}
	if m.LogFormat != nil {
		r.LogFormat = *m.LogFormat
	}

	r.Services = buildServices(m.Services, bad)
	r.DNS = buildDNS(m.DNS, r.Domain, bad)
	if m.Metrics != nil && m.Metrics.Listen != nil {
		r.Metrics.Listen = *m.Metrics.Listen
	}
	return r, diags
}

func setInt(dst *int, v *int) {
	if v != nil {
		*dst = *v
	}
}

// hostNodeName makes a node name of a host name: lower-cased, and only its
// first label when the host name is fully qualified.
func hostNodeName(name string) string {
	name = strings.ToLower(name)
	if i := strings.IndexByte(name, '.'); i >= 0 {
		name = name[:i]
	}
	return name
}

// privateIPv4 is the advertise address of an agent bound to all addresses:
// the first private IPv4 of the host, else loopback so that a lone agent
// still works.
func privateIPv4(h host) netip.Addr {
	addrs, err := h.interfaceAddrs()
	if err == nil {
		for _, a := range addrs {
			n, ok := a.(*net.IPNet)
			if !ok {
				continue
			}
			if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap().Is4() && ip.IsPrivate() {
				return ip.Unmap()
			}
		}
	}
	return netip.AddrFrom4([4]byte{127, 0, 0, 1})
}

// withDefaultPort turns "host" into "host:port". Anything else is returned
// as written, for check to judge.
func withDefaultPort(addr string, port int) string {
	if _, _, err := net.SplitHostPort(addr); err == nil {
		return addr
	}
	h := strings.TrimSuffix(strings.TrimPrefix(addr, "["), "]")
	if ip, err := netip.ParseAddr(h); err == nil {
		return net.JoinHostPort(ip.String(), strconv.Itoa(port))
	}
	if h != "" && !strings.ContainsAny(h, ":[]") {
		return net.JoinHostPort(h, strconv.Itoa(port))
	}
	return addr
}

var logLevels = []string{"debug", "info", "warn", "error"}

func parseLevel(s string) (slog.Level, bool) {
	switch s {
	case "debug":
		return slog.LevelDebug, true
	case "info":
		return slog.LevelInfo, true
	case "warn":
		return slog.LevelWarn, true
	case "error":
		return slog.LevelError, true
	}
	return 0, false
}

// sorted orders diagnostics by the order the files were loaded, then by
// position; those without a file come last.
func (ds Diagnostics) sorted(src *sources) Diagnostics {
	rank := func(d Diagnostic) int {
		if i, ok := src.files[d.Filename]; ok {
			return i
		}
		if d.Filename != "" {
			return -1 // a directory or a file that could not be read
		}
		return len(src.files)
	}
	slices.SortStableFunc(ds, func(a, b Diagnostic) int {
		return cmp.Or(cmp.Compare(rank(a), rank(b)), cmp.Compare(a.Line, b.Line), cmp.Compare(a.Column, b.Column))
	})
	return ds
}
