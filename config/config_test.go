package config

import (
	"bytes"
	"errors"
	"fmt"
	"go/parser"
	"go/token"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var cmpRuntime = cmp.Options{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b }),
	cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
	cmpopts.EquateEmpty(),
}

// fakeHost is a host named DB-1.example.com with a loopback, a public and a
// private IPv4 address, in that order.
func fakeHost() host {
	return host{
		hostname: func() (string, error) { return "DB-1.example.com", nil },
		interfaceAddrs: func() ([]net.Addr, error) {
			return []net.Addr{
				&net.IPNet{IP: net.IPv4(127, 0, 0, 1), Mask: net.CIDRMask(8, 32)},
				&net.IPNet{IP: net.ParseIP("2001:db8::1"), Mask: net.CIDRMask(64, 128)},
				&net.IPNet{IP: net.IPv4(203, 0, 113, 9), Mask: net.CIDRMask(24, 32)},
				&net.IPNet{IP: net.IPv4(10, 1, 2, 3), Mask: net.CIDRMask(8, 32)},
				&net.IPNet{IP: net.IPv4(192, 168, 50, 11), Mask: net.CIDRMask(24, 32)},
			}, nil
		},
	}
}

func write(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// defaults is what an agent on fakeHost runs with when no file sets anything.
func defaults() Runtime {
	return Runtime{
		NodeName:      "db-1",
		DataDir:       "/var/lib/weft",
		Socket:        "/run/weft/weft.sock",
		BindAddr:      netip.MustParseAddr("0.0.0.0"),
		AdvertiseAddr: netip.MustParseAddr("10.1.2.3"),
		Ports:         Ports{Gossip: 7946, RPC: 7947, Raft: 7948},
		Domain:        "weft.internal",
		LogLevel:      slog.LevelInfo,
		LogFormat:     "text",
		DNS: DNS{
			Enabled: true,
			Listen:  []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:8600")},
			Domain:  "weft.internal",
			TTL:     5 * time.Second,
		},
	}
}

func TestLoadMerge(t *testing.T) {
	dir := t.TempDir()
	confDir := filepath.Join(dir, "conf.d")
	// The dir's files sort before the -config-file files by name, but are
	// read after them.
	a := write(t, dir, "z-a.hcl", `
node_name = "db-1"
server    = true
tags      = ["web", "prod"]
ports {
  gossip = 8001
  rpc    = 8002
}
join {
  token     = "tok-a"
  addresses = ["192.168.50.11"]
}
log_level = "debug"
`)
	b := write(t, dir, "z-b.hcl", `
node_name = "db-2"
ports {
  rpc = 9002
}
join {
  token = "tok-b"
}
`)
	write(t, confDir, "10-first.hcl", `
data_dir = "/srv/weft"
tags     = ["db", "db", "a.b_c-d"]
`)
	write(t, confDir, "20-second.hcl", `
data_dir   = "/srv/weft2"
server     = false
log_format = "json"
bind_addr  = "192.168.50.11"
`)
	write(t, confDir, "README.md", "not config")
	write(t, confDir, "sub.hcl/ignored.hcl", "this is not read")

	got, err := load([]string{a, b}, []string{confDir}, fakeHost())
	if err != nil {
		t.Fatal(err)
	}
	want := defaults()
	want.NodeName = "db-2"
	want.DataDir = "/srv/weft2"
	want.BindAddr = netip.MustParseAddr("192.168.50.11")
	want.AdvertiseAddr = netip.MustParseAddr("192.168.50.11")
	want.Ports = Ports{Gossip: 8001, RPC: 9002, Raft: 7948}
	want.Tags = []string{"a.b_c-d", "db"}
	// The address without a port takes the rpc port that won the merge.
	want.Join = Join{Token: "tok-b", Addresses: []string{"192.168.50.11:9002"}}
	want.LogLevel = slog.LevelDebug
	want.LogFormat = "json"
	if diff := cmp.Diff(want, got, cmpRuntime); diff != "" {
		t.Errorf("Load (-want +got):\n%s", diff)
	}
}

func TestLoadDefaults(t *testing.T) {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		file   string
		host   func(*host)
		modify func(*Runtime)
	}{
		{name: "no files"},
		{
			name: "empty file",
			file: "# nothing set\n",
		},
		{
			name:   "advertise follows a specified bind_addr",
			file:   `bind_addr = "192.168.7.7"`,
			modify: func(r *Runtime) { r.BindAddr = netip.MustParseAddr("192.168.7.7"); r.AdvertiseAddr = r.BindAddr },
		},
		{
			name:   "advertise is the first private IPv4 when bound to ::",
			file:   `bind_addr = "::"`,
			modify: func(r *Runtime) { r.BindAddr = netip.IPv6Unspecified() },
		},
		{
			name: "advertise falls back to loopback without a private IPv4",
			host: func(h *host) {
				h.interfaceAddrs = func() ([]net.Addr, error) {
					return []net.Addr{&net.IPNet{IP: net.IPv4(203, 0, 113, 9), Mask: net.CIDRMask(24, 32)}}, nil
				}
			},
			modify: func(r *Runtime) { r.AdvertiseAddr = netip.MustParseAddr("127.0.0.1") },
		},
		{
			name:   "advertise_addr set",
			file:   `advertise_addr = "fd00::7"`,
			modify: func(r *Runtime) { r.AdvertiseAddr = netip.MustParseAddr("fd00::7") },
		},
		{
			name: "relative paths are made absolute",
			file: "data_dir = \"state\"\nsocket = \"state/s.sock\"",
			modify: func(r *Runtime) {
				r.DataDir = filepath.Join(wd, "state")
				r.Socket = filepath.Join(wd, "state", "s.sock")
			},
		},
		{
			name: "join addresses get the rpc port",
			file: `
ports { rpc = 9000 }
join {
  token     = "t"
  addresses = ["10.0.0.1", "fd00::1", "[fd00::2]", "seed.example.com", "10.0.0.2:1234", "[fd00::3]:5"]
}`,
			modify: func(r *Runtime) {
				r.Ports.RPC = 9000
				r.Join = Join{Token: "t", Addresses: []string{
					"10.0.0.1:9000", "[fd00::1]:9000", "[fd00::2]:9000", "seed.example.com:9000", "10.0.0.2:1234", "[fd00::3]:5",
				}}
			},
		},
		{
			name:   "empty tags override",
			file:   "tags = []",
			modify: func(r *Runtime) {},
		},
		{
			name:   "null is unset",
			file:   "server = null\nnode_name = null",
			modify: func(r *Runtime) {},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var files []string
			if tt.file != "" {
				files = append(files, write(t, t.TempDir(), "a.hcl", tt.file))
			}
			h := fakeHost()
			if tt.host != nil {
				tt.host(&h)
			}
			got, err := load(files, nil, h)
			if err != nil {
				t.Fatal(err)
			}
			want := defaults()
			if tt.modify != nil {
				tt.modify(&want)
			}
			if diff := cmp.Diff(want, got, cmpRuntime); diff != "" {
				t.Errorf("Load (-want +got):\n%s", diff)
			}
		})
	}
}

