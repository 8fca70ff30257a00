package config

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLoadDNS(t *testing.T) {
	tests := []struct {
		name   string
		files  []string
		modify func(*Runtime)
	}{
		{name: "defaults", modify: func(*Runtime) {}},
		{
			name:   "dns.domain follows domain",
			files:  []string{`domain = "mesh.example"`},
			modify: func(r *Runtime) { r.Domain, r.DNS.Domain = "mesh.example", "mesh.example" },
		},
		{
			name:   "dns.domain set",
			files:  []string{`domain = "mesh.example"`, "dns {\n  domain = \"svc.example\"\n}"},
			modify: func(r *Runtime) { r.Domain, r.DNS.Domain = "mesh.example", "svc.example" },
		},
		{
			name: "everything set",
			files: []string{`
dns {
  enabled    = true
  listen     = ["127.0.0.1:5353", "[::1]:5353"]
  upstreams  = ["1.1.1.1", "[2606:4700::1111]", "2606:4700::1001", "9.9.9.9:5353"]
  allow_from = ["10.0.0.0/8", "192.168.1.7/24", "fd00::/8", "10.9.9.9/32"]
  ttl        = "0s"
  resolved   = true
}
metrics {
  listen = "localhost:9436"
}`},
			modify: func(r *Runtime) {
				r.DNS = DNS{
					Enabled: true,
					Listen:  []netip.AddrPort{netip.MustParseAddrPort("127.0.0.1:5353"), netip.MustParseAddrPort("[::1]:5353")},
					Domain:  "weft.internal",
					Upstreams: []netip.AddrPort{
						netip.MustParseAddrPort("1.1.1.1:53"),
						netip.MustParseAddrPort("[2606:4700::1111]:53"),
						netip.MustParseAddrPort("[2606:4700::1001]:53"),
						netip.MustParseAddrPort("9.9.9.9:5353"),
					},
					AllowFrom: []netip.Prefix{
						netip.MustParsePrefix("10.0.0.0/8"),
						netip.MustParsePrefix("192.168.1.0/24"),
						netip.MustParsePrefix("fd00::/8"),
						netip.MustParsePrefix("10.9.9.9/32"),
					},
					TTL:      0,
					Resolved: true,
				}
				r.Metrics.Listen = "localhost:9436"
			},
		},
		{
			name:  "a later file changes one key",
			files: []string{"dns {\n  ttl = \"30s\"\n  upstreams = [\"1.1.1.1\"]\n}", "dns {\n  ttl = \"1m\"\n}"},
			modify: func(r *Runtime) {
				r.DNS.TTL = time.Minute
				r.DNS.Upstreams = []netip.AddrPort{netip.MustParseAddrPort("1.1.1.1:53")}
			},
		},
		{
			name:   "disabled without a listen address",
			files:  []string{"dns {\n  enabled = false\n  listen = []\n}"},
			modify: func(r *Runtime) { r.DNS.Enabled, r.DNS.Listen = false, nil },
		},
		{
			name:   "metrics turned off again",
			files:  []string{"metrics {\n  listen = \"127.0.0.1:9436\"\n}", "metrics {\n  listen = \"\"\n}"},
			modify: func(*Runtime) {},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			var files []string
			for i, content := range tt.files {
				files = append(files, write(t, dir, string(rune('a'+i))+".hcl", content))
			}
			got, err := load(files, nil, fakeHost())
			if err != nil {
				t.Fatal(err)
			}
			want := defaults()
			tt.modify(&want)
			if diff := cmp.Diff(want, got, cmpRuntime); diff != "" {
				t.Errorf("Load (-want +got):\n%s", diff)
			}
		})
	}
}

