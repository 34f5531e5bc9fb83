#!/bin/sh
# SPDX-License-Identifier: MIT
# Failover of a Teredo fleet in a namespace lab: two anycast relays behind
# BIRD and an ECMP router, two server pairs behind one dnsmasq name,
# clients behind NATs (docs/anycast-relays.md). Kills, hangs, drains and
# restarts the relay carrying a client and kills a server pair, and
# prints, for each, the longest gap in a 10 ms ping each way between the
# native host and the client, the pings lost and the TCP stall; then a
# Miredo relay (and ours) with a static route, killed and restarted. Needs
# root, bird2, dnsmasq, iperf3 and Debian's miredo; builds, runs and
# removes its own lab (nothing touches the host's network). Arguments go
# to failoverbench:
#
#   scripts/bench-failover.sh -rounds 3
#   scripts/bench-failover.sh -only kill,drain -iperf=false
#   scripts/bench-failover.sh -h                  # every option
set -eu
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
	echo "bench-failover: needs root for network namespaces (sudo $0 $*)" >&2
	exit 1
fi
GO=${GO:-go}
exec env CGO_ENABLED=0 "$GO" run ./internal/bench/failoverbench "$@"
