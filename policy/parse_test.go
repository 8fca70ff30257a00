package policy

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseValid(t *testing.T) {
	src := `
segment "web" {
  cidr    = "10.90.1.0/24"
  port    = 51821
  members = ["tag:web", "node:bastion"]
}

segment "db" {
  cidr    = "fd00:90:2::/64"
  port    = 51822
  members = ["tag:postgres", "service:postgres"]
  intra   = "deny"
}

rule "web-to-postgres" {
  action = "allow"
  from   = ["segment:web"]
  to     = ["service:postgres", "segment:db"]
  ports  = ["tcp/5432", "tcp/8000-8100", "udp/53,5353", "tcp", "icmp"]
}

rule "no-ssh-into-db" {
  action = "deny"
  from   = ["tag:web", "node:web-1"]
  to     = ["segment:db"]
  ports  = ["any"]
}
`
	want := &Document{
		Segments: []Segment{
			{
				Name: "db", CIDR: netip.MustParsePrefix("fd00:90:2::/64"), Port: 51822,
				Members: []Selector{{"tag", "postgres"}, {"service", "postgres"}},
				Intra:   Deny,
			},
			{
				Name: "web", CIDR: netip.MustParsePrefix("10.90.1.0/24"), Port: 51821,
				Members: []Selector{{"tag", "web"}, {"node", "bastion"}},
				Intra:   Allow,
			},
		},
		Rules: []Rule{
			{
				Name: "web-to-postgres", Action: Allow,
				From: []Selector{{"segment", "web"}},
				To:   []Selector{{"service", "postgres"}, {"segment", "db"}},
				Ports: []PortSpec{
					{Proto: "tcp", Ranges: []PortRange{{5432, 5432}}},
					{Proto: "tcp", Ranges: []PortRange{{8000, 8100}}},
					{Proto: "udp", Ranges: []PortRange{{53, 53}, {5353, 5353}}},
					{Proto: "tcp"},
					{Proto: "icmp"},
				},
			},
			{
				Name: "no-ssh-into-db", Action: Deny,
				From:  []Selector{{"tag", "web"}, {"node", "web-1"}},
				To:    []Selector{{"segment", "db"}},
				Ports: []PortSpec{{Proto: "any"}},
			},
		},
	}
	got, err := Parse("policy.hcl", []byte(src))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if diff := cmp.Diff(want, got, netipOpts); diff != "" {
		t.Errorf("Parse (-want +got):\n%s", diff)
	}
}

func TestParseEmpty(t *testing.T) {
	got, err := Parse("empty.hcl", nil)
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	if diff := cmp.Diff(&Document{}, got); diff != "" {
		t.Errorf("Parse (-want +got):\n%s", diff)
	}
}

// seg writes a valid segment block on 5 lines, so that positions in the
// cases below are easy to count.
func seg(name, cidr, port string) string {
	return `segment "` + name + `" {
  cidr    = "` + cidr + `"
  port    = ` + port + `
  members = ["tag:` + name + `"]
}
`
}

