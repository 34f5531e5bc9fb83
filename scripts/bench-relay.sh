#!/bin/sh
# SPDX-License-Identifier: MIT
# Teredo throughput through a relay, ours against Debian's Miredo 1.2.6 in
# the same run: iperf3 between a client behind a port-restricted NAT and a
# native IPv6 host, for Miredo client + relay, ours + ours, Miredo's client
# + our relay and our client + Miredo's relay, then a kernel VXLAN tunnel
# over the same hops as the ceiling. Prints Mbit/s, packets/s, loss and
# each daemon's CPU seconds per GB, with ratios to Miredo. Needs root,
# ip(8), nft(8), iperf3 and Debian's miredo; builds, runs and removes its
# own lab (nothing touches the host's network). Arguments go to relaybench:
#
#   scripts/bench-relay.sh -rounds 3
#   scripts/bench-relay.sh -only miredo,ours -tests tcp-up,tcp-down
#   scripts/bench-relay.sh -relay-args '--no-batch'          # our daemons' flags
#   scripts/bench-relay.sh -variant 'nobatch|ours|ours --no-batch'
#   scripts/bench-relay.sh -perf /tmp/perf                   # perf record the daemons
#   scripts/bench-relay.sh -h                                # every option
set -eu
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
	echo "bench-relay: needs root for network namespaces (sudo $0 $*)" >&2
	exit 1
fi
GO=${GO:-go}
exec env CGO_ENABLED=0 "$GO" run ./internal/bench/relaybench "$@"
