package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// fileConfig is one config file as written. Every field is a pointer so that
// a key a file leaves out does not override an earlier file, and so that
// "unset" differs from false, 0 and "".
type fileConfig struct {
	NodeName      *string    `hcl:"node_name"`
	DataDir       *string    `hcl:"data_dir"`
	Socket        *string    `hcl:"socket"`
	BindAddr      *string    `hcl:"bind_addr"`
	AdvertiseAddr *string    `hcl:"advertise_addr"`
	Domain        *string    `hcl:"domain"`
	Ports         *portsFile `hcl:"ports,block"`
	Server        *bool      `hcl:"server"`
	Bootstrap     *bool      `hcl:"bootstrap"`
	Tags          *[]string  `hcl:"tags"`
	Join          *joinFile  `hcl:"join,block"`
	LogLevel      *string    `hcl:"log_level"`
	LogFormat     *string    `hcl:"log_format"`
	// Services are merged by label: a later file's service "db" block
	// changes service "db" key by key.
	Services []serviceFile `hcl:"service,block"`
	DNS      *dnsFile      `hcl:"dns,block"`
	Metrics  *metricsFile  `hcl:"metrics,block"`
}

type portsFile struct {
	Gossip *int `hcl:"gossip"`
	RPC    *int `hcl:"rpc"`
	Raft   *int `hcl:"raft"`
}

type joinFile struct {
	Token     *string   `hcl:"token"`
	Addresses *[]string `hcl:"addresses"`
}

type serviceFile struct {
	Name      string         `hcl:"name,label"`
	Port      *int           `hcl:"port"`
	Tags      *[]string      `hcl:"tags"`
	Check     *checkFile     `hcl:"check,block"`
	Identity  *identityFile  `hcl:"identity,block"`
	Upstreams []upstreamFile `hcl:"upstream,block"` // merged by label, like services
}

type checkFile struct {
	TCP      *string `hcl:"tcp"`
	HTTP     *string `hcl:"http"`
	Interval *string `hcl:"interval"`
	Timeout  *string `hcl:"timeout"`
}

type identityFile struct {
	UID *int `hcl:"uid"`
}

type upstreamFile struct {
	Name   string  `hcl:"name,label"`
	Listen *string `hcl:"listen"`
}

type dnsFile struct {
	Enabled   *bool     `hcl:"enabled"`
	Listen    *[]string `hcl:"listen"`
	Domain    *string   `hcl:"domain"`
	Upstreams *[]string `hcl:"upstreams"`
	AllowFrom *[]string `hcl:"allow_from"`
	TTL       *string   `hcl:"ttl"`
	Resolved  *bool     `hcl:"resolved"`
}

type metricsFile struct {
	Listen *string `hcl:"listen"`
}

// Key paths name a setting in diagnostics and in sources: "ports.rpc",
// "join.addresses", "tags[2]" for one element of a list, and
// service["db"].check.tcp for a key of a labelled block (see labelKey).
const (
	keyNodeName      = "node_name"
	keyDataDir       = "data_dir"
	keySocket        = "socket"
	keyBindAddr      = "bind_addr"
	keyAdvertiseAddr = "advertise_addr"
	keyDomain        = "domain"
	keyPorts         = "ports"
	keyGossip        = "ports.gossip"
	keyRPC           = "ports.rpc"
	keyRaft          = "ports.raft"
	keyServer        = "server"
	keyBootstrap     = "bootstrap"
	keyTags          = "tags"
	keyJoin          = "join"
	keyJoinToken     = "join.token"
	keyJoinAddresses = "join.addresses"
	keyLogLevel      = "log_level"
	keyLogFormat     = "log_format"
	keyService       = "service"
	keyDNS           = "dns"
	keyDNSEnabled    = "dns.enabled"
	keyDNSListen     = "dns.listen"
	keyDNSDomain     = "dns.domain"
	keyDNSUpstreams  = "dns.upstreams"
	keyDNSAllowFrom  = "dns.allow_from"
	keyDNSTTL        = "dns.ttl"
	keyDNSResolved   = "dns.resolved"
	keyMetrics       = "metrics"
	keyMetricsListen = "metrics.listen"
)

