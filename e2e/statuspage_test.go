package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestStatusPageInNamespace: the status page of an agent in a namespace
// cluster, loaded by headless Chromium inside that namespace, shows every
// member and an allowed edge of the reachability graph. The screenshot is
// kept in $WEFT_ARTIFACTS.
func TestStatusPageInNamespace(t *testing.T) {
	needNetns(t)
	t.Parallel()
	const chromium = "/usr/bin/chromium"
	if _, err := os.Stat(chromium); err != nil {
		if required {
			t.Fatalf("chromium is required (%s=1): %v", envRequired, err)
		}
		t.Skipf("no chromium: %v", err)
	}
	b := NewBed(t, "s1", "web1", "db1")
	servers, clients := b.Select("s1"), b.Select("web1", "db1")
	tags := map[string][]string{"s1": {"ops"}, "web1": {"web"}, "db1": {"postgres"}}
	f := formTaggedCluster(t, servers, clients, tags)

	// metrics { listen } needs a restart: web1 comes back with its identity.
	web1 := b.Host("web1")
	web1.Stop(t)
	web1.WriteConfig(web1.ConfigHCL(AgentConfig{Tags: tags["web1"], Token: f.tokens["web1"], JoinVia: servers,
		Extra: "metrics {\n  listen = \"127.0.0.1:9436\"\n}\n"}))
	web1.Start(t)
	applyPolicy(t, b.Host("s1"), "page.hcl", `
segment "web" {
  cidr    = "10.90.1.0/24"
  port    = 51821
  members = ["tag:web"]
}
segment "db" {
  cidr    = "10.90.2.0/24"
  port    = 51822
  members = ["tag:postgres"]
}
rule "web-to-db" {
  action = "allow"
  from   = ["segment:web"]
  to     = ["segment:db"]
  ports  = ["tcp/5432"]
}
`)
	Eventually(t, 30*time.Second, func() (bool, string) {
		out, err := web1.Exec("ip", "-br", "link", "show", "wf-db")
		return err == nil, out
	})

	dir := os.Getenv("WEFT_ARTIFACTS")
	if dir == "" {
		dir = t.TempDir()
	}
	profile := t.TempDir()
	run := func(args ...string) string {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		full := append([]string{"netns", "exec", web1.NS, chromium, "--headless", "--no-sandbox", "--disable-gpu",
			"--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update",
			"--disable-sync", "--user-data-dir=" + profile, "--virtual-time-budget=6000"}, args...)
		cmd := exec.CommandContext(ctx, "ip", full...)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("chromium %v: %v", args, err)
		}
		return string(out)
	}
	var dom string
	Eventually(t, 60*time.Second, func() (bool, string) {
		dom = run("--dump-dom", "http://127.0.0.1:9436/")
		for _, want := range []string{"s1", "web1", "db1", "alive", "web-to-db", "<svg"} {
			if !strings.Contains(dom, want) {
				return false, "the page lacks " + want
			}
		}
		return true, ""
	})
	shot := filepath.Join(dir, "statuspage-namespace.png")
	run("--screenshot="+shot, "--window-size=1280,900", "http://127.0.0.1:9436/")
	if st, err := os.Stat(shot); err != nil || st.Size() == 0 {
		t.Fatalf("no screenshot at %s: %v", shot, err)
	}
	t.Logf("status page screenshot: %s", shot)
}
