package overlay

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// requireNetns skips a test that needs root and network namespaces, or
// fails it when WEFT_E2E_REQUIRED=1 (CI), so CI cannot pass without it.
func requireNetns(t *testing.T, tools ...string) {
	t.Helper()
	why := ""
	if os.Geteuid() != 0 {
		why = "not root"
	}
	for _, tool := range append([]string{"ip", "nft"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil && why == "" {
			why = tool + " not installed"
		}
	}
	if why == "" {
		return
	}
	if os.Getenv("WEFT_E2E_REQUIRED") == "1" {
		t.Fatalf("namespace test required (WEFT_E2E_REQUIRED=1) but cannot run: %s", why)
	}
	t.Skipf("namespace test skipped: %s", why)
}

// newNetns makes a network namespace with a name unique to this process
// and deletes it when the test ends, failed or not.
func newNetns(t *testing.T, tag string) string {
	t.Helper()
	name := fmt.Sprintf("wfov%d%s", os.Getpid(), tag)
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if out, err := exec.CommandContext(ctx, "ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	run(t, "ip", "-n", name, "link", "set", "lo", "up")
	return name
}

// run runs a command with a time bound and fails the test on error.
func run(t *testing.T, args ...string) string {
	t.Helper()
	out, err := tryRun(args...)
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func tryRun(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, args[0], args[1:]...).CombinedOutput()
	return string(out), err
}
