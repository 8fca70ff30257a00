#!/bin/sh
# weft postremove (deb postrm, rpm %postun).
#   deb: "remove" | "purge" | "upgrade" NEW | "abort-*" | "disappear" | ...
#   rpm: 0 after an erase, 1 after an upgrade
# Purge (deb only) also forgets this host's identity and state. The weft
# user stays, as users of removed packages do (files may still be its).
set -e

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi

if [ "$1" = purge ]; then
	# weft.service is gone, so systemctl disable cannot find it any more.
	rm -f /etc/systemd/system/multi-user.target.wants/weft.service
	rm -rf /var/lib/weft /run/weft
fi
exit 0
