#!/bin/sh
# SPDX-License-Identifier: MIT
# Compares our miredo-server (UDP sockets and --xdp) with Debian's
# miredo-server 1.2.6 in a network namespace lab, on every load shape of
# issue 14 (1/16/64/256 client sockets, one source address or many) at
# saturation and at 25 and 50 % of Miredo's peak: answered router
# solicitations per second and per server CPU-second, with the ratios
# ours/Miredo as the README's Markdown tables, then saturation again with
# the lab's wire off the servers' bill. About 25 minutes. Needs root, ip(8),
# nft(8) and Debian's miredo-server; builds, runs and removes its own lab
# (nothing touches the host's network). Arguments go to serverbench, e.g.
#
#   scripts/bench-server.sh                   # the whole table
#   scripts/bench-server.sh -shapes 64x1 -loads sat -wire sender -b /tmp/new   # A/B of a build
#   scripts/bench-server.sh -only ours,miredo-server1.2.6 -perf /tmp/perf
#   scripts/bench-server.sh -h                # every option
set -eu
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
	echo "bench-server: needs root for network namespaces (sudo $0 $*)" >&2
	exit 1
fi
GO=${GO:-go}
exec env CGO_ENABLED=0 "$GO" run ./internal/bench/serverbench "$@"
