// SPDX-License-Identifier: MIT

// Package tundev is the Teredo tunnel device: the TUN interface that the
// data path reads and writes, with the offloads that move several packets
// per system call. Giving the interface its MTU, addresses and routes is
// the parent package's job ([netcfg.Link]); the name, MTU bounds and
// sentinel errors both share live there too.
//
// The data path sees only [Device], a batch-shaped interface modelled on
// wireguard-go's tun.Device. [Open] picks the backend behind it
// ([Backend]): our own opener with virtio-net header offloads (the
// default: the kernel hands over 64 KiB TCP super-segments that Read cuts
// into MTU-sized packets, and Write merges in-order TCP segments into one
// super-segment per write), the same opener without offloads, or
// songgao/water, one packet per call, kept as the kill switch. Our opener
// can also open several queues of one interface (IFF_MULTI_QUEUE).
//
// Error messages begin with "netcfg:", as the parent's do: an operator
// sees one prefix for everything about the tunnel interface.
//
// Everything here is Linux-only, like the daemons that use it.
package tundev
