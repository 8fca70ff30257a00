package main

import (
	"io"
	"strings"
)

func init() {
	register("members", "list the hosts of the cluster", runMembers)
}

func runMembers(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("members", stderr)
	var f apiFlags
	f.register(fs, true)
	if err := parse(fs, args); err != nil {
		return err
	}
	ctx, cancel := callCtx()
	defer cancel()
	members, err := f.client().Members(ctx)
	if err != nil {
		return err
	}
	if f.json {
		return printJSON(stdout, members)
	}
	rows := make([][]any, 0, len(members))
	for _, m := range members {
		rows = append(rows, []any{m.Name, m.Addr, m.Role, m.Status, m.StateIndex, m.PolicyVersion, strings.Join(m.Tags, ",")})
	}
	return table(stdout, []any{"NAME", "ADDRESS", "ROLE", "STATUS", "STATE", "POLICY", "TAGS"}, rows)
}
