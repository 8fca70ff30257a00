#!/bin/sh
# weft postinstall (deb postinst, rpm %post).
#   deb: "configure" [previously configured version; empty on a first install]
#   rpm: 1 on a first install, 2 or more on an upgrade
# Creates the user and directories, enables weft.service on a first install,
# and never starts or restarts it: the operator starts it once
# /etc/weft/weft.hcl says what this host is (see packaging/README.md).
set -e

first_install=no
case "$1" in
configure) [ -z "$2" ] && first_install=yes ;;
1) first_install=yes ;;
[0-9]*) ;;
*) exit 0 ;; # abort-upgrade, abort-remove, ...: nothing to redo
esac

if command -v systemd-sysusers >/dev/null 2>&1; then
	systemd-sysusers /usr/lib/sysusers.d/weft.conf
fi
if command -v systemd-tmpfiles >/dev/null 2>&1; then
	systemd-tmpfiles --create /usr/lib/tmpfiles.d/weft.conf
else
	install -d -m 0700 -o weft -g weft /var/lib/weft
fi

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi
# On an upgrade the operator's choice (enabled or not) stays as it is. A
# deb reinstalled after "remove" finds its enablement link still there
# (it is removed on purge), so it comes back enabled too. systemctl enable
# works without a running systemd (image builds, chroots).
if [ "$first_install" = yes ] && command -v systemctl >/dev/null 2>&1; then
	systemctl enable weft.service >/dev/null 2>&1 ||
		echo "weft: could not enable weft.service; run: systemctl enable weft.service" >&2
fi
if [ "$first_install" = yes ]; then
	echo "weft: edit /etc/weft/weft.hcl, then: systemctl start weft.service"
fi
exit 0