// problems returns the diagnostics of err as "file:line:col: summary", with
// the file's dir left out.
func problems(t *testing.T, err error) []string {
	t.Helper()
	var ds Diagnostics
	if !errors.As(err, &ds) {
		t.Fatalf("error %v (%T) is not Diagnostics", err, err)
	}
	var out []string
	for _, d := range ds {
		d.Filename = filepath.Base(d.Filename)
		d.Detail = ""
		out = append(out, d.String())
	}
	return out
}

type file struct{ name, content string }

// loadErrorTest is a config that must fail to load with exactly the
// problems in want.
type loadErrorTest struct {
	name  string
	files []file
	want  []string // "file:line:col: summary", in order
	// detail holds texts the error must contain, such as hcl's hints.
	detail []string
}

func runLoadErrors(t *testing.T, tests []loadErrorTest) {
	t.Helper()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			var paths []string
			for _, f := range tt.files {
				paths = append(paths, write(t, dir, f.name, f.content))
			}
			_, err := load(paths, nil, fakeHost())
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			if diff := cmp.Diff(tt.want, problems(t, err)); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
			msg := strings.ReplaceAll(err.Error(), dir+string(filepath.Separator), "")
			for _, d := range tt.detail {
				if !strings.Contains(msg, d) {
					t.Errorf("error does not contain %q:\n%s", d, msg)
				}
			}
			if n := len(strings.Split(msg, "\n")); n != len(tt.want) {
				t.Errorf("error has %d lines, want one per problem (%d):\n%s", n, len(tt.want), msg)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	runLoadErrors(t, []loadErrorTest{
		{
			name:   "syntax error",
			files:  []file{{"a.hcl", "server = true\nnode_name = \"db\n"}},
			want:   []string{"a.hcl:2:16: Invalid multi-line string", "a.hcl:2:16: Unterminated template string"},
			detail: []string{"No closing marker"},
		},
		{
			name:   "syntax errors in two files",
			files:  []file{{"a.hcl", "ports {"}, {"b.hcl", "server = = true"}},
			want:   []string{"a.hcl:1:7: Unclosed configuration block", "b.hcl:1:10: Invalid expression"},
			detail: []string{},
		},
		{
			name:   "unknown key",
			files:  []file{{"a.hcl", "server = true\nnode_nmae = \"db\"\n"}},
			want:   []string{"a.hcl:2:1: Unsupported argument"},
			detail: []string{`a.hcl:2:1: Unsupported argument: An argument named "node_nmae" is not expected here. Did you mean "node_name"?`},
		},
		{
			name:   "unknown key in a block",
			files:  []file{{"a.hcl", "ports {\n  rcp = 1\n}\n"}},
			want:   []string{"a.hcl:2:3: Unsupported argument"},
			detail: []string{`Did you mean "rpc"?`},
		},
		{
			name:   "unknown block",
			files:  []file{{"a.hcl", "port {\n  rpc = 1\n}\n"}},
			want:   []string{"a.hcl:1:1: Unsupported block type"},
			detail: []string{`Did you mean "ports"?`},
		},
		{
			name:   "block written as an attribute",
			files:  []file{{"a.hcl", "join = {}\n"}},
			want:   []string{"a.hcl:1:1: Unsupported argument"},
			detail: []string{`Did you mean to define a block of type "join"?`},
		},
		{
			name:  "wrong types",
			files: []file{{"a.hcl", "server = \"yes\"\nports { rpc = \"x\" }\ntags = \"web\"\n"}},
			want: []string{
				"a.hcl:1:11: Unsuitable value type",
				"a.hcl:2:16: Unsuitable value type",
				"a.hcl:3:9: Unsuitable value type",
			},
			detail: []string{"a bool is required", "a number is required"},
		},
		{
			name:  "a wrong type is not reported again by validation",
			files: []file{{"a.hcl", "server = \"yes\"\nbootstrap = true\n"}},
			want:  []string{"a.hcl:1:11: Unsuitable value type"},
		},
		{
			name:   "duplicate block",
			files:  []file{{"a.hcl", "ports {\n  rpc = 1\n}\nports {\n  rpc = 2\n}\n"}},
			want:   []string{"a.hcl:4:1: Duplicate ports block"},
			detail: []string{"Only one ports block is allowed"},
		},
		{
			name:  "duplicate attribute",
			files: []file{{"a.hcl", "server = true\nserver = false\n"}},
			want:  []string{"a.hcl:2:1: Attribute redefined"},
		},
		{
			name:  "node_name",
			files: []file{{"a.hcl", "\n  node_name = \"DB-1\""}},
			want:  []string{"a.hcl:2:3: Invalid node_name"},
		},
		{
			name:  "node_name starting with a hyphen",
			files: []file{{"a.hcl", `node_name = "-db"`}},
			want:  []string{"a.hcl:1:1: Invalid node_name"},
		},
		{
			name:  "node_name too long",
			files: []file{{"a.hcl", `node_name = "` + strings.Repeat("a", 64) + `"`}},
			want:  []string{"a.hcl:1:1: Invalid node_name"},
		},
		{
			name:   "addresses",
			files:  []file{{"a.hcl", "bind_addr = \"192.168.1\"\nadvertise_addr = \"db.local\""}},
			want:   []string{"a.hcl:1:1: Invalid bind_addr", "a.hcl:2:1: Invalid advertise_addr"},
			detail: []string{`"192.168.1" is not an IP address`},
		},
		{
			name:   "advertise_addr unspecified",
			files:  []file{{"a.hcl", `advertise_addr = "0.0.0.0"`}},
			want:   []string{"a.hcl:1:1: Invalid advertise_addr"},
			detail: []string{"unspecified address"},
		},
		{
			name:  "ports out of range",
			files: []file{{"a.hcl", "ports {\n  gossip = 0\n  rpc = 70000\n  raft = -1\n}"}},
			want: []string{
				"a.hcl:2:3: Invalid ports.gossip",
				"a.hcl:3:3: Invalid ports.rpc",
				"a.hcl:4:3: Invalid ports.raft",
			},
			detail: []string{"70000 is not a port"},
		},
		{
			name:   "ports not distinct",
			files:  []file{{"a.hcl", "ports {\n  gossip = 9000\n  rpc = 9000\n}"}},
			want:   []string{"a.hcl:3:3: Duplicate port"},
			detail: []string{"ports.gossip and ports.rpc are both 9000"},
		},
		{
			name:   "port set to another's default",
			files:  []file{{"a.hcl", "ports {\n  raft = 7948\n  gossip = 7947\n}"}},
			want:   []string{"a.hcl:3:3: Duplicate port"},
			detail: []string{"ports.rpc and ports.gossip are both 7947"},
		},
		{
			name:  "non-integer port",
			files: []file{{"a.hcl", "ports { rpc = 1.5 }"}},
			want:  []string{"a.hcl:1:15: Unsuitable value type"},
		},
		{
			name:  "bootstrap without server",
			files: []file{{"a.hcl", "server = false\nbootstrap = true"}},
			want:  []string{"a.hcl:2:1: Invalid bootstrap"},
		},
		{
			name: "bootstrap and join",
			files: []file{
				{"a.hcl", "server = true\nbootstrap = true"},
				{"b.hcl", "\njoin {\n  token = \"t\"\n  addresses = [\"10.0.0.1\"]\n}"},
			},
			want:   []string{"b.hcl:2:1: Conflicting bootstrap and join"},
			detail: []string{"a.hcl:2:1)"},
		},
		{
			name:  "empty join block",
			files: []file{{"a.hcl", "join {\n}"}},
			want:  []string{"a.hcl:1:1: Missing join.token", "a.hcl:1:1: Missing join.addresses"},
		},
		{
			name:  "empty join values",
			files: []file{{"a.hcl", "join {\n  token = \"\"\n  addresses = []\n}"}},
			want:  []string{"a.hcl:2:3: Missing join.token", "a.hcl:3:3: Missing join.addresses"},
		},
		{
			name:  "bad join addresses",
			files: []file{{"a.hcl", "join {\n  token = \"t\"\n  addresses = [\n    \"10.0.0.1:7947\",\n    \"10.0.0.2:99999\",\n    \"a:b:c\",\n    \"bad_host\",\n    \"\",\n  ]\n}"}},
			want: []string{
				"a.hcl:5:5: Invalid join address",
				"a.hcl:6:5: Invalid join address",
				"a.hcl:7:5: Invalid join address",
				"a.hcl:8:5: Invalid join address",
			},
			detail: []string{`"10.0.0.2:99999": port "99999" is not in 1..65535`, `"bad_host:7947": the host must be`},
		},
		{
			name: "domain",
			files: []file{
				{"a.hcl", `domain = "weft.internal."`},
				{"b.hcl", `domain = "Weft.internal"`},
				{"c.hcl", `domain = "` + strings.Repeat("a.", 127) + `a"`},
			},
			want: []string{"c.hcl:1:1: Invalid domain"},
		},
		{
			name:   "domain trailing dot",
			files:  []file{{"a.hcl", `domain = "weft.internal."`}},
			want:   []string{"a.hcl:1:1: Invalid domain"},
			detail: []string{"must not end with '.'"},
		},
		{
			name:   "domain upper case",
			files:  []file{{"a.hcl", `domain = "Weft.internal"`}},
			want:   []string{"a.hcl:1:1: Invalid domain"},
			detail: []string{`label "Weft"`},
		},
		{
			name:  "tags",
			files: []file{{"a.hcl", "tags = [\n  \"web\",\n  \"Prod\",\n  \"_x\",\n  \"" + strings.Repeat("a", 64) + "\",\n]"}},
			want: []string{
				"a.hcl:3:3: Invalid tag",
				"a.hcl:4:3: Invalid tag",
				"a.hcl:5:3: Invalid tag",
			},
		},
		{
			name:  "log settings",
			files: []file{{"a.hcl", "log_level = \"INFO\"\nlog_format = \"logfmt\""}},
			want:  []string{"a.hcl:1:1: Invalid log_level", "a.hcl:2:1: Invalid log_format"},
		},
		{
			name:  "empty paths",
			files: []file{{"a.hcl", "data_dir = \"\"\nsocket = \"\""}},
			want:  []string{"a.hcl:1:1: Invalid data_dir", "a.hcl:2:1: Invalid socket"},
		},
		{
			name:   "socket too long",
			files:  []file{{"a.hcl", `socket = "/run/` + strings.Repeat("s", 100) + `.sock"`}},
			want:   []string{"a.hcl:1:1: Invalid socket"},
			detail: []string{"is 110 bytes; a unix socket path must be shorter than 108 bytes"},
		},
		{
			name: "the file that set the winning value is blamed",
			files: []file{
				{"a.hcl", "node_name = \"OK-not\"\nports {\n  rpc = 0\n}"},
				{"b.hcl", "\n\nnode_name = \"Bad\"\n"},
			},
			want: []string{"a.hcl:3:3: Invalid ports.rpc", "b.hcl:3:1: Invalid node_name"},
		},
		{
			name: "every problem is reported",
			files: []file{
				{"a.hcl", "nodename = \"x\"\nserver = 1\n"},
				{"b.hcl", "bootstrap = true\nlog_level = \"loud\"\ntags = [\"A\"]\n"},
			},
			want: []string{
				"a.hcl:1:1: Unsupported argument",
				"a.hcl:2:10: Unsuitable value type",
				"b.hcl:2:1: Invalid log_level",
				"b.hcl:3:9: Invalid tag",
			},
		},
	})
}

func TestLoadPathErrors(t *testing.T) {
	dir := t.TempDir()
	empty := filepath.Join(dir, "empty")
	write(t, empty, "README.md", "no config here")
	missingDir := filepath.Join(dir, "nodir")
	missingFile := filepath.Join(dir, "nofile.hcl")

	tests := []struct {
		name        string
		files, dirs []string
		want        string
	}{
		{"missing file", []string{missingFile}, nil, missingFile + ": Cannot read config file: no such file or directory"},
		{"missing dir", nil, []string{missingDir}, missingDir + ": Cannot read config directory: no such file or directory"},
		{"dir without *.hcl", nil, []string{empty}, empty + ": No config files in directory: a config directory must hold at least one *.hcl file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := load(tt.files, tt.dirs, fakeHost())
			if err == nil {
				t.Fatal("Load succeeded, want an error")
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("error:\n got %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestLoadNodeNameFromHost(t *testing.T) {
	h := fakeHost()
	h.hostname = func() (string, error) { return "build_box", nil }
	_, err := load(nil, nil, h)
	if err == nil {
		t.Fatal("Load succeeded with an invalid host name")
	}
	want := `Invalid node_name: "build_box" is not a DNS label: 1 to 63 of a-z, 0-9 and '-', not starting or ending with '-'; node_name is not set, so the host name was used: set node_name`
	if err.Error() != want {
		t.Errorf("error:\n got %s\nwant %s", err, want)
	}

	h.hostname = func() (string, error) { return "", errors.New("uname failed") }
	if _, err := load(nil, nil, h); err == nil || !strings.Contains(err.Error(), "set node_name") {
		t.Errorf("Load with an unreadable host name: error %v, want one saying to set node_name", err)
	}
}

func TestDev(t *testing.T) {
	dir := t.TempDir()
	got := dev(dir, fakeHost())
	want := defaults()
	want.DataDir = dir
	want.Socket = filepath.Join(dir, "weft.sock")
	want.BindAddr = netip.MustParseAddr("127.0.0.1")
	want.AdvertiseAddr = want.BindAddr
	want.Server = true
	want.Bootstrap = true
	if diff := cmp.Diff(want, got, cmpRuntime); diff != "" {
		t.Errorf("Dev (-want +got):\n%s", diff)
	}
	if err := got.Validate(); err != nil {
		t.Errorf("Dev().Validate(): %v", err)
	}

	// The exported one asks the real host for its name.
	r := Dev(dir)
	if !dnsLabel.MatchString(r.NodeName) {
		t.Skipf("this host's name %q is not a DNS label, so Dev() cannot validate here", r.NodeName)
	}
	if err := r.Validate(); err != nil {
		t.Errorf("Dev().Validate(): %v", err)
	}
}

func TestDefault(t *testing.T) {
	r := Default()
	if r.DataDir != DefaultDataDir || r.Socket != DefaultSocket || r.Ports.RPC != DefaultRPCPort || !r.AdvertiseAddr.IsValid() {
		t.Errorf("Default() = %v, want the defaults", r)
	}
	if !dnsLabel.MatchString(r.NodeName) {
		t.Skipf("this host's name %q is not a DNS label, so Default() cannot validate here", r.NodeName)
	}
	if err := r.Validate(); err != nil {
		t.Errorf("Default().Validate(): %v", err)
	}
}

func TestValidateRuntime(t *testing.T) {
	base := func() Runtime { return dev("/var/lib/weft", fakeHost()) }
	tests := []struct {
		name   string
		modify func(*Runtime)
		want   []string
	}{
		{"valid", func(*Runtime) {}, nil},
		{"zero value", func(r *Runtime) { *r = Runtime{LogFormat: "text"} }, []string{
			"Invalid node_name", "Invalid data_dir", "Invalid socket", "Invalid bind_addr", "Invalid advertise_addr",
			"Invalid domain", "Invalid ports.gossip", "Invalid ports.rpc", "Invalid ports.raft",
		}},
		{"relative data_dir", func(r *Runtime) { r.DataDir = "weft" }, []string{"Invalid data_dir"}},
		{"bootstrap without server", func(r *Runtime) { r.Server = false }, []string{"Invalid bootstrap"}},
		{"join while bootstrapping", func(r *Runtime) {
			r.Join = Join{Token: "t", Addresses: []string{"10.0.0.1:7947"}}
		}, []string{"Conflicting bootstrap and join"}},
		{"join without token", func(r *Runtime) {
			r.Bootstrap = false
			r.Join = Join{Addresses: []string{"10.0.0.1"}}
		}, []string{"Missing join.token", "Invalid join address"}},
		{"odd log level", func(r *Runtime) { r.LogLevel = slog.Level(3) }, []string{"Invalid log_level"}},
		{"bad tag", func(r *Runtime) { r.Tags = []string{"ok", "Not ok"} }, []string{"Invalid tag"}},
		{"valid service", func(r *Runtime) {
			r.Services = []Service{{
				Name: "db", Port: 5432, Tags: []string{"primary"},
				Check:     &Check{HTTP: "http://127.0.0.1:8008/", Interval: time.Second, Timeout: time.Second / 2},
				Identity:  &ServiceIdentity{UID: 0},
				Upstreams: []Upstream{{Service: "backup", Listen: "127.0.0.1:15432"}},
			}}
		}, nil},
		{"bad services", func(r *Runtime) {
			r.Services = []Service{
				{Name: "db"},
				{Name: "db", Port: 1},
				{Name: "web", Port: 80, Check: &Check{TCP: "x:1"}, Identity: &ServiceIdentity{UID: -1}},
				{Name: "api", Port: 80, Upstreams: []Upstream{{Service: "db"}, {Service: "db", Listen: "x:1"}}},
			}
		}, []string{
			"Missing service.port", "Duplicate service",
			"Invalid service.check.interval", "Invalid service.check.timeout", "Invalid service.identity.uid",
			"Missing service.upstream.listen", "Duplicate upstream",
		}},
		{"dns zero value", func(r *Runtime) { r.DNS = DNS{} }, nil},
		{"dns enabled without listen", func(r *Runtime) { r.DNS = DNS{Enabled: true, Domain: r.Domain} }, []string{"Missing dns.listen"}},
		{"bad dns", func(r *Runtime) {
			r.DNS.Listen = []netip.AddrPort{{}}
			r.DNS.Domain = ""
			r.DNS.Upstreams = []netip.AddrPort{netip.AddrPortFrom(netip.MustParseAddr("1.1.1.1"), 0)}
			r.DNS.AllowFrom = []netip.Prefix{{}}
			r.DNS.TTL = time.Millisecond
			r.Metrics.Listen = "nowhere"
		}, []string{
			"Invalid dns.listen", "Invalid dns.domain", "Invalid dns.upstreams", "Invalid dns.allow_from", "Invalid dns.ttl",
			"Invalid metrics.listen",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := base()
			tt.modify(&r)
			err := r.Validate()
			var got []string
			if err != nil {
				for _, d := range err.(Diagnostics) {
					if d.Filename != "" || d.Line != 0 {
						t.Errorf("diagnostic %q has a location, but no file was read", d)
					}
					got = append(got, d.Summary)
				}
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Validate (-want +got):\n%s", diff)
			}
		})
	}
}

func TestDiagnosticString(t *testing.T) {
	tests := []struct {
		d    Diagnostic
		want string
	}{
		{Diagnostic{Filename: "a.hcl", Line: 3, Column: 5, Summary: "S", Detail: "d"}, "a.hcl:3:5: S: d"},
		{Diagnostic{Filename: "a.hcl", Summary: "S", Detail: "d"}, "a.hcl: S: d"},
		{Diagnostic{Summary: "S", Detail: "d"}, "S: d"},
		{Diagnostic{Filename: "a.hcl", Line: 1, Column: 1, Summary: "S"}, "a.hcl:1:1: S"},
		{Diagnostic{Summary: "S", Detail: "two\nlines"}, "S: two lines"},
	}
	for _, tt := range tests {
		if got := tt.d.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
	if err := (Diagnostics{}).err(); err != nil {
		t.Errorf("no diagnostics gave error %v, want nil", err)
	}
}

// TestTokenNeverShown plants a join token and checks that neither the errors
// of failing configs nor the printed or logged Runtime contain it.
func TestTokenNeverShown(t *testing.T) {
	const secret = "wjt1-S3CR3T-plant3d-t0k3n"
	failing := []string{
		`join { token = "` + secret + `" }`,
		"bootstrap = true\nserver = true\njoin {\n  token = \"" + secret + "\"\n  addresses = [\"x:y:z\"]\n}",
		`join { token = ["` + secret + `"] }`,
		`join { token = {"` + secret + `" = 1} }`,
		`join { token = ` + secret + ` }`,
		`join { token = "${` + secret + `}" }`,
		`join { token = "` + secret + `\q" }`,
		`join { token = "` + secret + ` }`,
		`join { token = "` + secret + `" + 1 }`,
		`join { token = "` + secret + `"[0] }`,
		"join {\n  token = \"" + secret + "\"\n  token = \"" + secret + "\"\n}",
		"join {\n  tokn = \"" + secret + "\"\n}",
		"join {\n  token = \"" + secret + "\"\n  addresses = [\"" + "10.0.0.1" + "\"]\n}\njoin {\n  token = \"" + secret + "\"\n}",
		"join {\n  token = \"" + secret + "\"\n  addresses = \"10.0.0.1\"\n}",
		"join \"" + secret + "\" {\n}",
	}
	for i, content := range failing {
		p := write(t, t.TempDir(), "a.hcl", content)
		_, err := load([]string{p}, nil, fakeHost())
		if err == nil {
			t.Errorf("config %d loaded, want an error:\n%s", i, content)
			continue
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("config %d: the error shows the token:\n%s", i, err)
		}
	}

	p := write(t, t.TempDir(), "a.hcl", "join {\n  token = \""+secret+"\"\n  addresses = [\"10.0.0.1\"]\n}")
	r, err := load([]string{p}, nil, fakeHost())
	if err != nil {
		t.Fatal(err)
	}
	if r.Join.Token != secret {
		t.Fatalf("token = %q, want the planted one", r.Join.Token)
	}
	var logs bytes.Buffer
	for _, h := range []slog.Handler{slog.NewTextHandler(&logs, nil), slog.NewJSONHandler(&logs, nil)} {
		slog.New(h).Info("config", "runtime", r, "join", r.Join)
	}
	shown := map[string]string{
		"String":   r.String(),
		"%v":       fmt.Sprintf("%v", r),
		"%+v":      fmt.Sprintf("%+v", r),
		"%#v":      fmt.Sprintf("%#v", r),
		"%s join":  fmt.Sprintf("%s", r.Join),
		"%#v join": fmt.Sprintf("%#v", r.Join),
		"slog":     logs.String(),
	}
	for how, s := range shown {
		if strings.Contains(s, secret) {
			t.Errorf("%s shows the token: %s", how, s)
		}
		if !strings.Contains(s, "[redacted]") {
			t.Errorf("%s does not show that a token is set: %s", how, s)
		}
	}
}

// TestPackageDoc guards the package doc comment that STYLE.md asks for.
func TestPackageDoc(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "doc.go", nil, parser.ParseComments|parser.PackageClauseOnly)
	if err != nil {
		t.Fatal(err)
	}
	if f.Doc == nil || !strings.HasPrefix(f.Doc.Text(), "Package config ") {
		t.Error("doc.go has no package doc comment starting with \"Package config \"")
	}
}

// TestReadmeListsEveryKey keeps the config reference in step with the file
// model.
func TestReadmeListsEveryKey(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	var walk func(prefix string, ty reflect.Type)
	walk = func(prefix string, ty reflect.Type) {
		for f := range ty.Fields() {
			name, kind, _ := strings.Cut(f.Tag.Get("hcl"), ",")
			if kind == "label" {
				continue // documented with its block: service "<name>"
			}
			keys = append(keys, prefix+name)
			if kind == "block" {
				walk(prefix+name+".", f.Type.Elem())
			}
		}
	}
	walk("", reflect.TypeFor[fileConfig]())
	for _, k := range keys {
		if !bytes.Contains(readme, []byte("`"+k+"`")) {
			t.Errorf("README.md does not document `%s`", k)
		}
	}
	if len(keys) != 40 {
		t.Errorf("found %d keys (%s); update this test if the file model changed", len(keys), strconv.Quote(strings.Join(keys, " ")))
	}
}
