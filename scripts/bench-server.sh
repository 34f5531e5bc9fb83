#!/bin/sh
# SPDX-License-Identifier: MIT
# Compares our miredo-server with Debian's miredo-server 1.2.6 in a network
# namespace lab: answered router solicitations per second, loss, and server
# CPU seconds per million answers, with the ratios ours/Miredo. Needs root,
# ip(8), nft(8) and Debian's miredo-server; builds, runs and removes its own
# lab (nothing touches the host's network). Arguments go to serverbench, e.g.
#
#   scripts/bench-server.sh -rounds 3 -duration 5s
#   scripts/bench-server.sh -only ours,miredo-server1.2.6 -perf /tmp/perf
#   scripts/bench-server.sh -thread-wire     # the lab's veth work off the servers' bill
#   scripts/bench-server.sh -h               # every option
set -eu
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
	echo "bench-server: needs root for network namespaces (sudo $0 $*)" >&2
	exit 1
fi
GO=${GO:-go}
exec env CGO_ENABLED=0 "$GO" run ./internal/bench/serverbench "$@"
