package main

import (
	"context"
	"fmt"
	"io"
	"time"

	"github.com/weft-mesh/weft/client"
)

func init() {
	register("join", "join this agent to a cluster: weft join -token T ADDR...", runJoin)
}

func runJoin(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("join", stderr)
	var f apiFlags
	f.register(fs, false)
	token := fs.String("token", "", "the join token (from weft token create on a server)")
	if err := parse(fs, args); err != nil {
		return err
	}
	if *token == "" {
		return fmt.Errorf("join: -token is required")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	if err := f.client().Join(ctx, client.JoinRequest{Token: *token, Addresses: fs.Args()}); err != nil {
		return err
	}
	fmt.Fprintln(stdout, "joined")
	return nil
}
