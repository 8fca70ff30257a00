package agent

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/weft-mesh/weft/config"
)

// Reproductions of bugs found while hardening, reported and not fixed in
// this change (agent/ is not ours to change). They are skipped unless
// WEFT_KNOWN_BUGS=1; remove the skip with the fix.
func knownBug(t *testing.T, what string) {
	t.Helper()
	if os.Getenv("WEFT_KNOWN_BUGS") == "" {
		t.Skip("known bug, reported: " + what + " (WEFT_KNOWN_BUGS=1 runs it)")
	}
}

// TestKnownBugCallerMistakesAre500: two requests that are the caller's
// mistake get 500, which says "the agent is broken": DELETE
// /v1/nodes/<itself> (cluster.RemoveNode returns a plain error that
// statusFor does not know), and POST /v1/join with a well-formed token and
// no address anywhere (cluster.Join's "no server address given", also a
// plain error). Want 409 and 400.
func TestCallerMistakesAre4xx(t *testing.T) { // was a known bug; fixed with cluster.ErrInvalid
	dir := t.TempDir()
	rt := config.Dev(dir)
	rt.NodeName = "dev"
	a, err := New(Options{Runtime: rt, LogOutput: io.Discard, Backends: fakeBackends()})
	if err != nil {
		t.Fatal(err)
	}
	h := a.apiHandler()
	tok := "weft1." + strings.Repeat("ab", 32) + ".0123456789abcdef." + strings.Repeat("s", 43)
	for _, tc := range []struct {
		method, path, body string
		want               int
	}{
		{"DELETE", "/v1/nodes/dev", "", http.StatusBadRequest},
		{"POST", "/v1/join", `{"token": "` + tok + `"}`, http.StatusBadRequest},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, strings.NewReader(tc.body)))
		if rec.Code != tc.want {
			t.Errorf("%s %s: %d %s, want %d", tc.method, tc.path, rec.Code, strings.TrimSpace(rec.Body.String()), tc.want)
		}
	}
}
