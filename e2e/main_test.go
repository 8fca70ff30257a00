// Package e2e holds weft's multi-host tests: it builds the real weft binary
// once, makes a test bed of network namespaces joined by a bridge (one
// namespace per host), runs one agent per host and drives it through the CLI,
// the same way an operator would. It owns no production code and must never
// touch the root network namespace beyond creating and deleting its own
// namespaces: no address, route or firewall rule outside them.
//
// Namespace tests need root and iproute2. Without them they skip, unless
// WEFT_E2E_REQUIRED=1, in which case they fail (CI sets it so that a silently
// skipped suite cannot pass). Other knobs, all optional:
//
//	WEFT_E2E_BINARY=PATH   use a prebuilt weft instead of building ./cmd/weft
//	WEFT_E2E_FIGURES=FILE  append measured timings as "name value unit" lines
//	WEFT_E2E_KEEP=1        keep the temp dirs of a failed bed for inspection
//
// The test binary doubles as a helper program that runs inside a namespace
// (WEFT_E2E_HELPER=<name>, see helpers_test.go).
package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

const (
	envRequired = "WEFT_E2E_REQUIRED"
	envBinary   = "WEFT_E2E_BINARY"
	envFigures  = "WEFT_E2E_FIGURES"
	envKeep     = "WEFT_E2E_KEEP"
	envHelper   = "WEFT_E2E_HELPER"

	// ownerFile, in each host's temp dir, holds the pid of the test process
	// that made it.
	ownerFile = "e2e.owner"

	// nsPrefix starts every namespace this package creates; the rest of the
	// name is "<pid>b<bed>[.<host>]" so the sweeper can tell whose it is.
	nsPrefix = "wfe"
)

var (
	// netnsProblem says why namespace tests cannot run here; "" when they can.
	netnsProblem string
	// required turns skips for a missing capability into failures.
	required bool

	buildOnce sync.Once
	buildDir  string // temp dir holding the built binary, removed after the run
	weftBin   string
	buildErr  error
)

func TestMain(m *testing.M) {
	if name := os.Getenv(envHelper); name != "" {
		os.Exit(runHelper(name))
	}
	required = os.Getenv(envRequired) == "1"
	netnsProblem = probeNetns()
	if netnsProblem == "" {
		sweepStale(os.TempDir())
	}
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

func probeNetns() string {
	if uid := os.Geteuid(); uid != 0 {
		return fmt.Sprintf("namespace tests need root (euid is %d)", uid)
	}
	if _, err := exec.LookPath("ip"); err != nil {
		return "namespace tests need iproute2: `ip` not found in PATH"
	}
	return ""
}

// needNetns skips the test when namespaces are unavailable, or fails it when
// WEFT_E2E_REQUIRED=1.
func needNetns(t testing.TB) {
	t.Helper()
	if netnsProblem == "" {
		return
	}
	if required {
		t.Fatalf("%s=1 but %s", envRequired, netnsProblem)
	}
	t.Skipf("skipping: %s (set %s=1 to make this a failure)", netnsProblem, envRequired)
}

// weftBinary returns the path of the weft binary, building it on first use.
// It is built lazily rather than in TestMain so that the harness self-tests
// run (and `-run XXX` compiles) even while ./cmd/weft does not build.
func weftBinary(t testing.TB) string {
	t.Helper()
	bin, err := ensureWeft()
	if err != nil {
		t.Fatalf("weft binary: %v", err)
	}
	return bin
}

func ensureWeft() (string, error) {
	buildOnce.Do(func() {
		if p := os.Getenv(envBinary); p != "" {
			weftBin, buildErr = filepath.Abs(p)
			return
		}
		dir, err := os.MkdirTemp("", "weft-e2e-bin")
		if err != nil {
			buildErr = err
			return
		}
		buildDir = dir
		// go test runs the test binary in the package dir; the module root
		// is its parent.
		root, err := filepath.Abs("..")
		if err != nil {
			buildErr = err
			return
		}
		out := filepath.Join(dir, "weft")
		cmd := exec.Command("go", "build", "-o", out, "./cmd/weft")
		cmd.Dir = root
		if b, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/weft in %s: %v\n%s", root, err, b)
			return
		}
		weftBin = out
	})
	return weftBin, buildErr
}

// sweepStale deletes the namespaces and temp dirs of an earlier run of this
// package that crashed before its cleanups ran: those whose creating process
// is gone (or is no longer a test binary of this package), and kills what
// still runs in those namespaces. Temp dirs are looked for in tmpRoot. A
// concurrent live run is left alone.
func sweepStale(tmpRoot string) {
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return
	}
	self := filepath.Base(os.Args[0])
	for _, line := range strings.Split(string(out), "\n") {
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		ns := fields[0]
		pid, ok := nsOwner(ns)
		if !ok || pid == os.Getpid() || ownerAlive(pid, self) {
			continue
		}
		killNetnsPids(ns)
		exec.Command("ip", "netns", "del", ns).Run()
	}
	owners, _ := filepath.Glob(filepath.Join(tmpRoot, "wf*", ownerFile))
	for _, f := range owners {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pid == os.Getpid() || ownerAlive(pid, self) {
			continue
		}
		os.RemoveAll(filepath.Dir(f))
	}
}

// nsOwner parses the pid out of a namespace name made by nsName.
func nsOwner(ns string) (int, bool) {
	rest, ok := strings.CutPrefix(ns, nsPrefix)
	if !ok {
		return 0, false
	}
	digits, _, ok := strings.Cut(rest, "b")
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(digits)
	if err != nil || pid <= 0 {
		return 0, false
	}
	return pid, true
}

func ownerAlive(pid int, self string) bool {
	comm, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	if err != nil {
		return false
	}
	// comm is truncated to 15 bytes.
	if len(self) > 15 {
		self = self[:15]
	}
	return strings.TrimSpace(string(comm)) == self
}

// killNetnsPids SIGKILLs every process still running in the namespace; all
// of them were started by this harness.
func killNetnsPids(ns string) {
	out, err := exec.Command("ip", "netns", "pids", ns).Output()
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}
