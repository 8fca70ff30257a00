#!/bin/sh
# Builds the weft packages: what `make package` runs.
#
#   packaging/build.sh [deb] [rpm]        (default: both)
#
# Environment (all optional):
#   WEFT_BIN   the binary to package (default bin/weft); built static with
#              the version linked in when it is missing or was built with cgo
#   VERSION    the version (default: git describe, as the Makefile does)
#   DIST       output directory (default dist)
#   GO         the go command (default go)
#
# The package version is VERSION without a leading "v" when it is a release
# version (1.2.3, v1.2.3-rc1); otherwise (an untagged commit) it is the
# binary's built-in base version with the commit as build metadata, e.g.
# 0.1.0~dev+3431733.dirty, which sorts before the release 0.1.0.
set -eu

NFPM=github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"

GO=${GO:-go}
DIST=${DIST:-dist}
WEFT_BIN=${WEFT_BIN:-bin/weft}
VERSION=${VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
formats=${*:-deb rpm}

# The packaged binary must be static: a cgo build needs the glibc of the
# build host or newer, which an rpm for older distributions cannot promise.
build=no
if [ ! -e "$WEFT_BIN" ]; then
	build=yes
elif ! "$GO" version -m "$WEFT_BIN" 2>/dev/null | grep -q 'CGO_ENABLED=0'; then
	echo "build.sh: $WEFT_BIN is not a static (CGO_ENABLED=0) build; rebuilding it"
	build=yes
fi
if [ "$build" = yes ]; then
	echo "build.sh: building $WEFT_BIN (version $VERSION)"
	mkdir -p "$(dirname "$WEFT_BIN")"
	CGO_ENABLED=0 "$GO" build -trimpath \
		-ldflags "-X github.com/weft-mesh/weft/internal/version.Version=$VERSION" \
		-o "$WEFT_BIN" ./cmd/weft
elif ! "$WEFT_BIN" version 2>/dev/null | grep -qF " $VERSION "; then
	echo "build.sh: warning: $WEFT_BIN does not say it is version $VERSION" >&2
fi

if printf '%s\n' "$VERSION" | grep -Eq '^v?[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.]+)?$'; then
	pkg_version=${VERSION#v}
else
	base=$(sed -n 's/^var Version = "\([0-9][0-9.]*\).*"$/\1/p' internal/version/version.go)
	meta=$(printf '%s' "$VERSION" | tr -c '0-9A-Za-z\n' '.')
	pkg_version="${base:-0.0.0}-dev+${meta}"
fi

WEFT_ARCH=${WEFT_ARCH:-$("$GO" env GOARCH)}
export WEFT_BIN WEFT_ARCH
WEFT_PKG_VERSION=$pkg_version
export WEFT_PKG_VERSION

mkdir -p "$DIST"
for f in $formats; do
	"$GO" run "$NFPM" package -f packaging/nfpm.yaml -p "$f" -t "$DIST/"
done
