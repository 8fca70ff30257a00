package main

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestHelpMatchesREADME: every command weft has is in the README's
// command table, and every command the README names exists.
func TestHelpMatchesREADME(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if code := run([]string{"help"}, &out, &out); code != 0 {
		t.Fatalf("weft help exited %d", code)
	}
	for name := range commands {
		if name == "completion" || name == "help" {
			continue
		}
		if !strings.Contains(string(readme), "`weft "+name) {
			t.Errorf("README.md does not mention `weft %s`", name)
		}
		if !strings.Contains(out.String(), "  "+name) {
			t.Errorf("weft help does not list %s", name)
		}
	}
	for _, line := range strings.Split(string(readme), "\n") {
		i := strings.Index(line, "`weft ")
		if i < 0 {
			continue
		}
		word := strings.Fields(line[i+len("`weft "):])[0]
		word = strings.TrimRight(strings.Trim(word, "`|\\"), "`,.)")
		if _, ok := commands[word]; !ok && word != "" && !strings.HasPrefix(word, "-") {
			t.Errorf("README.md names `weft %s`, which does not exist", word)
		}
	}
}

// TestCompletionScripts: the generated scripts name every command and
// parse in their shells.
func TestCompletionScripts(t *testing.T) {
	for _, shell := range []string{"bash", "zsh"} {
		var out, errOut bytes.Buffer
		if code := run([]string{"completion", shell}, &out, &errOut); code != 0 {
			t.Fatalf("completion %s: exit %d: %s", shell, code, errOut.String())
		}
		for name := range commands {
			if !strings.Contains(out.String(), name) {
				t.Errorf("%s completion lacks %s", shell, name)
			}
		}
		if path, err := exec.LookPath(shell); err == nil {
			cmd := exec.Command(path, "-n")
			cmd.Stdin = strings.NewReader(out.String())
			if b, err := cmd.CombinedOutput(); err != nil {
				t.Errorf("%s -n rejects the script: %v\n%s", shell, err, b)
			}
		}
	}
	if code := run([]string{"completion", "fish"}, &bytes.Buffer{}, &bytes.Buffer{}); code != 1 {
		t.Errorf("completion fish exited %d, want 1", code)
	}
}

// TestFlagsAnywhere: flags after positional arguments are flags.
func TestFlagsAnywhere(t *testing.T) {
	for _, tc := range []struct {
		args []string
		json bool
		pos  []string
	}{
		{[]string{"name", "-json"}, true, []string{"name"}},
		{[]string{"-json", "name", "A"}, true, []string{"name", "A"}},
		{[]string{"name", "A"}, false, []string{"name", "A"}},
		{[]string{"name", "--", "-json"}, false, []string{"name", "-json"}},
	} {
		fs := newFlags("t", &bytes.Buffer{})
		j := fs.Bool("json", false, "")
		if err := parse(fs, tc.args); err != nil {
			t.Fatalf("%v: %v", tc.args, err)
		}
		if *j != tc.json || strings.Join(fs.Args(), " ") != strings.Join(tc.pos, " ") {
			t.Errorf("%v: json=%v args=%v; want %v %v", tc.args, *j, fs.Args(), tc.json, tc.pos)
		}
	}
}