// Keys inside a service block, appended to serviceKey(name).
const (
	subPort          = ".port"
	subTags          = ".tags"
	subCheck         = ".check"
	subCheckTCP      = ".check.tcp"
	subCheckHTTP     = ".check.http"
	subCheckInterval = ".check.interval"
	subCheckTimeout  = ".check.timeout"
	subIdentity      = ".identity"
	subIdentityUID   = ".identity.uid"
	subListen        = ".listen" // of an upstream block
)

// serviceKey is the key path of the block of service name: service["db"].
func serviceKey(name string) string { return keyService + labelKey(name) }

// upstreamKey is the key path of an upstream block: service["web"].upstream["db"].
func upstreamKey(service, name string) string {
	return serviceKey(service) + ".upstream" + labelKey(name)
}

// labelKey makes a block label part of a key path. A label is whatever the
// file wrote, so the characters that structure a key path are escaped, and
// the quotes keep a label such as "2" from reading as a list index.
func labelKey(label string) string { return `["` + labelEscaper.Replace(label) + `"]` }

var labelEscaper = strings.NewReplacer("%", "%25", ".", "%2E", "[", "%5B", "]", "%5D")

// origin is where a setting's winning value was written.
type origin struct {
	rng   hcl.Range
	elems []hcl.Range // one per element when a list is written as a literal
}

// sources remembers, while files are merged, where each winning value came
// from, so that validation can point at the file that set a bad value.
type sources struct {
	origins map[string]origin
	// poisoned keys failed to decode or to parse; rules that read them are
	// skipped so that one mistake is not reported again as a different one.
	poisoned map[string]bool
	// broken is set when a file could not be parsed: what was merged is
	// then incomplete and validating it would only report noise.
	broken bool
	files  map[string]int // file name -> load order, to sort diagnostics
	// lists holds the winning value of a list key as written, to find the
	// range of an element that Runtime holds sorted (tags, a service's tags).
	lists map[string][]string
}

func newSources() *sources {
	return &sources{
		origins:  map[string]origin{},
		poisoned: map[string]bool{},
		files:    map[string]int{},
		lists:    map[string][]string{},
	}
}

// rangeOf returns where key was set: the element of a list for "tags[2]",
// else the attribute, else the enclosing block ("ports" for "ports.rpc",
// service["db"] for service["db"].port). It returns nil when the value is
// a default.
func (s *sources) rangeOf(key string) *hcl.Range {
	if s == nil {
		return nil
	}
	if base, idx, ok := splitIndex(key); ok {
		if o, found := s.origins[base]; found && idx < len(o.elems) {
			return o.elems[idx].Ptr()
		}
	}
	for k, more := key, true; more; k, more = parentKey(k) {
		if o, ok := s.origins[k]; ok {
			return o.rng.Ptr()
		}
	}
	return nil
}

// set reports whether a file set key (or, for a block, wrote the block).
func (s *sources) set(key string) bool {
	if s == nil {
		return false
	}
	_, ok := s.origins[key]
	return ok
}

// isPoisoned reports whether key, or the block holding it, failed to decode.
func (s *sources) isPoisoned(key string) bool {
	if s == nil {
		return false
	}
	for k, more := key, true; more; k, more = parentKey(k) {
		if s.poisoned[k] {
			return true
		}
	}
	return false
}

// parentKey returns the key that holds key: "tags" for "tags[2]", "ports"
// for "ports.rpc", service["db"] for service["db"].port and "service" for
// service["db"]. It reports false for a top-level key.
func parentKey(key string) (string, bool) {
	if strings.HasSuffix(key, "]") {
		if i := strings.LastIndexByte(key, '['); i > 0 {
			return key[:i], true
		}
	}
	if i := strings.LastIndexByte(key, '.'); i > 0 {
		return key[:i], true
	}
	return "", false
}

// splitIndex splits "tags[2]" into "tags" and 2. A label (service["db"])
// is not an index.
func splitIndex(key string) (base string, idx int, ok bool) {
	open := strings.LastIndexByte(key, '[')
	if open < 0 || !strings.HasSuffix(key, "]") {
		return key, 0, false
	}
	n, err := strconv.Atoi(key[open+1 : len(key)-1])
	if err != nil {
		return key, 0, false
	}
	return key[:open], n, true
}