// rule writes a rule block on 6 lines; the values are written as given.
func rule(name, action, from, to, ports string) string {
	return `rule "` + name + `" {
  action = ` + action + `
  from   = ` + from + `
  to     = ` + to + `
  ports  = ` + ports + `
}
`
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		// want holds one entry per diagnostic, in order: each line of the
		// error starts with the entry's text before " | " and contains
		// the text after it.
		want []string
	}{
		{"syntax", `segment "web" {
  cidr = 
}
`, []string{`p.hcl:2:10: Invalid expression | Expected the start of an expression`}},
		{"syntax unclosed block", `segment "web" {
  cidr = "10.0.0.0/24"
`, []string{`p.hcl:1:15: Unclosed configuration block`}},
		{"unknown key", `segment "web" {
  cidr    = "10.0.0.0/24"
  port    = 51821
  member  = ["tag:web"]
}
`, []string{
			`p.hcl:1:15: Missing required argument | "members" is required`,
			`p.hcl:4:3: Unsupported argument | Did you mean "members"?`,
		}},
		{"unknown block", seg("web", "10.0.0.0/24", "1") + `segmnt "db" {}
rule "r" {
  action = "allow"
  from   = ["tag:a"]
  to     = ["tag:b"]
  prots  = ["any"]
}
`, []string{
			`p.hcl:6:1: Unsupported block type | Did you mean "segment"?`,
			`p.hcl:7:10: Missing required argument | "ports" is required`,
			`p.hcl:11:3: Unsupported argument | Did you mean "ports"?`,
		}},
		{"unknown top-level key", `version = 2
`, []string{`p.hcl:1:1: Unsupported argument | "version" is not expected here`}},
		{"wrong types", `segment "web" {
  cidr    = ["10.0.0.0/24"]
  port    = "fifty"
  members = "tag:web"
  intra   = ["allow"]
}
` + rule("r", `"allow"`, `"tag:web"`, `["tag:db", ["x"]]`, `[1]`), []string{
			`p.hcl:2:13: Unsuitable value type | string required, but have tuple`,
			`p.hcl:3:14: Unsuitable value type | a number is required`,
			`p.hcl:4:14: Unsuitable value type | list of string required, but have string`,
			`p.hcl:5:13: Unsuitable value type | string required, but have tuple`,
			`p.hcl:9:13: Unsuitable value type | list of string required, but have string`,
			`p.hcl:10:23: Unsuitable value type | string required, but have tuple`,
			`p.hcl:11:13: Invalid port spec | "1" is not a port spec`,
		}},
		{"fractional port", seg("web", "10.0.0.0/24", "51821.5"), []string{
			`p.hcl:3:13: Unsuitable value type | whole number`,
		}},
		{"missing keys", `segment "web" {
}
rule "r" {
}
`, []string{
			`p.hcl:1:15: Missing required argument | "cidr" is required`,
			`p.hcl:1:15: Missing required argument | "port" is required`,
			`p.hcl:1:15: Missing required argument | "members" is required`,
			`p.hcl:3:10: Missing required argument | "action" is required`,
			`p.hcl:3:10: Missing required argument | "from" is required`,
			`p.hcl:3:10: Missing required argument | "to" is required`,
			`p.hcl:3:10: Missing required argument | "ports" is required`,
		}},
		{"missing label", `segment {
}
`, []string{`p.hcl:1:9: Missing name for segment`}},
		{"duplicate names", seg("web", "10.0.1.0/24", "1") + seg("web", "10.0.2.0/24", "2") +
			rule("r", `"allow"`, `["tag:a"]`, `["tag:b"]`, `["any"]`) +
			rule("r", `"deny"`, `["tag:a"]`, `["tag:b"]`, `["any"]`), []string{
			`p.hcl:6:9: Duplicate segment | segment "web" is already defined at p.hcl:1:9`,
			`p.hcl:17:6: Duplicate rule | rule "r" is already defined at p.hcl:11:6`,
		}},
		{"segment names", seg("Web", "10.0.1.0/24", "1") + seg("-db", "10.0.2.0/24", "2") +
			seg("twelve-bytes", "10.0.3.0/24", "3") + seg("thirteen-byte", "10.0.4.0/24", "4") + seg("a_b", "10.0.5.0/24", "5"), []string{
			`p.hcl:1:9: Invalid segment name | "Web" must be lowercase letters, digits and dashes`,
			`p.hcl:6:9: Invalid segment name | "-db" must be`,
			`p.hcl:16:9: Invalid segment name | "wf-thirteen-byte" of 16 bytes`,
			`p.hcl:21:9: Invalid segment name | "a_b" must be`,
		}},
		{"rule name", rule("", `"allow"`, `["tag:a"]`, `["tag:b"]`, `["any"]`) + rule("a b", `"allow"`, `["tag:a"]`, `["tag:b"]`, `["any"]`), []string{
			`p.hcl:1:6: Invalid rule name | "": a rule name is not empty`,
			`p.hcl:7:6: Invalid rule name | "a b"`,
		}},
		{"cidrs", seg("a", "10.90.1.5/24", "1") + seg("b", "banana", "2") + seg("c", "10.0.0.0/33", "3") +
			seg("d", "10.91.0.0/31", "4") + seg("e", "fd00::/127", "5") + seg("f", "::ffff:10.92.0.0/120", "6") +
			seg("g", "10.93.0.0/30", "7") + seg("h", "fd00::/126", "8"), []string{
			`p.hcl:2:13: Invalid cidr | "10.90.1.5/24" has host bits set; did you mean "10.90.1.0/24"?`,
			`p.hcl:7:13: Invalid cidr | "banana" is not a CIDR prefix`,
			`p.hcl:12:13: Invalid cidr | "10.0.0.0/33" is not a CIDR prefix`,
			`p.hcl:17:13: Invalid cidr | an IPv4 segment is at most a /30`,
			`p.hcl:22:13: Invalid cidr | an IPv6 segment is at most a /126`,
			`p.hcl:27:13: Invalid cidr | IPv4-mapped`,
		}},
		{"overlapping cidrs", seg("web", "10.90.1.0/24", "1") + seg("db", "10.90.2.0/24", "2") + seg("all", "10.90.0.0/16", "3") +
			seg("v6", "fd00::/64", "4") + seg("v6b", "fd00::8000/120", "5"), []string{
			`p.hcl:12:13: Overlapping cidr | segment "all" (10.90.0.0/16) overlaps segment "web" (10.90.1.0/24)`,
			`p.hcl:12:13: Overlapping cidr | segment "all" (10.90.0.0/16) overlaps segment "db" (10.90.2.0/24)`,
			`p.hcl:22:13: Overlapping cidr | segment "v6b" (fd00::8000/120) overlaps segment "v6" (fd00::/64)`,
		}},
		{"ports", seg("a", "10.0.1.0/24", "0") + seg("b", "10.0.2.0/24", "70000") + seg("c", "10.0.3.0/24", "-1") +
			seg("d", "10.0.4.0/24", "65535") + seg("e", "10.0.5.0/24", "1"), []string{
			`p.hcl:3:13: Invalid port | port 0 is out of range`,
			`p.hcl:8:13: Invalid port | port 70000 is out of range`,
			`p.hcl:13:13: Invalid port | port -1 is out of range`,
		}},
		{"duplicate port", seg("web", "10.0.1.0/24", "51821") + seg("db", "10.0.2.0/24", "51821"), []string{
			`p.hcl:8:13: Duplicate port | segment "db" uses port 51821, as does segment "web"`,
		}},
		{"member selectors", `segment "web" {
  cidr    = "10.0.1.0/24"
  port    = 1
  members = ["web", "foo:bar", "tag:", "segment:web", "tag:a b", "node:web-1"]
}
`, []string{
			`p.hcl:4:14: Invalid selector | "web" is not kind:value (kinds: tag:, node:, service:)`,
			`p.hcl:4:21: Invalid selector | unknown kind "foo"`,
			`p.hcl:4:32: Invalid selector | "tag:" has an empty tag name`,
			`p.hcl:4:40: Invalid selector | "segment:web": members cannot name a segment`,
			`p.hcl:4:55: Invalid selector | must not contain spaces`,
		}},
		{"rule selectors", seg("web", "10.0.1.0/24", "1") +
			rule("r", `"allow"`, `["segment:web", "segment:wbe", "service:"]`, `["segment:nope", "host:x"]`, `["any"]`), []string{
			`p.hcl:8:28: Unknown segment | no segment is named "wbe"; did you mean "web"?`,
			`p.hcl:8:43: Invalid selector | "service:" has an empty service name`,
			`p.hcl:9:13: Unknown segment | no segment is named "nope"`,
			`p.hcl:9:29: Invalid selector | unknown kind "host" (kinds: segment:, tag:, node:, service:)`,
		}},
		{"port specs", rule("r", `"allow"`, `["tag:a"]`, `["tag:b"]`,
			`["tcp/0", "tcp/70000", "tcp/9-3", "icmp/5", "foo", "udp/", "tcp/1-", "any/80", "tcp/80,", "tcp/+80", "tcp/1-65535"]`), []string{
			`p.hcl:5:13: Invalid port spec | "tcp/0": port 0 is out of range (1-65535)`,
			`p.hcl:5:22: Invalid port spec | "tcp/70000": port 70000 is out of range (1-65535)`,
			`p.hcl:5:35: Invalid port spec | "tcp/9-3": range 9-3 ends before it starts`,
			`p.hcl:5:46: Invalid port spec | "icmp/5": icmp has no ports`,
			`p.hcl:5:56: Invalid port spec | "foo" is not a port spec`,
			`p.hcl:5:63: Invalid port spec | "udp/": "" is not a port number`,
			`p.hcl:5:71: Invalid port spec | "tcp/1-"`,
			`p.hcl:5:81: Invalid port spec | "any/80": any has no ports`,
			`p.hcl:5:91: Invalid port spec | "tcp/80,"`,
			`p.hcl:5:102: Invalid port spec | "tcp/+80": "+80" is not a port number`,
		}},
		{"empty lists", `segment "web" {
  cidr    = "10.0.1.0/24"
  port    = 1
  members = []
}
` + rule("r", `"allow"`, `[]`, `[]`, `[]`), []string{
			`p.hcl:4:13: Empty list | members must select at least one host`,
			`p.hcl:8:12: Empty list | from must select at least one host`,
			`p.hcl:9:12: Empty list | to must select at least one host`,
			`p.hcl:10:12: Empty list | ports must name at least one port spec`,
		}},
		{"intra and action", `segment "web" {
  cidr    = "10.0.1.0/24"
  port    = 1
  members = ["tag:web"]
  intra   = "maybe"
}
` + rule("r", `"permit"`, `["tag:a"]`, `["tag:b"]`, `["any"]`), []string{
			`p.hcl:5:13: Invalid intra | "maybe" is neither "allow" nor "deny"`,
			`p.hcl:8:12: Invalid action | "permit" is neither "allow" nor "deny"`,
		}},
		{"variables and functions", `segment "web" {
  cidr    = var.cidr
  port    = max(1, 2)
  members = ["tag:${x}"]
}
`, []string{
			`p.hcl:2:13: Variables not allowed`,
			`p.hcl:3:13: Function calls not allowed`,
			`p.hcl:4:21: Variables not allowed`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc, err := Parse("p.hcl", []byte(tt.src))
			if err == nil {
				t.Fatalf("Parse: no error, got %+v", doc)
			}
			if doc != nil {
				t.Errorf("Parse returned a document with its error")
			}
			var ds *Diagnostics
			if !errors.As(err, &ds) {
				t.Fatalf("error %T is not a *Diagnostics: %v", err, err)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(*ds) {
				t.Errorf("%d lines for %d diagnostics", len(lines), len(*ds))
			}
			for i, w := range tt.want {
				if i >= len(lines) {
					t.Errorf("missing diagnostic %q", w)
					continue
				}
				prefix, contains, _ := strings.Cut(w, " | ")
				if !strings.HasPrefix(lines[i], prefix) || !strings.Contains(lines[i], contains) {
					t.Errorf("diagnostic %d:\n got  %s\n want %s ... %s", i, lines[i], prefix, contains)
				}
			}
			for _, extra := range lines[min(len(lines), len(tt.want)):] {
				t.Errorf("unexpected diagnostic: %s", extra)
			}
		})
	}
}

func TestPortSpecString(t *testing.T) {
	for _, s := range []string{"tcp/5432", "tcp/8000-8100", "udp/53", "udp/53,5353,6000-6010", "tcp", "udp", "icmp", "any", "tcp/1-65535"} {
		p, err := parsePortSpec(s)
		if err != nil {
			t.Errorf("parsePortSpec(%q): %v", s, err)
			continue
		}
		if got := p.String(); got != s {
			t.Errorf("parsePortSpec(%q).String() = %q", s, got)
		}
	}
}

func TestSelectorString(t *testing.T) {
	if got := (Selector{Kind: "service", Value: "postgres"}).String(); got != "service:postgres" {
		t.Errorf("String() = %q", got)
	}
}
