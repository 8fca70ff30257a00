package cluster

import (
	"bytes"
	"log"
	"log/slog"

	"github.com/weft-mesh/weft/internal/atomicfile"
)

// slogErrorLog routes net/http's error log (handshake failures of
// strangers, mostly) to slog at debug level.
func slogErrorLog(l *slog.Logger) *log.Logger {
	return log.New(slogWriter{l}, "", 0)
}

type slogWriter struct{ l *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.l.Debug("rpc server", "detail", string(bytes.TrimSpace(p)))
	return len(p), nil
}

func ensureDir(dir string) error { return atomicfile.EnsureDir(dir, 0o700) }
