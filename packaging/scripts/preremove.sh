#!/bin/sh
# weft preremove (deb prerm, rpm %preun).
#   deb: "remove" | "upgrade" NEW | "deconfigure" | "failed-upgrade" OLD
#   rpm: 0 on an erase, 1 when an upgrade removes the old version
# Only a removal stops the agent and removes its interfaces and firewall
# table. An upgrade leaves everything running: fail static.
set -e

case "$1" in
remove | 0) ;;
*) exit 0 ;;
esac

if [ -d /run/systemd/system ]; then
	systemctl stop weft.service >/dev/null 2>&1 || true
fi
# rpm has no purge: disable now. A deb keeps its enablement link until
# purge, as Debian does, so that a reinstall comes back enabled.
if [ "$1" = 0 ] && command -v systemctl >/dev/null 2>&1; then
	systemctl disable weft.service >/dev/null 2>&1 || true
fi

# Best effort: the agent is stopped, so nothing recreates what this removes.
# It does not leave the cluster (run `weft leave` before removing for that).
if [ -x /usr/bin/weft ] && ls /etc/weft/*.hcl >/dev/null 2>&1; then
	if ! out=$(/usr/bin/weft agent -cleanup -config-dir /etc/weft 2>&1); then
		printf '%s\n' "$out" >&2
		echo "weft: cleanup failed: remove the wf-* interfaces and the weft nftables table by hand" >&2
	fi
fi
exit 0
