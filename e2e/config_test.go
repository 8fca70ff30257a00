package e2e

// Scenario 5: bad configs. It runs the binary directly, outside any
// namespace, so it runs (and must pass) without root too.

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// 5. A bad config is refused before anything is created, with its position.
// No namespace needed: this runs anywhere.
func TestBadConfig(t *testing.T) {
	t.Parallel()
	bin := weftBinary(t)
	// Lines 1-4 are valid; the defect is on the line given.
	const head = "node_name = \"t1\"\ndata_dir  = %s\nsocket    = %s\nbind_addr = \"127.0.0.1\"\n"
	for _, tc := range []struct {
		name, defect string
		line         int
	}{
		{"syntax error", "server = = true\n", 5},
		{"unknown key", "bind_adr = \"127.0.0.1\"\n", 5},
		{"wrong type", "server = \"yes\"\n", 5},
		{"port out of range", "ports {\n  rpc = 70000\n}\n", 6},
		{"unknown key in block", "join {\n  addresses = [\"127.0.0.1:7947\"]\n  tokn = \"x\"\n}\n", 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			data := filepath.Join(dir, "data")
			cfg := filepath.Join(dir, "weft.hcl")
			src := fmt.Sprintf(head, hclQuote(data), hclQuote(filepath.Join(dir, "weft.sock"))) + tc.defect
			if err := os.WriteFile(cfg, []byte(src), 0o600); err != nil {
				t.Fatal(err)
			}
			pos := regexp.MustCompile(fmt.Sprintf(`weft\.hcl:%d:\d+`, tc.line))
			for _, args := range [][]string{{"agent", "-config-file", cfg}, {"validate", cfg}} {
				_, stderr, code := runWeft(t, bin, args...)
				if code != 1 {
					t.Errorf("weft %s: exit %d, want 1", args[0], code)
				}
				if !pos.MatchString(stderr) {
					t.Errorf("weft %s: stderr does not point at %s:\n%s\nconfig:\n%s", args[0], pos, stderr, src)
				}
				if _, err := os.Stat(data); !os.IsNotExist(err) {
					t.Errorf("weft %s created the data dir from a bad config (stat: %v)", args[0], err)
				}
			}
		})
	}

	t.Run("good config", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		data := filepath.Join(dir, "data")
		cfg := filepath.Join(dir, "weft.hcl")
		src := fmt.Sprintf(head, hclQuote(data), hclQuote(filepath.Join(dir, "weft.sock"))) +
			"server    = true\nbootstrap = true\ntags      = [\"web\"]\nlog_level = \"debug\"\n"
		if err := os.WriteFile(cfg, []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
		stdout, stderr, code := runWeft(t, bin, "validate", cfg)
		if code != 0 || !strings.Contains(stdout, "configuration is valid") {
			t.Errorf("validate: exit %d, stdout %q, stderr %q; want 0 and \"configuration is valid\"", code, stdout, stderr)
		}
		if _, err := os.Stat(data); !os.IsNotExist(err) {
			t.Errorf("validate created the data dir (stat: %v)", err)
		}
	})
}

// runWeft runs the binary outside any namespace. An agent that starts
// despite a bad config is killed at the deadline and reported.
func runWeft(t *testing.T, bin string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Errorf("weft %s still running after 15s", strings.Join(args, " "))
	}
	return o.String(), e.String(), cmd.ProcessState.ExitCode()
}
