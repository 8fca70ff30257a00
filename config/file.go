package config

import (
	"errors"
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

// Key paths name a setting in diagnostics and in sources: "ports.rpc",
// "join.addresses", and "tags[2]" for one element of a list.
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
)

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
	tags   []string       // the winning tags as written, to find an element's range
}

func newSources() *sources {
	return &sources{
		origins:  map[string]origin{},
		poisoned: map[string]bool{},
		files:    map[string]int{},
	}
}

// rangeOf returns where key was set: the element of a list for "tags[2]",
// else the attribute, else the enclosing block ("ports" for "ports.rpc").
// It returns nil when the value is a default.
func (s *sources) rangeOf(key string) *hcl.Range {
	if s == nil {
		return nil
	}
	if base, idx, ok := splitIndex(key); ok {
		if o, found := s.origins[base]; found {
			if idx < len(o.elems) {
				return o.elems[idx].Ptr()
			}
			return o.rng.Ptr()
		}
		key = base
	}
	for {
		if o, ok := s.origins[key]; ok {
			return o.rng.Ptr()
		}
		i := strings.LastIndexByte(key, '.')
		if i < 0 {
			return nil
		}
		key = key[:i]
	}
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
	if base, _, ok := splitIndex(key); ok {
		key = base
	}
	for {
		if s.poisoned[key] {
			return true
		}
		i := strings.LastIndexByte(key, '.')
		if i < 0 {
			return false
		}
		key = key[:i]
	}
}

func splitIndex(key string) (base string, idx int, ok bool) {
	open := strings.IndexByte(key, '[')
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
	return &fc, body, fromHCL(diags)
}

// poison marks the key a decode error is about, so that validation skips it.
func poison(body *hclsyntax.Body, d *hcl.Diagnostic, src *sources) {
	if d.Subject == nil {
		src.broken = true
		return
	}
	at := d.Subject.Start
	for key, a := range attributes(body) {
		if a.SrcRange.ContainsPos(at) {
			src.poisoned[key] = true
			return
		}
	}
	if strings.HasPrefix(d.Summary, "Unsupported ") {
		return // an unknown key changes no known one
	}
	for _, b := range body.Blocks {
		if b.Range().ContainsPos(at) {
			src.poisoned[b.Type] = true // e.g. a duplicate block: gohcl decodes neither
			return
		}
	}
	src.broken = true
}

// attributes returns a file's attributes by key path, including those in
// the ports and join blocks. Of repeated blocks the last one wins here; a
// repeated block is an error anyway.
func attributes(body *hclsyntax.Body) map[string]*hclsyntax.Attribute {
	out := map[string]*hclsyntax.Attribute{}
	for name, a := range body.Attributes {
		out[name] = a
	}
	for _, b := range body.Blocks {
		if b.Type != keyPorts && b.Type != keyJoin {
			continue
		}
		for name, a := range b.Body.Attributes {
			out[b.Type+"."+name] = a
		}
	}
	return out
}

// merge lays file f over m, key by key, and records in src where each value
// it takes came from.
func (m *fileConfig) merge(f *fileConfig, body *hclsyntax.Body, src *sources) {
	attrs := attributes(body)
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
	take(&m.NodeName, f.NodeName, keyNodeName, at, src)
	take(&m.DataDir, f.DataDir, keyDataDir, at, src)
	take(&m.Socket, f.Socket, keySocket, at, src)
	take(&m.BindAddr, f.BindAddr, keyBindAddr, at, src)
	take(&m.AdvertiseAddr, f.AdvertiseAddr, keyAdvertiseAddr, at, src)
	take(&m.Domain, f.Domain, keyDomain, at, src)
	take(&m.Server, f.Server, keyServer, at, src)
	take(&m.Bootstrap, f.Bootstrap, keyBootstrap, at, src)
	take(&m.Tags, f.Tags, keyTags, at, src)
	take(&m.LogLevel, f.LogLevel, keyLogLevel, at, src)
	take(&m.LogFormat, f.LogFormat, keyLogFormat, at, src)
	if f.Ports != nil {
		if m.Ports == nil {
			m.Ports = &portsFile{}
		}
		src.origins[keyPorts] = origin{rng: lastBlock(body, keyPorts)}
		take(&m.Ports.Gossip, f.Ports.Gossip, keyGossip, at, src)
		take(&m.Ports.RPC, f.Ports.RPC, keyRPC, at, src)
		take(&m.Ports.Raft, f.Ports.Raft, keyRaft, at, src)
	}
	if f.Join != nil {
		if m.Join == nil {
			m.Join = &joinFile{}
		}
		src.origins[keyJoin] = origin{rng: lastBlock(body, keyJoin)}
		take(&m.Join.Token, f.Join.Token, keyJoinToken, at, src)
		take(&m.Join.Addresses, f.Join.Addresses, keyJoinAddresses, at, src)
	}
	if f.Tags != nil {
		src.tags = *f.Tags
	}
}

func take[T any](dst **T, v *T, key string, at func(string) origin, src *sources) {
	if v == nil {
		return
	}
	*dst = v
	src.origins[key] = at(key)
}

func lastBlock(body *hclsyntax.Body, typ string) hcl.Range {
	var r hcl.Range
	for _, b := range body.Blocks {
		if b.Type == typ {
			r = b.DefRange()
		}
	}
	return r
}
