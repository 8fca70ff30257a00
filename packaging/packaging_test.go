package packaging

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/weft-mesh/weft/config"
)

// envRequired turns the skips of this package (no systemd-analyze, not
// root, no dpkg) into failures, as it does for the namespace tests: CI sets
// it so that a run cannot pass without really checking the package.
const envRequired = "WEFT_E2E_REQUIRED"

// testVersion is linked into the binary these tests build and handed to
// build.sh, so that the installed package can be told from any other.
const testVersion = "0.0.1-pkgtest"

var (
	buildOnce sync.Once
	buildDir  string
	buildBin  string
	buildErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// unavailable skips the test, or fails it under WEFT_E2E_REQUIRED=1.
func unavailable(t *testing.T, format string, args ...any) {
	t.Helper()
	msg := fmt.Sprintf(format, args...)
	if os.Getenv(envRequired) == "1" {
		t.Fatalf("%s=1 but %s", envRequired, msg)
	}
	t.Skipf("skipping: %s (set %s=1 to make this a failure)", msg, envRequired)
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("no go.mod at %s: %v", root, err)
	}
	return root
}

// weftBinary builds cmd/weft once per run, the way build.sh does (static,
// the version linked in).
func weftBinary(t *testing.T) string {
	t.Helper()
	root := repoRoot(t)
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "weft-packaging-")
		if buildErr != nil {
			return
		}
		buildBin = filepath.Join(buildDir, "weft")
		var out []byte
		cmd := exec.Command("go", "build", "-trimpath",
			"-ldflags", "-X github.com/weft-mesh/weft/internal/version.Version="+testVersion,
			"-o", buildBin, "./cmd/weft")
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, buildErr = cmd.CombinedOutput(); buildErr != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", buildErr, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return buildBin
}

// run runs a command with a deadline and returns its combined output.
func run(t *testing.T, dir string, env []string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	if env != nil {
		cmd.Env = append(os.Environ(), env...)
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		err = fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return string(out), err
}

// mustRun is run that fails the test on error.
func mustRun(t *testing.T, dir string, env []string, name string, args ...string) string {
	t.Helper()
	out, err := run(t, dir, env, name, args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return out
}

// dpkg runs dpkg (or dpkg-query) like run, but waits while another
// process (apt on the same host) holds the dpkg lock, up to a deadline.
func dpkg(t *testing.T, name string, args ...string) (string, error) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Minute)
	for {
		out, err := run(t, "", nil, name, args...)
		if err == nil || !strings.Contains(out, "locked") || time.Now().After(deadline) {
			return out, err
		}
		t.Logf("%s %s: waiting for the dpkg lock: %s", name, args[0], strings.SplitN(out, "\n", 2)[0])
		time.Sleep(2 * time.Second)
	}
}

// mustDpkg is dpkg that fails the test on error.
func mustDpkg(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := dpkg(t, name, args...)
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	return out
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestUnitVerifies runs systemd-analyze verify on weft.service. verify
// checks that ExecStart= names an executable, so it runs on a copy whose
// /usr/bin/weft is a fresh build; the copy keeps the name weft.service,
// since verify names the unit after its file.
func TestUnitVerifies(t *testing.T) {
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		unavailable(t, "systemd-analyze is not installed")
	}
	root := repoRoot(t)
	unit := readFile(t, filepath.Join(root, "packaging", "weft.service"))
	bin := weftBinary(t)
	text := strings.ReplaceAll(unit, "/usr/bin/weft", bin)
	if text == unit {
		t.Fatal("weft.service does not run /usr/bin/weft")
	}
	path := filepath.Join(t.TempDir(), "weft.service")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, "", nil, sa, "verify", path)
	if strings.TrimSpace(out) == "" {
		t.Logf("systemd-analyze verify weft.service: no findings")
	} else {
		t.Logf("systemd-analyze verify weft.service:\n%s", out)
	}
	if err != nil {
		t.Fatal(err)
	}
	// verify exits 0 on unknown keys and bad values (it ignores them, as
	// systemd would): any line about our unit is a failure. Lines about
	// other units on this host are not ours to judge.
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "weft.service") || strings.Contains(line, bin) {
			t.Errorf("systemd-analyze verify: %s", line)
		}
	}
	// The exposure score, for the record; older systemd has no --offline.
	if out, err := run(t, "", nil, sa, "security", "--offline=true", "--no-pager", path); err == nil {
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, "Overall exposure") {
				t.Logf("systemd-analyze security: %s", strings.TrimSpace(line))
			}
		}
	}
}

