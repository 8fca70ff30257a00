package config

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLoadServicesMerge(t *testing.T) {
	dir := t.TempDir()
	a := write(t, dir, "a.hcl", `
service "postgres" {
  port = 5432
  tags = ["primary", "eu", "eu"]
  check {
    tcp      = "127.0.0.1:5432"
    interval = "3s"
  }
  upstream "db" {
    listen = "127.0.0.1:15432"
  }
}
service "web" {
  port = 80
}
`)
	// Changes one key of postgres and adds api.
	b := write(t, dir, "b.hcl", `
service "postgres" {
  port = 5433
}
service "api" {
  port = 8080
  identity {
    uid = 1000
  }
}
`)
	// Switches postgres's check to HTTP (tcp goes, interval stays) and adds
	// an upstream next to the one a.hcl defined.
	c := write(t, dir, "c.hcl", `
service "postgres" {
  check {
    http    = "https://127.0.0.1:8008/health"
    timeout = "1s"
  }
  upstream "cache" {
    listen = "127.0.0.1:16379"
  }
}
`)
	got, err := load([]string{a, b, c}, nil, fakeHost())
	if err != nil {
		t.Fatal(err)
	}
	want := []Service{
		{Name: "api", Port: 8080, Identity: &ServiceIdentity{UID: 1000}},
		{
			Name:  "postgres",
			Port:  5433,
			Tags:  []string{"eu", "primary"},
			Check: &Check{HTTP: "https://127.0.0.1:8008/health", Interval: 3 * time.Second, Timeout: time.Second},
			Upstreams: []Upstream{
				{Service: "cache", Listen: "127.0.0.1:16379"},
				{Service: "db", Listen: "127.0.0.1:15432"},
			},
		},
		{Name: "web", Port: 80},
	}
	if diff := cmp.Diff(want, got.Services, cmpRuntime); diff != "" {
		t.Errorf("Services (-want +got):\n%s", diff)
	}
}

