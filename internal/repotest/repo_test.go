package repotest

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
)

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("no go.mod at %s: %v", root, err)
	}
	return root
}

// TestPackageDocs fails when a package has no "// Package name ..." doc
// comment saying what it owns.
func TestPackageDocs(t *testing.T) {
	root := repoRoot(t)
	dirs := map[string][]string{}
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(path, ".go") && !strings.HasSuffix(path, "_test.go") {
			dirs[filepath.Dir(path)] = append(dirs[filepath.Dir(path)], path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	docRe := regexp.MustCompile(`(?m)^// (Package [a-z][a-z0-9]*|Command [a-z]+) `)
	for dir, files := range dirs {
		found := false
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			found = found || docRe.Match(b)
		}
		if !found {
			rel, _ := filepath.Rel(root, dir)
			t.Errorf("package %s has no doc comment (// Package ... or // Command ...)", rel)
		}
	}
}

// allowedModules are the modules the weft binary may link. Adding one is
// a decision: say why in the commit.
var allowedModules = []string{
	"github.com/weft-mesh/weft",
	"github.com/hashicorp/",   // raft, memberlist, hcl, and their helpers
	"github.com/armon/",       // go-metrics (raft, memberlist)
	"github.com/boltdb/bolt",  // raft-boltdb
	"go.etcd.io/bbolt",        // raft-boltdb/v2
	"github.com/miekg/dns",    // memberlist; mesh DNS
	"github.com/google/btree", // memberlist
	"github.com/sean-/seed",   // memberlist
	"github.com/agext/levenshtein",
	"github.com/apparentlymart/",
	"github.com/mitchellh/",
	"github.com/zclconf/go-cty",
	"github.com/fatih/color", // hclog
	"github.com/mattn/",      // hclog
	"golang.org/x/",
	"github.com/google/go-cmp/",    // hcl/v2/gohcl imports hclwrite, which imports it
	"golang.zx2c4.com/wireguard",   // embedded WireGuard and wgctrl (overlay)
	"github.com/vishvananda/",      // netlink, netns (overlay links)
	"github.com/google/nftables",   // the firewall (overlay)
	"github.com/mdlayher/",         // netlink for nftables and wgctrl
	"github.com/josharian/native",  // mdlayher/netlink
	"github.com/prometheus/",       // metrics (client_golang and its model)
	"google.golang.org/protobuf",   // prometheus client_model
	"github.com/beorn7/perks",      // prometheus summaries
	"github.com/cespare/xxhash",    // prometheus
	"github.com/munnerz/goautoneg", // prometheus/common (content negotiation)
	"go.yaml.in/yaml",              // prometheus/common

}

// TestBinaryDependencies guards the dependency list of cmd/weft so that
// nothing heavy creeps in unnoticed.
func TestBinaryDependencies(t *testing.T) {
	if testing.Short() {
		t.Skip("runs go list")
	}
	root := repoRoot(t)
	cmd := exec.Command("go", "list", "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", "./cmd/weft")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	var bad []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		pkg := strings.TrimSpace(sc.Text())
		if pkg == "" {
			continue
		}
		ok := false
		for _, prefix := range allowedModules {
			ok = ok || strings.HasPrefix(pkg, prefix)
		}
		if !ok {
			bad = append(bad, pkg)
		}
	}
	sort.Strings(bad)
	if len(bad) > 0 {
		t.Errorf("cmd/weft links packages outside the allowlist (internal/repotest):\n  %s", strings.Join(bad, "\n  "))
	}
}
