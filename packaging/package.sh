#!/bin/sh
# SPDX-License-Identifier: MIT
#
# Builds the .deb and .rpm of each role (miredo-go-client, miredo-go-relay,
# miredo-go-server) into $DIST with nfpm, the Go tool pinned in go.mod.
# `make package` runs it; packaging/README.md says what goes in.
#
# Environment: DIST (output, default dist), PKG_VERSION (default: from git
# describe), PKG_STAGE (staging directory, default build/package), GO, MAKE.
set -eu

cd "$(dirname "$0")/.."
repo=$(pwd)
GO=${GO:-go}
MAKE=${MAKE:-make}
DIST=${DIST:-dist}
stage=${PKG_STAGE:-build/package}
: "${PKG_MAINTAINER:=miredo-go maintainers <maintainers@users.noreply.r-seed-3c213d08.example>}"

# A version dpkg and rpm order the way git does: a tag vX.Y.Z gives X.Y.Z,
# N commits after it X.Y.Z+gitN.HASH, and no tag 0.0~gitN.HASH (below any
# release), N counting the commits so that later builds sort higher.
if [ -z "${PKG_VERSION:-}" ]; then
	if tag=$(git describe --tags --match 'v[0-9]*' --abbrev=0 2>/dev/null); then
		n=$(git rev-list --count "$tag"..HEAD)
		PKG_VERSION=${tag#v}
		[ "$n" -eq 0 ] || PKG_VERSION="$PKG_VERSION+git$n.$(git rev-parse --short=7 HEAD)"
	else
		PKG_VERSION="0.0~git$(git rev-list --count HEAD).$(git rev-parse --short=7 HEAD)"
	fi
fi
# Reproducible timestamps: the commit's.
: "${SOURCE_DATE_EPOCH:=$(git log -1 --format=%ct 2>/dev/null || date +%s)}"
GOARCH=$($GO env GOARCH)
export PKG_VERSION PKG_MAINTAINER SOURCE_DATE_EPOCH GOARCH

# nfpm runs from the staging directory (nfpm.yaml's paths are relative to
# it), outside the module, so `go tool` builds it and names its binary.
$GO tool nfpm --version >/dev/null
nfpm=$($GO tool -n nfpm)

# The file tree every package takes its files from: `make install` and
# `make install-units` as a package installs them, man pages compressed.
mkdir -p "$stage" "$DIST"
rm -rf "$stage/root"
stage=$(cd "$stage" && pwd)
DIST=$(cd "$DIST" && pwd)
root=$stage/root
$MAKE -s --no-print-directory install install-units DESTDIR="$root" PREFIX=/usr \
	UNITDIR=/usr/lib/systemd/system DAEMON_USER=miredo >/dev/null
gzip -9n "$root"/usr/share/man/man*/*
sed '1,/^$/d' packaging/scripts/adduser.sh >"$stage/adduser.fragment"
install -d "$root/etc/miredo"
install -m 0644 packaging/conf/miredo.conf packaging/conf/miredo-relay.conf \
	packaging/conf/miredo-server.conf "$root/etc/miredo/"

for role in client relay server; do
	case $role in
	client)
		CONF=miredo.conf CONFLICTS=miredo RPM_CONFLICTS=miredo-client
		SUMMARY="Teredo IPv6 tunneling client (miredo-go)"
		DESCRIPTION="Gives a host behind an IPv4 NAT IPv6 connectivity with Teredo
(RFC 4380): miredo-client qualifies with a Teredo server and configures the
Teredo address on a tunnel interface. It reads Miredo's
/etc/miredo/miredo.conf and takes the place of Debian's miredo client." ;;
	relay)
		CONF=miredo-relay.conf CONFLICTS= RPM_CONFLICTS=
		SUMMARY="Teredo IPv6 relay (miredo-go)"
		DESCRIPTION="Routes the Teredo prefix between native IPv6 and Teredo clients
(RFC 4380): miredo-relay serves 2001::/32 on a tunnel interface. It reads
/etc/miredo/miredo-relay.conf, in the format of Miredo's miredo.conf." ;;
	server)
		CONF=miredo-server.conf CONFLICTS=miredo-server RPM_CONFLICTS=miredo-server
		SUMMARY="Teredo IPv6 tunneling server (miredo-go)"
		DESCRIPTION="Answers Teredo router solicitations on two IPv4 addresses and
forwards bubbles and connectivity tests (RFC 4380): miredo-server reads
Miredo's /etc/miredo/miredo-server.conf and takes the place of Debian's
miredo-server." ;;
	esac
	export ROLE=$role CONF CONFLICTS RPM_CONFLICTS SUMMARY DESCRIPTION

	doc=$root/usr/share/doc/miredo-go-$role
	install -d "$doc"
	gzip -9n <README.md >"$doc/README.md.gz"
	# A native package's changelog: one entry, naming the commit built.
	{
		printf 'miredo-go-%s (%s) unstable; urgency=medium\n\n' "$role" "$PKG_VERSION"
		printf '  * Built from miredo-go commit %s.\n\n' "$(git rev-parse --short=12 HEAD 2>/dev/null || echo unknown)"
		printf ' -- %s  %s\n' "$PKG_MAINTAINER" "$(date -u -R -d "@$SOURCE_DATE_EPOCH")"
	} | gzip -9n >"$doc/changelog.gz"
	# Go programs are statically linked by design (CGO_ENABLED=0); lintian
	# lets them be when it sees a golang-go build dependency, which a
	# package built outside a Debian source package does not show it.
	install -d "$root/usr/share/lintian/overrides"
	printf 'miredo-go-%s: statically-linked-binary [usr/sbin/miredo-%s]\n' "$role" "$role" \
		>"$root/usr/share/lintian/overrides/miredo-go-$role"
	$GO run ./packaging/copyright -license LICENSE "$root/usr/sbin/miredo-$role" >"$doc/copyright"

	# The maintainer scripts of this role, at the paths nfpm.yaml names.
	rm -rf "$stage/scripts"
	install -d "$stage/scripts"
	for s in preinst postinst prerm postrm rpm-pre rpm-post rpm-preun rpm-postun; do
		sed -e "s/@ROLE@/$role/g" -e "s/@CONF@/$CONF/g" -e "/^@ADDUSER@\$/{r $stage/adduser.fragment" -e 'd' -e '}' \
			"packaging/scripts/$s" >"$stage/scripts/$s"
		chmod 0755 "$stage/scripts/$s"
	done

	for format in deb rpm; do
		(cd "$stage" && "$nfpm" package --config "$repo/packaging/nfpm.yaml" \
			--packager "$format" --target "$DIST/" >/dev/null)
	done
done
ls "$DIST"
