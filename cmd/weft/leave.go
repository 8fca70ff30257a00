package main

import (
	"context"
	"fmt"
	"io"
	"time"
)

func init() {
	register("leave", "leave the cluster gracefully; the agent exits", runLeave)
}

func runLeave(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("leave", stderr)
	var f apiFlags
	f.register(fs, false)
	if err := parse(fs, args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := f.client().Leave(ctx); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "left the cluster")
	return nil
}