// parseUnit returns every Key=value of a unit file, by key, in order.
func parseUnit(text string) map[string][]string {
	kv := map[string][]string{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' || line[0] == ';' || line[0] == '[' {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if ok {
			kv[k] = append(kv[k], v)
		}
	}
	return kv
}

// TestUnitPromises holds weft.service to what DESIGN.md and README.md
// promise an operator, and to the default config's paths.
func TestUnitPromises(t *testing.T) {
	root := repoRoot(t)
	unit := parseUnit(readFile(t, filepath.Join(root, "packaging", "weft.service")))
	want := map[string]string{
		"Type":                    "notify",
		"NotifyAccess":            "main",
		"WatchdogSec":             "30s",
		"ExecStart":               "/usr/bin/weft agent -config-dir /etc/weft",
		"ExecReload":              "/bin/kill -HUP $MAINPID",
		"Restart":                 "on-failure",
		"User":                    "weft",
		"Group":                   "weft",
		"CapabilityBoundingSet":   "CAP_NET_ADMIN CAP_NET_BIND_SERVICE",
		"AmbientCapabilities":     "CAP_NET_ADMIN CAP_NET_BIND_SERVICE",
		"NoNewPrivileges":         "yes",
		"ProtectSystem":           "strict",
		"StateDirectory":          "weft",
		"StateDirectoryMode":      "0700",
		"RuntimeDirectory":        "weft wireguard",
		"ConditionPathExistsGlob": "/etc/weft/*.hcl",
		"DeviceAllow":             "/dev/net/tun rw",
		"DevicePolicy":            "closed",
	}
	for k, v := range want {
		if got := unit[k]; !slices.Equal(got, []string{v}) {
			t.Errorf("%s = %q, want exactly %q", k, got, v)
		}
	}
	// Fail static: nothing tears the dataplane down when the agent stops,
	// since a restart stops it too.
	for _, k := range []string{"ExecStop", "ExecStopPost"} {
		if v, ok := unit[k]; ok {
			t.Errorf("%s = %q: a stop must leave interfaces and firewall in place", k, v)
		}
	}

	rt, err := config.Load([]string{filepath.Join(root, "packaging", "weft.hcl")}, nil)
	if err != nil {
		t.Fatalf("packaging/weft.hcl: %v", err)
	}
	if want := "/var/lib/" + unit["StateDirectory"][0]; rt.DataDir != want {
		t.Errorf("weft.hcl data_dir = %s, but the unit may only write %s", rt.DataDir, want)
	}
	if want := "/run/" + strings.Fields(unit["RuntimeDirectory"][0])[0]; filepath.Dir(rt.Socket) != want {
		t.Errorf("weft.hcl socket = %s, not in the unit's runtime directory %s", rt.Socket, want)
	}
}

// TestDefaultConfig checks the shipped /etc/weft/weft.hcl: weft validate
// accepts it, it mentions every key config/README.md lists, and only the
// keys that suit every host are set.
func TestDefaultConfig(t *testing.T) {
	root := repoRoot(t)
	path := filepath.Join(root, "packaging", "weft.hcl")
	out := mustRun(t, root, nil, weftBinary(t), "validate", path)
	if strings.TrimSpace(out) != "configuration is valid" {
		t.Errorf("weft validate packaging/weft.hcl: %q", out)
	}

	text := readFile(t, path)
	readme := readFile(t, filepath.Join(root, "config", "README.md"))
	keys := regexp.MustCompile("(?m)^\\| `([a-z_.]+)` \\|").FindAllStringSubmatch(readme, -1)
	if len(keys) < 20 {
		t.Fatalf("found only %d keys in config/README.md's table", len(keys))
	}
	for _, k := range keys {
		name := k[1][strings.LastIndex(k[1], ".")+1:]
		re := regexp.MustCompile(`(?m)^[#\s]*` + name + `\s*(=|\{|")`)
		if !re.MatchString(text) {
			t.Errorf("packaging/weft.hcl does not document %s", k[1])
		}
	}

	var active []string
	sc := bufio.NewScanner(strings.NewReader(text))
	keyRe := regexp.MustCompile(`^([a-z_]+)\s*(=|\{|")`)
	for sc.Scan() {
		if m := keyRe.FindStringSubmatch(sc.Text()); m != nil {
			active = append(active, m[1])
		}
	}
	// Cluster-specific keys (node_name, server, bootstrap, join, ...) stay
	// commented out, so the file fits any host as shipped.
	if diff := cmp.Diff([]string{"data_dir", "socket", "log_level"}, active); diff != "" {
		t.Errorf("keys set in packaging/weft.hcl (-want +got):\n%s", diff)
	}
}

