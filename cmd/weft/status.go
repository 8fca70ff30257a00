package main

import (
	"fmt"
	"io"
)

func init() {
	register("status", "show this agent: role, leader, raft peers, state index, health", runStatus)
}

func runStatus(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("status", stderr)
	var f apiFlags
	f.register(fs, true)
	if err := parse(fs, args); err != nil {
		return err
	}
	ctx, cancel := callCtx()
	defer cancel()
	s, err := f.client().Status(ctx)
	if err != nil {
		return err
	}
	if f.json {
		return printJSON(stdout, s)
	}
	fmt.Fprintf(stdout, "node:        %s (%s)\ndomain:      %s\njoined:      %v\nleader:      %s\n", s.Node, s.Role, s.Domain, s.Joined, dash(s.Leader))
	if s.RaftState != "" {
		fmt.Fprintf(stdout, "raft state:  %s\n", s.RaftState)
	}
	fmt.Fprintf(stdout, "state index: %d\nready:       %v\nversion:     %s\n", s.StateIndex, s.Ready, s.Version)
	if len(s.RaftPeers) > 0 {
		fmt.Fprintln(stdout, "\nraft peers:")
		rows := [][]any{}
		for _, p := range s.RaftPeers {
			rows = append(rows, []any{p.ID, p.Address, p.Voter})
		}
		if err := table(stdout, []any{"ID", "ADDRESS", "VOTER"}, rows); err != nil {
			return err
		}
	}
	fmt.Fprintln(stdout, "\nchecks:")
	rows := [][]any{}
	for _, c := range s.Checks {
		rows = append(rows, []any{c.Name, okWord(c.OK), dash(c.Reason)})
	}
	return table(stdout, []any{"CHECK", "STATUS", "REASON"}, rows)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func okWord(ok bool) string {
	if ok {
		return "ok"
	}
	return "failing"
}