func TestLoadDNSErrors(t *testing.T) {
	runLoadErrors(t, []loadErrorTest{
		{
			name:  "listen",
			files: []file{{"a.hcl", "dns {\n  listen = [\"127.0.0.1\", \"localhost:53\", \"[::1]:8600\"]\n}"}},
			want:  []string{"a.hcl:2:13: Invalid dns.listen", "a.hcl:2:26: Invalid dns.listen"},
			detail: []string{
				`"127.0.0.1" is not "ip:port": the host must be an IP address, such as 127.0.0.1:8600 or [::1]:8600`,
				`"localhost:53" is not "ip:port"`,
			},
		},
		{
			name:   "listen port 0",
			files:  []file{{"a.hcl", "dns {\n  listen = [\"127.0.0.1:53\", \"127.0.0.1:0\"]\n}"}},
			want:   []string{"a.hcl:2:29: Invalid dns.listen"},
			detail: []string{"127.0.0.1:0: port 0 is not in 1..65535"},
		},
		{
			name:   "no listen address",
			files:  []file{{"a.hcl", "dns {\n  listen = []\n}"}},
			want:   []string{"a.hcl:2:3: Missing dns.listen"},
			detail: []string{"set enabled = false"},
		},
		{
			name:   "listen twice",
			files:  []file{{"a.hcl", "dns {\n  listen = [\"0.0.0.0:8600\", \"127.0.0.1:8600\", \"[::1]:8600\"]\n}"}},
			want:   []string{"a.hcl:2:29: Duplicate listen address"},
			detail: []string{"dns.listen (0.0.0.0:8600) and dns.listen (127.0.0.1:8600) cannot both listen there"},
		},
		{
			name:   "domain",
			files:  []file{{"a.hcl", "dns {\n  domain = \"Mesh.local\"\n}"}},
			want:   []string{"a.hcl:2:3: Invalid dns.domain"},
			detail: []string{`"Mesh.local" is not a DNS name: label "Mesh"`},
		},
		{
			// dns.domain takes the bad domain, which is reported once, where
			// it was written.
			name:  "bad top-level domain",
			files: []file{{"a.hcl", `domain = "mesh.local."`}},
			want:  []string{"a.hcl:1:1: Invalid domain"},
		},
		{
			name:   "upstream not an IP address",
			files:  []file{{"a.hcl", "dns {\n  upstreams = [\"1.1.1.1\", \"dns.google:53\"]\n}"}},
			want:   []string{"a.hcl:2:27: Invalid dns.upstreams"},
			detail: []string{`"dns.google:53" is not "ip:port" or "ip" (the port is then 53)`},
		},
		{
			name:  "upstream port 0 and loop",
			files: []file{{"a.hcl", "dns {\n  upstreams = [\"1.1.1.1:0\", \"127.0.0.1:8600\"]\n}"}},
			want:  []string{"a.hcl:2:16: Invalid dns.upstreams", "a.hcl:2:29: Invalid dns.upstreams"},
			detail: []string{
				"1.1.1.1:0: port 0 is not in 1..65535",
				"127.0.0.1:8600 is where this agent's DNS server listens (dns.listen 127.0.0.1:8600): queries would loop",
			},
		},
		{
			name:   "upstream loops through a wildcard listen address",
			files:  []file{{"a.hcl", "dns {\n  listen = [\"0.0.0.0:5300\"]\n  upstreams = [\"10.0.0.53:5300\", \"127.0.0.1:5300\"]\n}"}},
			want:   []string{"a.hcl:3:34: Invalid dns.upstreams"},
			detail: []string{"(dns.listen 0.0.0.0:5300): queries would loop"},
		},
		{
			name:  "allow_from",
			files: []file{{"a.hcl", "dns {\n  allow_from = [\"10.0.0.0/8\", \"10.0.0.1\", \"10.0.0.0/33\", \"fd00::1\"]\n}"}},
			want: []string{
				"a.hcl:2:31: Invalid dns.allow_from",
				"a.hcl:2:43: Invalid dns.allow_from",
				"a.hcl:2:58: Invalid dns.allow_from",
			},
			detail: []string{
				`"10.0.0.1" is not a network in CIDR notation, such as 10.0.0.0/8; for this one address write 10.0.0.1/32`,
				"write fd00::1/128",
			},
		},
		{
			name: "ttl",
			files: []file{
				{"a.hcl", "dns {\n  ttl = \"2h\"\n}"},
				{"b.hcl", "dns {\n  ttl = \"1500ms\"\n}"},
			},
			want:   []string{"b.hcl:2:3: Invalid dns.ttl"},
			detail: []string{"1.5s is not a whole number of seconds"},
		},
		{
			name:   "ttl too long",
			files:  []file{{"a.hcl", "dns {\n  ttl = \"61m\"\n}"}},
			want:   []string{"a.hcl:2:3: Invalid dns.ttl"},
			detail: []string{"1h1m0s is not in 0s..1h"},
		},
		{
			name:   "ttl negative",
			files:  []file{{"a.hcl", "dns {\n  ttl = \"-1s\"\n}"}},
			want:   []string{"a.hcl:2:3: Invalid dns.ttl"},
			detail: []string{"-1s is not in 0s..1h"},
		},
		{
			name:   "ttl not a duration",
			files:  []file{{"a.hcl", "dns {\n  ttl = 5\n}"}},
			want:   []string{"a.hcl:2:3: Invalid dns.ttl"},
			detail: []string{`"5" is not a duration such as "10s" or "500ms"`},
		},
		{
			name: "resolved while disabled",
			files: []file{
				{"a.hcl", "dns {\n  resolved = true\n}"},
				{"b.hcl", "dns {\n  enabled = false\n}"},
			},
			want:   []string{"a.hcl:2:3: Invalid dns.resolved"},
			detail: []string{"enabled = false turns it off"},
		},
		{
			name:   "unknown key",
			files:  []file{{"a.hcl", "dns {\n  allowfrom = []\n}"}},
			want:   []string{"a.hcl:2:3: Unsupported argument"},
			detail: []string{`Did you mean "allow_from"?`},
		},
		{
			name:  "two dns blocks",
			files: []file{{"a.hcl", "dns {\n}\ndns {\n}"}},
			want:  []string{"a.hcl:3:1: Duplicate dns block"},
		},
		{
			name: "metrics.listen",
			files: []file{
				{"a.hcl", "metrics {\n  listen = \"9436\"\n}"},
				{"b.hcl", "metrics {\n  listen = \":9436\"\n}"},
			},
			want:   []string{"b.hcl:2:3: Invalid metrics.listen"},
			detail: []string{`":9436": the host is empty: write 0.0.0.0 or [::] to listen on every address`},
		},
		{
			name:   "metrics.listen without a port",
			files:  []file{{"a.hcl", "metrics {\n  listen = \"127.0.0.1\"\n}"}},
			want:   []string{"a.hcl:2:3: Invalid metrics.listen"},
			detail: []string{`"127.0.0.1": want "host:port"`},
		},
		{
			name:   "metrics on the DNS port",
			files:  []file{{"a.hcl", "metrics {\n  listen = \"127.0.0.1:8600\"\n}"}},
			want:   []string{"a.hcl:2:3: Duplicate listen address"},
			detail: []string{"dns.listen (127.0.0.1:8600) and metrics.listen (127.0.0.1:8600)"},
		},
	})
}