// fileIs checks a path's type, mode and owner.
func fileIs(t *testing.T, path string, dir bool, mode os.FileMode, owner, group string) {
	t.Helper()
	st, err := os.Lstat(path)
	if err != nil {
		t.Errorf("%v", err)
		return
	}
	if st.IsDir() != dir || (!dir && !st.Mode().IsRegular()) {
		t.Errorf("%s: mode %v, want a %s", path, st.Mode(), map[bool]string{true: "directory", false: "regular file"}[dir])
	}
	if st.Mode().Perm() != mode {
		t.Errorf("%s: mode %04o, want %04o", path, st.Mode().Perm(), mode)
	}
	sys := st.Sys().(*syscall.Stat_t)
	u, _ := user.LookupId(fmt.Sprint(sys.Uid))
	g, _ := user.LookupGroupId(fmt.Sprint(sys.Gid))
	if u == nil || g == nil || u.Username != owner || g.Name != group {
		t.Errorf("%s: owned by %d:%d, want %s:%s", path, sys.Uid, sys.Gid, owner, group)
	}
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// TestDebPackage builds the deb and rpm with build.sh, installs the deb on
// this host with dpkg, checks what landed where, upgrades it over an
// edited config, then removes and purges it. It changes the live system
// (a package, the weft user, /etc/weft), so it runs as root only, and
// refuses to touch a host where weft is already installed.
func TestDebPackage(t *testing.T) {
	if os.Geteuid() != 0 {
		unavailable(t, "installing the deb needs root (euid is %d)", os.Geteuid())
	}
	for _, tool := range []string{"dpkg", "dpkg-deb", "dpkg-query"} {
		if _, err := exec.LookPath(tool); err != nil {
			unavailable(t, "%s is not installed", tool)
		}
	}
	if out, err := dpkg(t, "dpkg-query", "-W", "-f=${Status}", "weft"); err == nil && !strings.HasSuffix(out, " not-installed") {
		unavailable(t, "a weft package is already installed here (%s); not replacing it", out)
	}
	if exists("/etc/weft") || exists("/var/lib/weft") {
		unavailable(t, "/etc/weft or /var/lib/weft exists already; not installing over it")
	}
	_, err := user.Lookup("weft")
	hadUser := err == nil

	root := repoRoot(t)
	bin := weftBinary(t)
	dist := t.TempDir()
	build := func(version string, formats ...string) {
		t.Helper()
		env := []string{"WEFT_BIN=" + bin, "VERSION=" + version, "DIST=" + dist}
		out := mustRun(t, root, env, "packaging/build.sh", formats...)
		t.Logf("build.sh %s:\n%s", strings.Join(formats, " "), out)
	}
	build(testVersion, "deb", "rpm")
	debs, _ := filepath.Glob(filepath.Join(dist, "weft_*.deb"))
	rpms, _ := filepath.Glob(filepath.Join(dist, "weft-*.rpm"))
	if len(debs) != 1 || len(rpms) != 1 {
		t.Fatalf("build.sh made debs %v, rpms %v; want one of each", debs, rpms)
	}
	deb := debs[0]
	t.Logf("dpkg -c %s:\n%s", filepath.Base(deb), mustDpkg(t, "dpkg", "-c", deb))
	if st, err := os.Stat(rpms[0]); err != nil || st.Size() < 1<<20 {
		t.Errorf("rpm %s: %v, size %d", rpms[0], err, st.Size())
	}

	t.Cleanup(func() {
		if out, err := dpkg(t, "dpkg", "--purge", "weft"); err != nil {
			t.Logf("cleanup: %v\n%s", err, out)
		}
		if !hadUser {
			run(t, "", nil, "userdel", "weft")
			run(t, "", nil, "groupdel", "weft")
		}
	})

	t.Logf("dpkg -i:\n%s", mustDpkg(t, "dpkg", "-i", deb))

	fileIs(t, "/usr/bin/weft", false, 0o755, "root", "root")
	fileIs(t, "/usr/lib/systemd/system/weft.service", false, 0o644, "root", "root")
	fileIs(t, "/usr/lib/sysusers.d/weft.conf", false, 0o644, "root", "root")
	fileIs(t, "/usr/lib/tmpfiles.d/weft.conf", false, 0o644, "root", "root")
	fileIs(t, "/etc/weft", true, 0o750, "root", "weft")
	fileIs(t, "/etc/weft/weft.hcl", false, 0o640, "root", "weft")
	fileIs(t, "/var/lib/weft", true, 0o700, "weft", "weft")
	fileIs(t, "/run/weft", true, 0o750, "weft", "weft")
	for _, f := range [][2]string{
		{"/usr/lib/systemd/system/weft.service", "packaging/weft.service"},
		{"/etc/weft/weft.hcl", "packaging/weft.hcl"},
	} {
		if readFile(t, f[0]) != readFile(t, filepath.Join(root, f[1])) {
			t.Errorf("%s differs from %s", f[0], f[1])
		}
	}
	if u, err := user.Lookup("weft"); err != nil || u.HomeDir != "/var/lib/weft" {
		t.Errorf("user weft: %+v, %v; want home /var/lib/weft", u, err)
	}
	conffiles := mustDpkg(t, "dpkg-query", "-W", "-f=${Conffiles}", "weft")
	if !strings.Contains(conffiles, "/etc/weft/weft.hcl ") {
		t.Errorf("/etc/weft/weft.hcl is not a conffile: %q", conffiles)
	}
	out := mustRun(t, "", nil, "/usr/bin/weft", "version")
	t.Logf("weft version: %s", strings.TrimSpace(out))
	if !strings.Contains(out, testVersion) {
		t.Errorf("weft version = %q, want %s", out, testVersion)
	}
	// The agent's user can read its config through the group.
	if _, err := exec.LookPath("runuser"); err == nil {
		out := mustRun(t, "", nil, "runuser", "-u", "weft", "--", "/usr/bin/weft", "validate", "/etc/weft")
		if strings.TrimSpace(out) != "configuration is valid" {
			t.Errorf("weft validate /etc/weft as weft: %q", out)
		}
	}
	const wants = "/etc/systemd/system/multi-user.target.wants/weft.service"
	_, haveSystemctl := exec.LookPath("systemctl")
	if haveSystemctl == nil && !exists(wants) {
		t.Errorf("weft.service is not enabled (no %s)", wants)
	}

	// An upgrade keeps the operator's config and the operator's choice to
	// disable the unit.
	edited := strings.Replace(readFile(t, "/etc/weft/weft.hcl"), `log_level = "info"`, `log_level = "debug"`, 1)
	if err := os.WriteFile("/etc/weft/weft.hcl", []byte(edited), 0o640); err != nil {
		t.Fatal(err)
	}
	if haveSystemctl == nil {
		mustRun(t, "", nil, "systemctl", "disable", "weft.service")
	}
	// The same binary under a new package version: build.sh warns that the
	// binary says 0.0.1, which is expected here.
	build("0.0.2-pkgtest", "deb")
	debs, _ = filepath.Glob(filepath.Join(dist, "weft_0.0.2*.deb"))
	if len(debs) != 1 {
		t.Fatalf("upgrade debs: %v", debs)
	}
	t.Logf("dpkg -i (upgrade):\n%s", mustDpkg(t, "dpkg", "-i", "--force-confold", debs[0]))
	if v := mustDpkg(t, "dpkg-query", "-W", "-f=${Version}", "weft"); !strings.HasPrefix(v, "0.0.2") {
		t.Errorf("installed version after upgrade: %s", v)
	}
	if readFile(t, "/etc/weft/weft.hcl") != edited {
		t.Errorf("the upgrade replaced the edited /etc/weft/weft.hcl")
	}
	if haveSystemctl == nil && exists(wants) {
		t.Errorf("the upgrade enabled weft.service again after the operator disabled it")
	}

	// Remove keeps the config (and the data); purge takes both.
	// prerm runs weft agent -cleanup (with the edited, valid config).
	out = mustDpkg(t, "dpkg", "-r", "weft")
	t.Logf("dpkg -r:\n%s", out)
	if strings.Contains(out, "cleanup failed") {
		t.Errorf("dpkg -r: weft agent -cleanup failed")
	}
	if exists("/usr/bin/weft") || exists("/usr/lib/systemd/system/weft.service") {
		t.Errorf("dpkg -r left the binary or the unit")
	}
	if !exists("/etc/weft/weft.hcl") {
		t.Errorf("dpkg -r removed the conffile /etc/weft/weft.hcl")
	}
	t.Logf("dpkg --purge:\n%s", mustDpkg(t, "dpkg", "--purge", "weft"))
	for _, p := range []string{"/etc/weft", "/var/lib/weft", wants} {
		if exists(p) {
			t.Errorf("dpkg --purge left %s", p)
		}
	}
}
