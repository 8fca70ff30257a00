package config

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// FuzzLoad feeds arbitrary bytes to Load as a config file. Load must never
// panic; its error is always Diagnostics, one line per problem, each naming
// the file it is about; and a configuration that loads prints and logs
// without its join token. The committed corpus is in
// testdata/fuzz/FuzzLoad, so the seeds run with every `go test`.
func FuzzLoad(f *testing.F) {
	for _, s := range []string{
		"",
		"# nothing set\n",
		`node_name = "db-1"
server    = true
bootstrap = true
tags      = ["web", "prod"]
ports {
  gossip = 8001
  rpc    = 8002
  raft   = 8003
}
log_level  = "debug"
log_format = "json"
`,
		`node_name = "web-1"
bind_addr = "192.168.50.21"
join {
  token     = "weft1.0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef.0123456789abcdef.fuzz-secret-fuzz-secret-fuzz-secret"
  addresses = ["192.168.50.11", "[fd00::1]:7947", "seed.example.com"]
}
`,
		`service "postgres" {
  port = 5432
  tags = ["primary"]
  check {
    tcp      = "127.0.0.1:5432"
    interval = "2s"
    timeout  = "1s"
  }
  identity { uid = 70 }
  upstream "cache" { listen = "127.0.0.1:6380" }
}
service "web" {
  port = 8080
  check { http = "http://127.0.0.1:8080/health" }
}
`,
		`dns {
  enabled    = true
  listen     = ["127.0.0.1:8600", "[::1]:8600"]
  domain     = "mesh.example"
  upstreams  = ["1.1.1.1", "[2606:4700::1111]:53"]
  allow_from = ["10.0.0.0/8"]
  ttl        = "10s"
  resolved   = true
}
metrics { listen = "127.0.0.1:9436" }
`,
		// Broken in the ways people break files.
		`node_name = "DB_1"` + "\n" + `bogus = 1`,
		`ports { gossip = 70000 rpc = "x" raft = -1 }`,
		`ports { gossip = 7946 rpc = 7946 raft = 7946 }`,
		`service "a" {}` + "\n" + `service "a" { port = 1 }`,
		`service "" { port = 0 check { tcp = "x" http = "y" interval = "-1s" } }`,
		`join { token = "" addresses = [] }`,
		`join { token = "t" addresses = ["host:99999", ":1", "[::1"] }`,
		`tags = ["ok", "Not OK", "ok"]`,
		`bootstrap = true`,
		`data_dir = ""` + "\n" + `socket = "\u0000"`,
		`node_name = "a" node_name = "b"`,
		`node_name = ${1 + "x"}`,
		`node_name = "${upper("x")}"`,
		`dns { listen = ["0.0.0.0:53", "127.0.0.1:53"] upstreams = ["nope"] ttl = "1y" domain = "a..b" }`,
		`metrics { listen = "127.0.0.1:7947" }` + "\n" + `ports { rpc = 7947 }`,
		"service \"\xff\" { port = 1 }",
		"node_name = \"unterminated\n",
		"ports {",
		"}}}}",
		"\xef\xbb\xbfnode_name = \"bom\"",
		strings.Repeat("[", 64),
		`node_name = [[[[[[[[[[[[[[[[[[[[[[[["x"]]]]]]]]]]]]]]]]]]]]]]]`,
	} {
		f.Add([]byte(s))
	}
	// One file, rewritten for every input: the fuzz function runs one
	// input at a time in each worker process.
	path := filepath.Join(f.TempDir(), "weft.hcl")
	f.Fuzz(func(t *testing.T, data []byte) {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		r, err := Load([]string{path}, nil)
		if err != nil {
			var ds Diagnostics
			if !errors.As(err, &ds) {
				t.Fatalf("Load error %T (%v) is not Diagnostics", err, err)
			}
			if len(ds) == 0 {
				t.Fatal("Load returned empty Diagnostics as an error")
			}
			for _, d := range ds {
				s := d.String()
				if d.Summary == "" || strings.ContainsAny(s, "\r\n") {
					t.Fatalf("diagnostic %q: empty summary or more than one line", s)
				}
				if d.Filename != "" && d.Filename != path {
					t.Fatalf("diagnostic %q names %q, not the file loaded", s, d.Filename)
				}
				if d.Line < 0 || d.Column < 0 || (d.Line == 0) != (d.Column == 0) {
					t.Fatalf("diagnostic %q: position %d:%d", s, d.Line, d.Column)
				}
			}
			if len(strings.Split(err.Error(), "\n")) != len(ds) {
				t.Fatalf("Error() has %d lines for %d diagnostics", len(strings.Split(err.Error(), "\n")), len(ds))
			}
			return
		}
		// What loads is valid on its own.
		if err := r.Validate(); err != nil {
			t.Fatalf("Load accepted a Runtime that Validate refuses: %v", err)
		}
		// A join token never prints or logs, however the Runtime is shown:
		// every form is the same whatever the token is.
		if r.Join.Token != "" {
			other := r
			other.Join.Token = "another-token-entirely"
			if got, want := shown(r), shown(other); got != want {
				t.Fatalf("how a Runtime prints depends on its join token:\n%s\nvs\n%s", got, want)
			}
		}
	})
}

// shown is every way a Runtime is printed or logged.
func shown(r Runtime) string {
	var b bytes.Buffer
	slog.New(slog.NewTextHandler(&b, nil)).Info("config", "runtime", r, "join", r.Join)
	slog.New(slog.NewJSONHandler(&b, nil)).Info("config", "runtime", r, "join", r.Join)
	fmt.Fprintf(&b, "%s\n%v\n%+v\n%#v\n%v\n%#v\n", r.String(), r, r, r, r.Join, r.Join)
	return timeRe.ReplaceAllString(b.String(), "")
}

var timeRe = regexp.MustCompile(`(time=|"time":")[^ ,]+`)
