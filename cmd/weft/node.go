package main

import (
	"fmt"
	"io"
	"strings"
)

func init() {
	register("node", "the node registry: weft node list | weft node remove NAME", runNode)
}

func runNode(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("node: usage: weft node list [-json] | weft node remove NAME")
	}
	fs := newFlags("node "+args[0], stderr)
	var f apiFlags
	switch args[0] {
	case "list":
		f.register(fs, true)
		if err := parse(fs, args[1:]); err != nil {
			return err
		}
		ctx, cancel := callCtx()
		defer cancel()
		nodes, err := f.client().Nodes(ctx)
		if err != nil {
			return err
		}
		if f.json {
			return printJSON(stdout, nodes)
		}
		rows := [][]any{}
		for _, n := range nodes {
			rows = append(rows, []any{n.Name, n.Role, n.Addr, strings.Join(n.Tags, ","), n.RegisteredIndex})
		}
		return table(stdout, []any{"NAME", "ROLE", "ADDRESS", "TAGS", "REGISTERED"}, rows)
	case "remove":
		f.register(fs, false)
		if err := parse(fs, args[1:]); err != nil {
			return err
		}
		if fs.NArg() != 1 {
			return fmt.Errorf("node remove: give exactly one node name")
		}
		ctx, cancel := callCtx()
		defer cancel()
		if err := f.client().RemoveNode(ctx, fs.Arg(0)); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "removed %s\n", fs.Arg(0))
		return nil
	}
	return fmt.Errorf("node: unknown subcommand %q", args[0])
}
