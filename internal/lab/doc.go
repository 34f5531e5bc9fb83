// SPDX-License-Identifier: MIT

// Package lab builds a small Internet out of network namespaces for
// end-to-end tests and the demo, and tears it down afterwards.
//
// Every namespace is named "<prefix>-<host>" so several labs can run at once;
// interfaces are created directly inside lab namespaces (never in the root
// namespace), so their names only need to be unique per namespace. Nothing is
// ever added to the root namespace: packets only travel between the lab's own
// namespaces.
//
//	                   native  2001:db8:2::2 (IPv6 only)
//	                      |
//	                      | 2001:db8:2::1/64
//	+---------------------+----------------------------------------+
//	| router: forwards IPv4 and IPv6; routes 2001::/32 to the relay |
//	| bridge "ix": 192.0.2.1/24 2001:db8:1::1/64                    |
//	+--+--------+--------+--------+--------+--------+----------+----+
//	   |        |        |        |        |        |          |
//	   |        |        |        |        |  198.51.100.1  203.0.113.1
//	   |        |        |        |        |        |          |
//	server    relay     pub     inet1    inet2      | wan      | wan
//	.10 .11   .20       .30     .40     .50 .51   nat1       nat2
//	::10      ::2     (no NAT)                 198.51.100.2  203.0.113.2
//	                                           (.3 rebind)   (.3 rebind)
//	                                                | lan      | lan
//	                                            10.0.0.1     10.0.1.1
//	                                            (bridge)       |
//	                                             /    \         |
//	                                       client1  client3   client2
//	                                      10.0.0.2  10.0.0.3  10.0.1.2
//
// IPv4 hosts on the "ix" bridge are in 192.0.2.0/24 and their IPv6 addresses
// in 2001:db8:1::/64. server carries two consecutive IPv4 addresses, as a
// Teredo server needs. relay is the router's next hop for the Teredo prefix
// 2001::/32. pub is a host with a public IPv4 address and no NAT; inet1 and
// inet2 are plain Internet hosts for NAT probes (inet2's second address,
// 192.0.2.51, is one a client never contacts). The NAT boxes translate their
// LAN to their WAN address with nftables in one of seven behaviours (see
// NATMode: cone, address- and port-restricted, and symmetric with random,
// port-preserving or sequential ports or with a UPnP gateway, see Gateway),
// switchable at run time; Rebind moves a NAT to its other WAN address, the
// way a NAT reboot or a new DHCP lease changes a mapping. client1 and client3
// share nat1, which like every lab NAT does not hairpin: they reach each
// other on the LAN bridge, not through their mappings.
//
// New is for tests (it skips without root or tools, and cleans up with
// t.Cleanup); Build, Attach and Remove are for commands such as the demo
// (see labctl). In a host, Command and Run execute programs, Do and ListenUDP
// open sockets from the test process itself, and Lab.Start runs a daemon with
// its output in a log file, stopped at Close (StartWatched adds a
// watchdog that does what systemd's does). Options.Fleet adds a second
// relay, a second server pair and a DNS host, with BIRD and dnsmasq run
// from the checked-in configurations (see fleet.go). ProbeNAT measures what a NAT
// does to a host, ProbeHairpin what nat1 does to two of them; package refmiredo runs Debian's Miredo in any role as the reference.
package lab
