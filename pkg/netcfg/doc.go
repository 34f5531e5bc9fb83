// Package netcfg owns the Teredo tunnel interface: the TUN device that the
// data path reads and writes, and the netlink calls that give the interface
// its MTU, state, addresses and routes.
//
// The data path sees only [Device], a batch-shaped interface modelled on
// wireguard-go's tun.Device, so that a faster backend (multi-queue,
// virtio-net-header offloads) can replace today's songgao/water one without
// touching it. Configuration goes through [Link], which works on a
// *netlink.Handle so that tests can point it at a private network namespace.
//
// Everything here is Linux-only, like the daemons that use it.
package netcfg