// configPaths lists the files to read: files in the order given, then each
// dir's *.hcl files in lexical order. A dir without any is an error, since
// it is almost certainly the wrong dir.
func configPaths(files, dirs []string) ([]string, Diagnostics) {
	var diags Diagnostics
	paths := append([]string(nil), files...)
	for _, dir := range dirs {
		entries, err := os.ReadDir(dir) // sorted by name
		if err != nil {
			diags = append(diags, Diagnostic{Filename: dir, Summary: "Cannot read config directory", Detail: pathErrDetail(err)})
			continue
		}
		n := 0
		for _, e := range entries {
			if e.IsDir() || !strings.HasSuffix(e.Name(), ".hcl") {
				continue
			}
			paths = append(paths, filepath.Join(dir, e.Name()))
			n++
		}
		if n == 0 {
			diags = append(diags, Diagnostic{Filename: dir, Summary: "No config files in directory", Detail: "a config directory must hold at least one *.hcl file"})
		}
	}
	return paths, diags
}

// pathErrDetail drops the "open /path" prefix of a *PathError, since the
// diagnostic already names the path.
func pathErrDetail(err error) string {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	return err.Error()
}

// parseFile reads and decodes one file. It returns nil when the file could
// not be read or parsed.
func parseFile(path string, src *sources) (*fileConfig, *hclsyntax.Body, Diagnostics) {
	data, err := os.ReadFile(path)
	if err != nil {
		src.broken = true
		return nil, nil, Diagnostics{{Filename: path, Summary: "Cannot read config file", Detail: pathErrDetail(err)}}
	}
	f, diags := hclsyntax.ParseConfig(data, path, hcl.InitialPos)
	if diags.HasErrors() {
		src.broken = true
		return nil, nil, fromHCL(diags)
	}
	body := f.Body.(*hclsyntax.Body) // hclsyntax always returns its own body type
	var fc fileConfig
	diags = gohcl.DecodeBody(body, nil, &fc)
	for _, d := range diags {
		if d.Severity == hcl.DiagError {
			poison(body, d, src)
		}
	}
	return &fc, body, append(fromHCL(diags), duplicateLabels(body, src)...)
}

// poison marks the key a decode error is about, so that validation skips it.
func poison(body *hclsyntax.Body, d *hcl.Diagnostic, src *sources) {
	if d.Subject == nil {
		src.broken = true
		return
	}
	at := d.Subject.Start
	attrs, _ := index(body)
	for key, a := range attrs {
		if a.SrcRange.ContainsPos(at) {
			src.poisoned[key] = true
			return
		}
	}
	if strings.HasPrefix(d.Summary, "Unsupported ") {
		return // an unknown key changes no known one
	}
	// The innermost block holding the error, e.g. a duplicate block (gohcl
	// decodes neither) or a service block without its label.
	key := ""
	for b := body; b != nil; {
		inner := b
		b = nil
		for _, blk := range inner.Blocks {
			if blk.Range().ContainsPos(at) {
				key, b = blockKey(key, blk), blk.Body
				break
			}
		}
	}
	if key == "" {
		src.broken = true
		return
	}
	src.poisoned[key] = true
}

