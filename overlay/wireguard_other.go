//go:build !linux

package overlay

import (
	"errors"
	"log/slog"
)

func newWireGuard(*slog.Logger) (WireGuard, error) {
	return nil, errors.New("overlay: WireGuard is only supported on Linux")
}
