// Package packaging holds no Go code: it owns how weft is installed on a
// host. The files beside this one are the systemd unit (weft.service), the
// sysusers.d and tmpfiles.d entries, the default /etc/weft/weft.hcl, the
// nfpm config and maintainer scripts of the deb and rpm, and build.sh,
// which `make package` runs. README.md says what goes where and why.
//
// Its tests check those files against the real tools: systemd-analyze
// verifies the unit, `weft validate` the default config, and (as root) the
// deb is built, installed with dpkg, upgraded, removed and purged. Nothing
// here may be imported; weft's code must not depend on how it is packaged.
package packaging