// duplicateLabels reports a service written twice in one file, and an
// upstream written twice in one service block. gohcl accepts repeated
// labelled blocks, and merging them would quietly drop keys of the first;
// across files, a later block is meant to change an earlier one.
func duplicateLabels(body *hclsyntax.Body, src *sources) Diagnostics {
	var diags Diagnostics
	dup := func(key, what string, first hcl.Range, b *hclsyntax.Block) {
		src.poisoned[key] = true
		r := b.DefRange()
		diags = append(diags, newDiagnostic(&r, "Duplicate "+b.Type+" block", fmt.Sprintf(
			"%s is also defined at %s:%d:%d; in one file, each is defined once (a later file may change it)",
			what, first.Filename, first.Start.Line, first.Start.Column)))
	}
	services := map[string]hcl.Range{}
	for _, b := range body.Blocks {
		if b.Type != keyService || len(b.Labels) != 1 {
			continue
		}
		name := b.Labels[0]
		if first, ok := services[name]; ok {
			dup(serviceKey(name), fmt.Sprintf("service %q", name), first, b)
			continue
		}
		services[name] = b.DefRange()
		upstreams := map[string]hcl.Range{}
		for _, u := range b.Body.Blocks {
			if u.Type != "upstream" || len(u.Labels) != 1 {
				continue
			}
			if first, ok := upstreams[u.Labels[0]]; ok {
				dup(upstreamKey(name, u.Labels[0]), fmt.Sprintf("upstream %q of service %q", u.Labels[0], name), first, u)
				continue
			}
			upstreams[u.Labels[0]] = u.DefRange()
		}
	}
	return diags
}

// index returns a file's attributes and the header ranges of its blocks by
// key path, at any depth: "ports.rpc", service["db"].check.tcp. Of repeated
// blocks the last one wins here; a repeated block is an error anyway.
func index(body *hclsyntax.Body) (map[string]*hclsyntax.Attribute, map[string]hcl.Range) {
	attrs, blocks := map[string]*hclsyntax.Attribute{}, map[string]hcl.Range{}
	var walk func(prefix string, b *hclsyntax.Body)
	walk = func(prefix string, b *hclsyntax.Body) {
		for name, a := range b.Attributes {
			attrs[prefix+name] = a
		}
		for _, blk := range b.Blocks {
			key := blockKey(prefix, blk)
			blocks[key] = blk.DefRange()
			walk(key+".", blk.Body)
		}
	}
	walk("", body)
	return attrs, blocks
}

// blockKey is the key path of blk, inside the block whose key path is
// prefix ("" at the top level).
func blockKey(prefix string, blk *hclsyntax.Block) string {
	if prefix != "" && !strings.HasSuffix(prefix, ".") {
		prefix += "."
	}
	key := prefix + blk.Type
	for _, l := range blk.Labels {
		key += labelKey(l)
	}
	return key
}

