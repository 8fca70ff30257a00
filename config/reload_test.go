package config

import (
	"bytes"
	"log/slog"
	"net/netip"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestReloadable(t *testing.T) {
	base := func() Runtime {
		r := defaults()
		r.Tags = []string{"db"}
		r.Join = Join{Token: "t", Addresses: []string{"10.0.0.1:7947"}}
		r.Services = []Service{{
			Name: "db", Port: 5432, Tags: []string{"primary"},
			Check:     &Check{TCP: "127.0.0.1:5432", Interval: time.Second, Timeout: time.Second / 2},
			Identity:  &ServiceIdentity{UID: 1000},
			Upstreams: []Upstream{{Service: "backup", Listen: "127.0.0.1:15432"}},
		}}
		r.Metrics.Listen = "127.0.0.1:9436"
		return r
	}
	tests := []struct {
		name        string
		field       string // the Runtime field the case changes, "" for none
		modify      func(*Runtime)
		changed     []string
		needRestart []string
	}{
		{name: "same", modify: func(*Runtime) {}},
		{name: "nil and empty lists are the same", modify: func(r *Runtime) {
			r.Services = slices.Clone(r.Services)
			r.DNS.Upstreams = []netip.AddrPort{}
			r.DNS.AllowFrom = []netip.Prefix{}
		}},
		{"node_name", "NodeName", func(r *Runtime) { r.NodeName = "db-2" }, nil, []string{"node_name"}},
		{"data_dir", "DataDir", func(r *Runtime) { r.DataDir = "/srv" }, nil, []string{"data_dir"}},
		{"socket", "Socket", func(r *Runtime) { r.Socket = "/run/w.sock" }, nil, []string{"socket"}},
		{"bind_addr", "BindAddr", func(r *Runtime) { r.BindAddr = netip.MustParseAddr("10.1.2.3") }, nil, []string{"bind_addr"}},
		{"advertise_addr", "AdvertiseAddr", func(r *Runtime) { r.AdvertiseAddr = netip.MustParseAddr("10.9.9.9") }, nil, []string{"advertise_addr"}},
		{"domain", "Domain", func(r *Runtime) { r.Domain = "mesh.example" }, nil, []string{"domain"}},
		{"ports", "Ports", func(r *Runtime) { r.Ports.Raft = 9000 }, nil, []string{"ports"}},
		{"server", "Server", func(r *Runtime) { r.Server = true }, nil, []string{"server"}},
		{"bootstrap", "Bootstrap", func(r *Runtime) { r.Bootstrap = true }, nil, []string{"bootstrap"}},
		{"tags", "Tags", func(r *Runtime) { r.Tags = append(r.Tags, "prod") }, []string{"tags"}, nil},
		{"join token", "Join", func(r *Runtime) { r.Join.Token = "u" }, []string{"join"}, nil},
		{"join addresses", "Join", func(r *Runtime) { r.Join.Addresses = nil }, []string{"join"}, nil},
		{"log_level", "LogLevel", func(r *Runtime) { r.LogLevel = slog.LevelDebug }, []string{"log_level"}, nil},
		{"log_format", "LogFormat", func(r *Runtime) { r.LogFormat = "json" }, nil, []string{"log_format"}},
		{"a service added", "Services", func(r *Runtime) { r.Services = append(r.Services, Service{Name: "web", Port: 80}) }, []string{"services"}, nil},
		{"a service's tags", "Services", func(r *Runtime) { r.Services[0].Tags = []string{"replica"} }, []string{"services"}, nil},
		{"a service's check", "Services", func(r *Runtime) {
			c := *r.Services[0].Check
			c.Interval = 2 * time.Second
			r.Services[0].Check = &c
		}, []string{"services"}, nil},
		{"a service's check removed", "Services", func(r *Runtime) { r.Services[0].Check = nil }, []string{"services"}, nil},
		{"a service's identity", "Services", func(r *Runtime) { r.Services[0].Identity = &ServiceIdentity{UID: 0} }, []string{"services"}, nil},
		{"a service's upstream", "Services", func(r *Runtime) { r.Services[0].Upstreams[0].Listen = "127.0.0.1:1" }, []string{"services"}, nil},
		{"dns", "DNS", func(r *Runtime) { r.DNS.AllowFrom = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")} }, []string{"dns"}, nil},
		{"dns ttl", "DNS", func(r *Runtime) { r.DNS.TTL = time.Minute }, []string{"dns"}, nil},
		{"metrics", "Metrics", func(r *Runtime) { r.Metrics.Listen = "" }, nil, []string{"metrics"}},
		{"several", "", func(r *Runtime) {
			r.Metrics.Listen = ""
			r.LogLevel = slog.LevelError
			r.NodeName = "x"
			r.DNS.Enabled = false
		}, []string{"log_level", "dns"}, []string{"node_name", "metrics"}},
	}
	covered := map[string]bool{}
	for _, tt := range tests {
		covered[tt.field] = true
		t.Run(tt.name, func(t *testing.T) {
			prev, next := base(), base()
			tt.modify(&next)
			changed, needRestart := prev.Reloadable(next)
			if diff := cmp.Diff(tt.changed, changed); diff != "" {
				t.Errorf("changed (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.needRestart, needRestart); diff != "" {
				t.Errorf("needRestart (-want +got):\n%s", diff)
			}
			// The other way round, the same keys differ.
			back, backRestart := next.Reloadable(prev)
			if !slices.Equal(back, changed) || !slices.Equal(backRestart, needRestart) {
				t.Errorf("next.Reloadable(prev) = %v, %v; want %v, %v", back, backRestart, changed, needRestart)
			}
		})
	}
	// A Runtime field that no case changes may be missing from reloadKeys.
	for f := range reflect.TypeFor[Runtime]().Fields() {
		if !covered[f.Name] {
			t.Errorf("no case changes Runtime.%s: add one, and the key to reloadKeys", f.Name)
		}
	}
}

// TestReloadKeysCoverFileModel keeps reloadKeys in step with the top-level
// keys of the file model.
func TestReloadKeysCoverFileModel(t *testing.T) {
	var want []string
	for f := range reflect.TypeFor[fileConfig]().Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("hcl"), ",")
		if name == keyService {
			name = "services"
		}
		want = append(want, name)
	}
	var got []string
	for _, k := range reloadKeys {
		got = append(got, k.key)
	}
	slices.Sort(want)
	slices.Sort(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("reloadKeys (-file model +reloadKeys):\n%s", diff)
	}
}

// TestReadmeReloading holds README.md's "Reloading" section to reloadKeys.
func TestReadmeReloading(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	keys := func(label string) []string {
		t.Helper()
		i := bytes.Index(readme, []byte("- **"+label+":**"))
		if i < 0 {
			t.Fatalf("README.md has no line starting %q", "- **"+label+":**")
		}
		line, _, _ := bytes.Cut(readme[i:], []byte("\n"))
		var out []string
		for _, m := range regexp.MustCompile("`([a-z_]+)`").FindAllSubmatch(line, -1) {
			out = append(out, string(m[1]))
		}
		return out
	}
	var runtime, restart []string
	for _, k := range reloadKeys {
		if k.runtime {
			runtime = append(runtime, k.key)
		} else {
			restart = append(restart, k.key)
		}
	}
	byName := func(s []string) []string { return slices.Sorted(slices.Values(s)) }
	if diff := cmp.Diff(byName(runtime), byName(keys("Applied at run time"))); diff != "" {
		t.Errorf("README.md, applied at run time (-reloadKeys +README):\n%s", diff)
	}
	if diff := cmp.Diff(byName(restart), byName(keys("Need a restart"))); diff != "" {
		t.Errorf("README.md, need a restart (-reloadKeys +README):\n%s", diff)
	}
}

// TestReadmeExample loads the files of README.md's example, so that the
// example stays a valid config.
func TestReadmeExample(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, example, ok := bytes.Cut(readme, []byte("\n## Example\n"))
	if !ok {
		t.Fatal("README.md has no Example section")
	}
	example, _, _ = bytes.Cut(example, []byte("\n## "))
	files := regexp.MustCompile("(?s)`/etc/weft/([0-9a-z-]+\\.hcl)`.*?```hcl\n(.*?)```").FindAllSubmatch(example, -1)
	if len(files) < 3 {
		t.Fatalf("found %d example files in README.md, want at least 3", len(files))
	}
	dir := t.TempDir()
	for _, f := range files {
		write(t, dir, string(f[1]), string(f[2]))
	}
	r, err := load(nil, []string{dir}, fakeHost())
	if err != nil {
		t.Fatalf("the example does not load:\n%v", err)
	}
	if r.Ports.RPC != 8947 || len(r.Services) != 1 || r.Services[0].Check.HTTP == "" || r.Services[0].Check.TCP != "" {
		t.Errorf("the example's later file did not change the rpc port and the check as the README says: %v", r)
	}
}
