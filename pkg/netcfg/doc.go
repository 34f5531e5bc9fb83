// SPDX-License-Identifier: MIT

// Package netcfg owns the Teredo tunnel interface: the TUN device that the
// data path reads and writes, and the netlink calls that give the interface
// its MTU, state, addresses and routes.
//
// The data path sees only [Device], a batch-shaped interface modelled on
// wireguard-go's tun.Device. [Open] picks the backend behind it
// ([Backend]): our own opener with virtio-net header offloads (the
// default: the kernel hands over 64 KiB TCP super-segments that Read cuts
// into MTU-sized packets, and Write merges in-order TCP segments into one
// super-segment per write), the same opener without offloads, or
// songgao/water, one packet per call, kept as the kill switch. Our opener
// can also open several queues of one interface (IFF_MULTI_QUEUE).
// Configuration goes through [Link], which works on a *netlink.Handle so
// that tests can point it at a private network namespace.
//
// Everything here is Linux-only, like the daemons that use it.
package netcfg