// merge lays file f over m, key by key, and records in src where each value
// it takes came from.
func (m *fileConfig) merge(f *fileConfig, body *hclsyntax.Body, src *sources) {
	attrs, blocks := index(body)
	at := func(key string) origin {
		a, ok := attrs[key]
		if !ok {
			return origin{}
		}
		o := origin{rng: a.SrcRange}
		if t, ok := a.Expr.(*hclsyntax.TupleConsExpr); ok {
			for _, e := range t.Exprs {
				o.elems = append(o.elems, e.Range())
			}
		}
		return o
	}
	block := func(key string) { src.origins[key] = origin{rng: blocks[key]} }
	take(&m.NodeName, f.NodeName, keyNodeName, at, src)
	take(&m.DataDir, f.DataDir, keyDataDir, at, src)
	take(&m.Socket, f.Socket, keySocket, at, src)
	take(&m.BindAddr, f.BindAddr, keyBindAddr, at, src)
	take(&m.AdvertiseAddr, f.AdvertiseAddr, keyAdvertiseAddr, at, src)
	take(&m.Domain, f.Domain, keyDomain, at, src)
	take(&m.Server, f.Server, keyServer, at, src)
	take(&m.Bootstrap, f.Bootstrap, keyBootstrap, at, src)
	takeList(&m.Tags, f.Tags, keyTags, at, src)
	take(&m.LogLevel, f.LogLevel, keyLogLevel, at, src)
	take(&m.LogFormat, f.LogFormat, keyLogFormat, at, src)
	if f.Ports != nil {
		if m.Ports == nil {
			m.Ports = &portsFile{}
		}
		block(keyPorts)
		take(&m.Ports.Gossip, f.Ports.Gossip, keyGossip, at, src)
		take(&m.Ports.RPC, f.Ports.RPC, keyRPC, at, src)
		take(&m.Ports.Raft, f.Ports.Raft, keyRaft, at, src)
	}
	if f.Join != nil {
		if m.Join == nil {
			m.Join = &joinFile{}
		}
		block(keyJoin)
		take(&m.Join.Token, f.Join.Token, keyJoinToken, at, src)
		take(&m.Join.Addresses, f.Join.Addresses, keyJoinAddresses, at, src)
	}
	for _, fs := range f.Services {
		key := serviceKey(fs.Name)
		ms := m.service(fs.Name)
		block(key)
		take(&ms.Port, fs.Port, key+subPort, at, src)
		takeList(&ms.Tags, fs.Tags, key+subTags, at, src)
		if c := fs.Check; c != nil {
			if ms.Check == nil {
				ms.Check = &checkFile{}
			}
			block(key + subCheck)
			// tcp and http are one choice: a later file that names either
			// target replaces the earlier one, so that it can switch kinds.
			if c.TCP != nil || c.HTTP != nil {
				ms.Check.TCP, ms.Check.HTTP = nil, nil
				delete(src.origins, key+subCheckTCP)
				delete(src.origins, key+subCheckHTTP)
			}
			take(&ms.Check.TCP, c.TCP, key+subCheckTCP, at, src)
			take(&ms.Check.HTTP, c.HTTP, key+subCheckHTTP, at, src)
			take(&ms.Check.Interval, c.Interval, key+subCheckInterval, at, src)
			take(&ms.Check.Timeout, c.Timeout, key+subCheckTimeout, at, src)
		}
		if id := fs.Identity; id != nil {
			if ms.Identity == nil {
				ms.Identity = &identityFile{}
			}
			block(key + subIdentity)
			take(&ms.Identity.UID, id.UID, key+subIdentityUID, at, src)
		}
		for _, fu := range fs.Upstreams {
			ukey := upstreamKey(fs.Name, fu.Name)
			mu := ms.upstream(fu.Name)
			block(ukey)
			take(&mu.Listen, fu.Listen, ukey+subListen, at, src)
		}
	}
	if d := f.DNS; d != nil {
		if m.DNS == nil {
			m.DNS = &dnsFile{}
		}
		block(keyDNS)
		take(&m.DNS.Enabled, d.Enabled, keyDNSEnabled, at, src)
		take(&m.DNS.Listen, d.Listen, keyDNSListen, at, src)
		take(&m.DNS.Domain, d.Domain, keyDNSDomain, at, src)
		take(&m.DNS.Upstreams, d.Upstreams, keyDNSUpstreams, at, src)
		take(&m.DNS.AllowFrom, d.AllowFrom, keyDNSAllowFrom, at, src)
		take(&m.DNS.TTL, d.TTL, keyDNSTTL, at, src)
		take(&m.DNS.Resolved, d.Resolved, keyDNSResolved, at, src)
	}
	if f.Metrics != nil {
		if m.Metrics == nil {
			m.Metrics = &metricsFile{}
		}
		block(keyMetrics)
		take(&m.Metrics.Listen, f.Metrics.Listen, keyMetricsListen, at, src)
	}
}

// service returns the merged block of service name, adding it if no
// earlier file had one.
func (m *fileConfig) service(name string) *serviceFile {
	for i := range m.Services {
		if m.Services[i].Name == name {
			return &m.Services[i]
		}
	}
	m.Services = append(m.Services, serviceFile{Name: name})
	return &m.Services[len(m.Services)-1]
}

// upstream returns the merged upstream block name of s, adding it if no
// earlier file had one.
func (s *serviceFile) upstream(name string) *upstreamFile {
	for i := range s.Upstreams {
		if s.Upstreams[i].Name == name {
			return &s.Upstreams[i]
		}
	}
	s.Upstreams = append(s.Upstreams, upstreamFile{Name: name})
	return &s.Upstreams[len(s.Upstreams)-1]
}

func take[T any](dst **T, v *T, key string, at func(string) origin, src *sources) {
	if v == nil {
		return
	}
	*dst = v
	src.origins[key] = at(key)
}

// takeList is take for a list that Runtime holds sorted: it also keeps the
// list as written, so that a bad element can be found where it was written.
func takeList(dst **[]string, v *[]string, key string, at func(string) origin, src *sources) {
	take(dst, v, key, at, src)
	if v != nil {
		src.lists[key] = *v
	}
}
