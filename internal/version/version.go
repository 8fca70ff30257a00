// Package version holds the version of the weft binary, set at link time
// with -ldflags "-X github.com/weft-mesh/weft/internal/version.Version=...".
// It must stay free of dependencies: the CLI and the agent both import it.
package version

// Version is the release of this build.
var Version = "0.1.0-dev"
