package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
)

func init() {
	register("completion", "print a shell completion script: weft completion bash|zsh", runCompletion)
}

// subcommands are the second words of the commands that have them; the
// completion scripts are generated from these and the command table, so
// they never drift from the CLI.
var subcommands = map[string][]string{
	"policy": {"validate", "plan", "apply", "show", "explain"},
	"token":  {"create"},
	"node":   {"list", "remove"},
	"dns":    {"query"},
}

func runCompletion(args []string, stdout, stderr io.Writer) error {
	if len(args) != 1 {
		return fmt.Errorf("completion: usage: weft completion bash|zsh\n  bash: source <(weft completion bash)\n  zsh:  weft completion zsh > \"${fpath[1]}/_weft\"")
	}
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	switch args[0] {
	case "bash":
		fmt.Fprint(stdout, bashCompletion(names))
	case "zsh":
		fmt.Fprint(stdout, zshCompletion(names))
	default:
		return fmt.Errorf("completion: unknown shell %q (bash or zsh)", args[0])
	}
	return nil
}

func bashCompletion(names []string) string {
	var b strings.Builder
	b.WriteString("# bash completion for weft; source <(weft completion bash)\n_weft() {\n")
	b.WriteString("  local cur=${COMP_WORDS[COMP_CWORD]}\n")
	b.WriteString("  if [ \"$COMP_CWORD\" -eq 1 ]; then\n")
	fmt.Fprintf(&b, "    COMPREPLY=($(compgen -W %q -- \"$cur\")); return\n  fi\n", strings.Join(names, " "))
	b.WriteString("  case \"${COMP_WORDS[1]}\" in\n")
	for _, cmd := range sortedKeys(subcommands) {
		fmt.Fprintf(&b, "    %s)\n      if [ \"$COMP_CWORD\" -eq 2 ]; then COMPREPLY=($(compgen -W %q -- \"$cur\")); return; fi ;;\n", cmd, strings.Join(subcommands[cmd], " "))
	}
	b.WriteString("  esac\n  COMPREPLY=($(compgen -f -- \"$cur\"))\n}\ncomplete -F _weft weft\n")
	return b.String()
}

func zshCompletion(names []string) string {
	var b strings.Builder
	b.WriteString("#compdef weft\n# zsh completion for weft; weft completion zsh > \"${fpath[1]}/_weft\"\n_weft() {\n  local -a cmds\n  cmds=(\n")
	for _, n := range names {
		fmt.Fprintf(&b, "    %q\n", n+":"+strings.ReplaceAll(commands[n].summary, ":", "\\:"))
	}
	b.WriteString("  )\n  if (( CURRENT == 2 )); then\n    _describe 'command' cmds\n    return\n  fi\n  case ${words[2]} in\n")
	for _, cmd := range sortedKeys(subcommands) {
		fmt.Fprintf(&b, "    %s) (( CURRENT == 3 )) && _values 'subcommand' %s && return ;;\n", cmd, strings.Join(subcommands[cmd], " "))
	}
	b.WriteString("  esac\n  _files\n}\n_weft \"$@\"\n")
	return b.String()
}

func sortedKeys(m map[string][]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