func TestLoadServiceDefaults(t *testing.T) {
	tests := []struct {
		name string
		file string
		want []Service
	}{
		{name: "no service blocks"},
		{
			name: "only a port",
			file: `service "db" { port = 5432 }`,
			want: []Service{{Name: "db", Port: 5432}},
		},
		{
			name: "check defaults",
			file: "service \"db\" {\n  port = 5432\n  check {\n    tcp = \"db.local:5432\"\n  }\n}",
			want: []Service{{Name: "db", Port: 5432, Check: &Check{TCP: "db.local:5432", Interval: 10 * time.Second, Timeout: 2 * time.Second}}},
		},
		{
			name: "uid 0 when written",
			file: "service \"db\" {\n  port = 1\n  identity {\n    uid = 0\n  }\n}",
			want: []Service{{Name: "db", Port: 1, Identity: &ServiceIdentity{UID: 0}}},
		},
		{
			name: "empty tags",
			file: "service \"db\" {\n  port = 1\n  tags = []\n}",
			want: []Service{{Name: "db", Port: 1}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var files []string
			if tt.file != "" {
				files = append(files, write(t, t.TempDir(), "a.hcl", tt.file))
			}
			got, err := load(files, nil, fakeHost())
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got.Services, cmpRuntime); diff != "" {
				t.Errorf("Services (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadServiceErrors(t *testing.T) {
	runLoadErrors(t, []loadErrorTest{
		{
			name:   "name",
			files:  []file{{"a.hcl", "service \"Postgres\" {\n  port = 1\n}"}},
			want:   []string{"a.hcl:1:1: Invalid service name"},
			detail: []string{`"Postgres" is not a DNS label`},
		},
		{
			name:  "name too long",
			files: []file{{"a.hcl", "service \"" + strings.Repeat("a", 64) + "\" {\n  port = 1\n}"}},
			want:  []string{"a.hcl:1:1: Invalid service name"},
		},
		{
			name:  "label missing",
			files: []file{{"a.hcl", "service {\n  port = 0\n}"}},
			want:  []string{"a.hcl:1:9: Missing name for service"},
		},
		{
			name:   "port missing",
			files:  []file{{"a.hcl", "service \"db\" {\n  tags = [\"x\"]\n}"}},
			want:   []string{"a.hcl:1:1: Missing service.port"},
			detail: []string{`service "db": a service needs the port it listens on`},
		},
		{
			name:   "port out of range",
			files:  []file{{"a.hcl", "service \"db\" {\n  port = 0\n}\nservice \"web\" {\n  port = 65536\n}"}},
			want:   []string{"a.hcl:2:3: Invalid service.port", "a.hcl:5:3: Invalid service.port"},
			detail: []string{`service "web": 65536 is not a port: it must be in 1..65535`},
		},
		{
			name:  "port of the wrong type",
			files: []file{{"a.hcl", "service \"db\" {\n  port = \"x\"\n}"}},
			want:  []string{"a.hcl:2:11: Unsuitable value type"},
		},
		{
			name:   "tags",
			files:  []file{{"a.hcl", "service \"db\" {\n  port = 1\n  tags = [\"ok\", \"a.b\", \"Up\"]\n}"}},
			want:   []string{"a.hcl:3:17: Invalid service tag", "a.hcl:3:24: Invalid service tag"},
			detail: []string{`service "db": "a.b" must start with a-z or 0-9, and hold only a-z, 0-9, '_' and '-'`},
		},
		{
			name:   "two services with one name in one file",
			files:  []file{{"a.hcl", "service \"db\" {\n  port = 1\n}\nservice \"db\" {\n  port = 0\n}"}},
			want:   []string{"a.hcl:4:1: Duplicate service block"},
			detail: []string{`service "db" is also defined at a.hcl:1:1`},
		},
		{
			name:   "two upstreams with one name in one service",
			files:  []file{{"a.hcl", "service \"db\" {\n  port = 1\n  upstream \"x\" {\n    listen = \"127.0.0.1:1\"\n  }\n  upstream \"x\" {\n  }\n}"}},
			want:   []string{"a.hcl:6:3: Duplicate upstream block"},
			detail: []string{`upstream "x" of service "db" is also defined at a.hcl:3:3`},
		},
		{
			name:  "two check blocks",
			files: []file{{"a.hcl", "service \"db\" {\n  port = 1\n  check {\n    tcp = \"x:1\"\n  }\n  check {\n    tcp = \"y:1\"\n  }\n}"}},
			want:  []string{"a.hcl:6:3: Duplicate check block"},
		},
		{
			// As with any misspelt key, the key it was meant to be is missing.
			name:   "unknown key in a check",
			files:  []file{{"a.hcl", "service \"db\" {\n  port = 1\n  check {\n    tpc = \"x:1\"\n  }\n}"}},
			want:   []string{"a.hcl:3:3: Invalid service.check", "a.hcl:4:5: Unsupported argument"},
			detail: []string{`Did you mean "tcp"?`},
		},
		{
			name:   "check without a target",
			files:  []file{{"a.hcl", "service \"db\" {\n  port = 1\n  check {\n    interval = \"5s\"\n  }\n}"}},
			want:   []string{"a.hcl:3:3: Invalid service.check"},
			detail: []string{`service "db": a check needs one of tcp and http`},
		},
		{
			name:   "check with two targets",
			files:  []file{{"a.hcl", "service \"db\" {\n  port = 1\n  check {\n    tcp  = \"x:1\"\n    http = \"http://x/\"\n  }\n}"}},
			want:   []string{"a.hcl:3:3: Invalid service.check"},
			detail: []string{"either tcp or http, not both"},
		},
		{
			name: "check with two targets after a merge",
			files: []file{
				{"a.hcl", "service \"db\" {\n  port = 1\n  check {\n    tcp = \"x:1\"\n  }\n}"},
				{"b.hcl", "service \"db\" {\n  check {\n    tcp  = \"x:2\"\n    http = \"http://x/\"\n  }\n}"},
			},
			want: []string{"b.hcl:2:3: Invalid service.check"},
		},
		{
			name:   "check tcp",
			files:  []file{{"a.hcl", "service \"db\" {\n  port = 1\n  check {\n    tcp = \"127.0.0.1\"\n  }\n}\nservice \"web\" {\n  port = 2\n  check {\n    tcp = \"127.0.0.1:0\"\n  }\n}"}},
			want:   []string{"a.hcl:4:5: Invalid service.check.tcp", "a.hcl:10:5: Invalid service.check.tcp"},
			detail: []string{`service "db": "127.0.0.1": want "host:port"`, `service "web": "127.0.0.1:0": port "0" is not in 1..65535`},
		},
		{
			name: "check http",
			files: []file{{"a.hcl", "service \"a\" {\n  port = 1\n  check {\n    http = \"ftp://x/\"\n  }\n}\n" +
				"service \"b\" {\n  port = 1\n  check {\n    http = \"http:///health\"\n  }\n}\n" +
				"service \"c\" {\n  port = 1\n  check {\n    http = \"127.0.0.1:8080/health\"\n  }\n}\n" +
				"service \"d\" {\n  port = 1\n  check {\n    http = \"http://x:99999/\"\n  }\n}\n"}},
			want: []string{
				"a.hcl:4:5: Invalid service.check.http",
				"a.hcl:10:5: Invalid service.check.http",
				"a.hcl:16:5: Invalid service.check.http",
				"a.hcl:22:5: Invalid service.check.http",
			},
			detail: []string{"the scheme must be http or https", "the URL has no host", `port "99999" is not in 1..65535`},
		},
		{
			name:   "check interval too short",
			files:  []file{{"a.hcl", "service \"db\" {\n  port = 1\n  check {\n    tcp      = \"x:1\"\n    interval = \"50ms\"\n    timeout  = \"10ms\"\n  }\n}"}},
			want:   []string{"a.hcl:5:5: Invalid service.check.interval"},
			detail: []string{`service "db": 50ms is less than 100ms`},
		},
		{
			name:   "check interval not a duration",
			files:  []file{{"a.hcl", "service \"db\" {\n  port = 1\n  check {\n    tcp      = \"x:1\"\n    interval = \"2\"\n    timeout  = \"soon\"\n  }\n}"}},
			want:   []string{"a.hcl:5:5: Invalid service.check.interval", "a.hcl:6:5: Invalid service.check.timeout"},
			detail: []string{`"2" is not a duration such as "10s" or "500ms"`},
		},
		{
			name:   "check timeout zero",
			files:  []file{{"a.hcl", "service \"db\" {\n  port = 1\n  check {\n    tcp     = \"x:1\"\n    timeout = \"0s\"\n  }\n}"}},
			want:   []string{"a.hcl:5:5: Invalid service.check.timeout"},
			detail: []string{"0s must be more than 0s"},
		},
		{
			name:   "check timeout not less than the default interval",
			files:  []file{{"a.hcl", "service \"db\" {\n  port = 1\n  check {\n    tcp     = \"x:1\"\n    timeout = \"10s\"\n  }\n}"}},
			want:   []string{"a.hcl:5:5: Invalid service.check.timeout"},
			detail: []string{"timeout 10s must be less than interval 10s (the default)"},
		},
		{
			name:   "check interval not more than the default timeout",
			files:  []file{{"a.hcl", "service \"db\" {\n  port = 1\n  check {\n    tcp      = \"x:1\"\n    interval = \"1s\"\n  }\n}"}},
			want:   []string{"a.hcl:5:5: Invalid service.check.interval"},
			detail: []string{"timeout 2s (the default) must be less than interval 1s"},
		},
		{
			name: "identity",
			files: []file{{"a.hcl", "service \"a\" {\n  port = 1\n  identity {\n    uid = -1\n  }\n}\n" +
				"service \"b\" {\n  port = 1\n  identity {\n  }\n}\n" +
				"service \"c\" {\n  port = 1\n  identity {\n    uid = 4294967295\n  }\n}\n"}},
			want: []string{
				"a.hcl:4:5: Invalid service.identity.uid",
				"a.hcl:9:3: Missing service.identity.uid",
				"a.hcl:15:5: Invalid service.identity.uid",
			},
			detail: []string{`service "a": -1 is not a uid: it must be in 0..4294967294`},
		},
		{
			name: "upstreams",
			files: []file{{"a.hcl", "service \"web\" {\n  port = 1\n" +
				"  upstream \"Bad_Name\" {\n    listen = \"127.0.0.1:1\"\n  }\n" +
				"  upstream \"b\" {\n  }\n" +
				"  upstream \"c\" {\n    listen = \":15432\"\n  }\n" +
				"  upstream \"d\" {\n    listen = \"127.0.0.1\"\n  }\n}"}},
			want: []string{
				"a.hcl:3:3: Invalid upstream name",
				"a.hcl:6:3: Missing service.upstream.listen",
				"a.hcl:9:5: Invalid service.upstream.listen",
				"a.hcl:12:5: Invalid service.upstream.listen",
			},
			detail: []string{
				`upstream "Bad_Name" must name a service`,
				`service "web": upstream "c": ":15432": the host is empty: write 0.0.0.0 or [::] to listen on every address`,
				`upstream "d": "127.0.0.1": want "host:port"`,
			},
		},
		{
			name: "listen addresses collide",
			files: []file{{"a.hcl", "metrics {\n  listen = \"0.0.0.0:15432\"\n}\n" +
				"service \"web\" {\n  port = 1\n" +
				"  upstream \"db\" {\n    listen = \"127.0.0.1:15432\"\n  }\n" +
				"  upstream \"dns\" {\n    listen = \"127.0.0.1:8600\"\n  }\n}"}},
			want: []string{"a.hcl:7:5: Duplicate listen address", "a.hcl:10:5: Duplicate listen address"},
			detail: []string{
				`metrics.listen (0.0.0.0:15432) and service "web" upstream "db" (127.0.0.1:15432) cannot both listen there`,
				`dns.listen (127.0.0.1:8600) and service "web" upstream "dns" (127.0.0.1:8600)`,
			},
		},
		{
			name: "the file that set the winning value is blamed",
			files: []file{
				{"a.hcl", "service \"db\" {\n  port = 0\n}"},
				{"b.hcl", "\nservice \"db\" {\n  tags = [\"x\", \"Y\"]\n}"},
			},
			want: []string{"a.hcl:2:3: Invalid service.port", "b.hcl:3:16: Invalid service tag"},
		},
		{
			name: "a service with one name in two files is not a duplicate",
			files: []file{
				{"a.hcl", "service \"db\" {\n  port = 1\n}"},
				{"b.hcl", "service \"db\" {\n  port = 2\n}\nservice \"db\" {\n  port = 3\n}"},
			},
			want: []string{"b.hcl:4:1: Duplicate service block"},
		},
	})
}

func TestLabelKeys(t *testing.T) {
	// A label that looks like an index or a nested key must stay one label.
	for _, name := range []string{"2", "a.b", "a]b", `a"b`, "a[0]", "%2E"} {
		key := serviceKey(name) + subCheckTCP
		want := []string{serviceKey(name) + subCheck, serviceKey(name), "service"}
		var got []string
		for k, more := parentKey(key); more; k, more = parentKey(k) {
			got = append(got, k)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("parents of %s (-want +got):\n%s", key, diff)
		}
		if _, _, ok := splitIndex(serviceKey(name)); ok {
			t.Errorf("splitIndex(%s) took the label for an index", serviceKey(name))
		}
	}
	if base, idx, ok := splitIndex(serviceKey("db") + ".tags[3]"); !ok || idx != 3 || base != serviceKey("db")+".tags" {
		t.Errorf("splitIndex(service[\"db\"].tags[3]) = %q, %d, %v", base, idx, ok)
	}
}

func TestRuntimeStringShowsServices(t *testing.T) {
	r := defaults()
	r.Services = []Service{{Name: "db", Port: 1, Check: &Check{TCP: "x:1"}, Identity: &ServiceIdentity{UID: 3}}}
	s := r.String()
	for _, want := range []string{"Check:{TCP:x:1 ", "Identity:{UID:3}"} {
		if !strings.Contains(s, want) {
			t.Errorf("Runtime.String() does not contain %q:\n%s", want, s)
		}
	}
}
