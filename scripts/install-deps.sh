#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Installs the Debian packages the tests and the demo need. Debian's miredo and
# miredo-server are the reference peers for interop tests, and bird2 the
# routing daemon of the fleet lab: their services must never start in the
# root namespace, so a policy-rc.d forbids starting any service during the
# install, and any instance that starts anyway is stopped.
set -euo pipefail

pkgs=(iproute2 nftables iputils-ping tcpdump tshark iperf3 miredo miredo-server conntrack miniupnpc
  # the scale-out lab: BIRD 2 (BGP, BFD, ECMP) for anycast relays, dnsmasq's
  # binary without its system service for the server pool's DNS name
  bird2 dnsmasq-base
  # the packaging tests: lint, rpm listing, man page rendering, unit checks
  lintian rpm groff-base man-db systemd)

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done

if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "install-deps: missing packages: ${missing[*]}; run as root or: apt-get install ${missing[*]}" >&2
    exit 1
  fi
  made_policy=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    made_policy=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q >/dev/null
  apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null
  [ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d
fi

# If a packaged instance started in the root namespace anyway, stop it by pid.
for name in miredo miredo-server bird; do
  for pid in $(pgrep -x "$name" 2>/dev/null || true); do
    if [ "$(readlink /proc/$pid/ns/net)" = "$(readlink /proc/1/ns/net)" ]; then
      echo "install-deps: stopping $name (pid $pid) started in the root namespace" >&2
      kill "$pid" 2>/dev/null || true
    fi
  done
done
