// Package agent is weft's composition root: it builds every subsystem from
// a config.Runtime, starts, reloads (SIGHUP) and stops them, serves the
// admin API on the unix socket, and adapts the libraries' loggers to slog
// once. Leaf packages never import it.
//
// It must not hold logic of its own beyond wiring: membership lives in
// cluster, identities in identity, configuration in config.
package agent
