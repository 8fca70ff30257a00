package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// newLogger builds the agent's logger. The level lives in a LevelVar so
// that a reload can change it.
func newLogger(w io.Writer, format string, level *slog.LevelVar) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// raftLogger adapts hashicorp/raft's hclog output to slog, once, here:
// hclog writes JSON lines that are re-emitted as slog records with the
// same attribute names as the rest of weft.
func raftLogger(l *slog.Logger) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{
		Name:       "raft",
		Level:      hclog.Debug,
		JSONFormat: true,
		Output:     &hclogWriter{log: l.With("subsystem", "raft")},
	})
}

type hclogWriter struct{ log *slog.Logger }

func (w *hclogWriter) Write(p []byte) (int, error) {
	for _, line := range bytes.Split(p, []byte("\n")) {
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		var rec map[string]any
		if err := json.Unmarshal(line, &rec); err != nil {
			w.log.Info(string(line))
			continue
		}
		level := hclogLevel(rec["@level"])
		msg, _ := rec["@message"].(string)
		attrs := make([]slog.Attr, 0, len(rec))
		for k, v := range rec {
			if strings.HasPrefix(k, "@") {
				continue
			}
			switch k {
			case "error":
				k = "err"
			case "node", "peer", "addr", "index", "subsystem":
				k = "raft_" + k // keep weft's own attribute names unambiguous
			}
			attrs = append(attrs, slog.Any(k, v))
		}
		w.log.LogAttrs(context.Background(), level, msg, attrs...)
	}
	return len(p), nil
}

func hclogLevel(v any) slog.Level {
	switch v {
	case "trace", "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// gossipLogWriter adapts memberlist's log.Logger lines ("[WARN] memberlist:
// ...") to slog.
type gossipLogWriter struct{ log *slog.Logger }

func newGossipLogWriter(l *slog.Logger) io.Writer {
	return &gossipLogWriter{log: l.With("subsystem", "gossip")}
}

func (w *gossipLogWriter) Write(p []byte) (int, error) {
	for _, line := range strings.Split(string(p), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		level := slog.LevelInfo
		for prefix, l := range map[string]slog.Level{"[DEBUG]": slog.LevelDebug, "[INFO]": slog.LevelInfo, "[WARN]": slog.LevelWarn, "[ERR]": slog.LevelError, "[ERROR]": slog.LevelError} {
			if strings.HasPrefix(line, prefix) {
				level = l
				line = strings.TrimSpace(strings.TrimPrefix(line, prefix))
				break
			}
		}
		line = strings.TrimPrefix(line, "memberlist: ")
		w.log.Log(context.Background(), level, line)
	}
	return len(p), nil
}
