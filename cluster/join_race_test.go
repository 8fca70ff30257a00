package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestJoinStateWatcherCanCallServers: whoever watches a client's state
// (the agent's dataplane) may call the servers as soon as a state
// arrives, here RegisterSegmentKey on the first state Join brings. It once
// panicked: Join published the state before the RPC client existed (found
// by the hardening tests; fixed in f0f3b58 by publishing from
// startJoined). A regression test, with the watcher racing the join.
func TestJoinStateWatcherCanCallServers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster on loopback")
	}
	h := newHarness(t, 60*time.Second)
	ctx := h.ctx
	s1o := h.options(t, "s1", 1, true, true)
	s1o.Tags = []string{"t"}
	s1 := h.start(t, s1o)
	if _, err := s1.ApplyPolicy(ctx, "p.hcl", metaPolicy, "test"); err != nil {
		t.Fatal(err)
	}
	tok, err := s1.CreateToken(ctx, TokenRequest{TTL: time.Hour, Uses: 1})
	if err != nil {
		t.Fatal(err)
	}
	c1o := h.options(t, "c1", 3, false, false)
	c1o.Tags = []string{"t"}
	c1 := h.start(t, c1o)
	watched := make(chan error, 1)
	go func() {
		defer func() {
			if r := recover(); r != nil {
				watched <- fmt.Errorf("the state watcher panicked: %v", r)
			}
		}()
		wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		st := c1.WaitState(wctx, 0)
		if st.Index == 0 {
			watched <- fmt.Errorf("no state arrived")
			return
		}
		rctx, cancel2 := context.WithTimeout(ctx, 10*time.Second)
		defer cancel2()
		watched <- c1.RegisterSegmentKey(rctx, "web", metaKeys["web"])
	}()
	if err := c1.Join(ctx, tok.Token, []string{rpcAddr(s1o)}); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-watched:
		if err != nil {
			t.Fatalf("RegisterSegmentKey on the first state: %v", err)
		}
	case <-ctx.Done():
		t.Fatal("the watcher never finished")
	}
}
