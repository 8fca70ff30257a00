package cluster

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// t0 is the injected "now" of the pure tests.
var t0 = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

// errAny in a table means "some error, no particular sentinel".
var errAny = errors.New("any error")

func checkErr(t testing.TB, err, want error) {
	t.Helper()
	switch {
	case want == nil && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want == nil:
	case err == nil:
		t.Fatalf("no error, want %v", want)
	case want != errAny && !errors.Is(err, want):
		t.Fatalf("error %q does not wrap %q", err, want)
	}
}

// waitFor polls cond until it holds or timeout passes, and then fails with
// what cond last saw. It never sleeps blindly: each poll is a fresh look.
func waitFor(t testing.TB, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(25 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, seen := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v; last seen: %s", timeout, seen)
		}
		<-tick.C
	}
}

// testLog is a slog sink that forwards to t.Log while the test runs and
// keeps everything, so that a test can grep the logs for secrets.
type testLog struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
	buf  bytes.Buffer
}

// newTestLog returns a log that stops forwarding to t once the test's
// cleanups have run (late goroutines must not call t.Log then).
func newTestLog(t testing.TB) *testLog {
	l := &testLog{t: t}
	t.Cleanup(func() {
		l.mu.Lock()
		l.done = true
		l.mu.Unlock()
	})
	return l
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.buf.Write(p)
	if !l.done {
		l.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func (l *testLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *testLog) logger(name string) *slog.Logger {
	h := slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug})
	return slog.New(h).With("agent", name)
}
