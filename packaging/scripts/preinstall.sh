#!/bin/sh
# weft preinstall (deb preinst, rpm %pre).
# Creates the weft user and group before the files are unpacked, so that
# /etc/weft and /etc/weft/weft.hcl get their group (root:weft) by name.
# The same definition is installed as /usr/lib/sysusers.d/weft.conf; with
# --replace, systemd-sysusers treats this copy as that file.
set -e

sysusers_line='u weft - "weft mesh agent" /var/lib/weft -'

if command -v systemd-sysusers >/dev/null 2>&1; then
	echo "$sysusers_line" | systemd-sysusers --replace=/usr/lib/sysusers.d/weft.conf -
else
	getent group weft >/dev/null 2>&1 || groupadd --system weft
	getent passwd weft >/dev/null 2>&1 ||
		useradd --system --gid weft --home-dir /var/lib/weft --no-create-home \
			--shell /usr/sbin/nologin --comment "weft mesh agent" weft
fi
exit 0
