package main

import (
	"fmt"
	"io"
	"time"

	"github.com/weft-mesh/weft/client"
)

func init() {
	register("token", "create join tokens (weft token create)", runToken)
}

func runToken(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "create" {
		return fmt.Errorf("token: usage: weft token create [-server] [-ttl 1h] [-uses 1] [-json]")
	}
	fs := newFlags("token create", stderr)
	var f apiFlags
	f.register(fs, true)
	server := fs.Bool("server", false, "the token joins a server (default: a client)")
	ttl := fs.Duration("ttl", time.Hour, "how long the token stays valid")
	uses := fs.Int("uses", 1, "how many hosts may join with it")
	if err := parse(fs, args[1:]); err != nil {
		return err
	}
	ctx, cancel := callCtx()
	defer cancel()
	tok, err := f.client().CreateToken(ctx, client.TokenRequest{Server: *server, TTL: ttl.String(), Uses: *uses})
	if err != nil {
		return err
	}
	if f.json {
		return printJSON(stdout, tok)
	}
	fmt.Fprintln(stdout, tok.Token)
	return nil
}
