# SPDX-License-Identifier: MIT
# A fragment of the maintainer scripts (postinst, rpm-pre), put in their
# place of @ADDUSER@ by packaging/package.sh.

# The system user the units run the daemons as (--user miredo): no login
# shell, no home. Debian's miredo package makes a user of the same name
# (home /var/run/miredo); an existing one is kept as it is.
if ! getent passwd miredo >/dev/null; then
	if getent group miredo >/dev/null; then
		group="--gid miredo"
	else
		group="--user-group"
	fi
	useradd --system $group --no-create-home --home-dir /nonexistent \
		--shell /usr/sbin/nologin --comment "Teredo daemons (miredo-go)" miredo
fi
