// SPDX-License-Identifier: MIT

// Package xdpio moves the UDP datagrams of one port on a few local IPv4
// addresses through AF_XDP sockets instead of the kernel's UDP stack, behind
// the batch-shaped interface of pkg/udpio: ReadBatch and WriteBatch over
// []Message with Buf, N and Addr, plus Local, the address a datagram was
// sent to or is to leave from (a udpio Conn is bound to one address; a
// Conn here serves them all).
//
// # Design
//
// Attach loads a steering program (prog.go, assembled with cilium/ebpf's
// asm package, listed in testdata/steer.golden) and attaches it to the
// interface through a BPF link, in the driver when it can, else
// generically. It redirects an IPv4 UDP frame to the AF_XDP socket of the
// queue it arrived on (an XSKMAP indexed by RX queue) when its destination
// is one of the addresses and the port, it has no IP options, is not a
// fragment and fits a UMEM frame; everything else (ARP, IPv6, ICMP, other
// ports, VLAN tags, fragments, options, frames over 1792 bytes) goes to the
// kernel untouched.
//
// Each queue has a Conn: an AF_XDP socket with a UMEM of its own (Frames of
// 2 KiB, half to receive into and half to send from; four rings of half that
// size), asking for zero-copy when attached in the driver and falling back
// to copy mode, and one kernel UDP socket per address, bound to it and the
// port with SO_REUSEPORT. The kernel sockets receive what the program passes
// to the kernel on that port (so a fragmented datagram or one with IP
// options still reaches the caller, through the kernel's reassembly) and
// send what the rings cannot.
//
// Receive: ReadBatch takes frames off the RX ring, checks them as the
// kernel's UDP path would (lengths, IPv4 header checksum, no fragment, UDP
// length, UDP checksum unless zero), copies each payload into the caller's
// Buf and returns the frames to the fill ring at once; malformed frames are
// dropped and counted by reason (Stats.RXDropped). A UDP checksum field
// holding just the pseudo-header sum is accepted: veth hands XDP the
// datagrams of local senders whose checksum the sender's kernel left to
// offload (CHECKSUM_PARTIAL), and in the lab every datagram arrives so; the
// kernel would have trusted them. The kernel sockets are read when the ring
// is empty and on every 16th call, so neither path starves the other. A
// Conn waits on an epoll set of its sockets that Go's netpoller watches: a
// blocked ReadBatch parks its goroutine, and Close wakes it.
//
// Send: WriteBatch writes Ethernet, IPv4 (DF, TTL 64, header checksum) and
// UDP headers in front of a copy of the payload in a free send frame, with
// the UDP checksum computed (it costs little next to the copy, see
// BenchmarkBuildFrame; NoUDPChecksum sends 0, which RFC 768 allows), queues
// the batch on the TX ring and, as copy mode always asks, kicks the kernel
// with one sendto per batch. The destination MAC is the next hop's: the
// kernel's route to the destination from our address (netlink
// RTM_GETROUTE), its gateway or the destination itself, looked up in the
// interface's neighbour table. A resolver goroutine per Group fills a
// bounded cache (MaxHops destinations, entries valid HopTTL); the data path
// only reads it. A datagram to a destination not in the cache (or expired,
// or routed through another interface or to a non-unicast address), too
// long for a frame or the link MTU, or finding no free send frame, goes
// through the kernel socket instead, never dropped: that also makes the
// kernel resolve or confirm the neighbour (ARP), which frames sent past it
// never would, and the expiry after HopTTL sends one datagram per
// destination through the kernel again for that reason.
//
// # Contracts
//
// Buffers: the caller owns every Message and Buf; nothing is kept after a
// call returns (payloads are copied in and out of the UMEM).
//
// Batch size: one ReadBatch returns at most MaxBatch datagrams; WriteBatch
// takes any number.
//
// Concurrency: each method may be called from any goroutine; ReadBatch
// calls on one Conn are serialised, and so are WriteBatch calls. Read each
// Conn from its own goroutine, as the server does with udpio sockets. The
// next-hop cache is shared by the Conns of a Group (one lock per batch).
//
// Shutdown: Conn.Close wakes a blocked ReadBatch, which then returns an
// error wrapping net.ErrClosed, as udpio's does. Group.Close detaches the
// program first, then closes every Conn. The program is attached through a
// BPF link owned by the process: if the process dies, the kernel detaches
// it, so nothing is left on the interface.
//
// Allocation: on success ReadBatch and WriteBatch allocate nothing once a
// peer's next hop is cached (TestAllocs).
//
// # Privileges
//
// Attach needs, measured with setpriv(1) in TestCapabilities: CAP_BPF and
// CAP_NET_ADMIN (creating the XSKMAP and loading the program; attaching),
// CAP_NET_RAW (the AF_XDP sockets), and CAP_IPC_LOCK or an RLIMIT_MEMLOCK
// above the pinned UMEM (Frames × 2 KiB per queue, 8 MiB by default; root's
// default limit on Debian is 8 MiB, which one UMEM and anything else locked
// exceeds). Not CAP_SYS_ADMIN, and not CAP_PERFMON (the program compares
// packet pointers instead of subtracting them, which the verifier allows
// only with it). Once Attach has returned, nothing needs a privilege: the
// rings, the kicks, the kernel sockets, the netlink reads of the resolver
// and Close (which closes the link) all work after a drop to nobody with no
// capability left (TestServesAfterDrop).
//
// # Modes and what was checked
//
// On veth (Linux 6.18, the lab) the program attaches in the driver and the
// sockets run in copy mode: veth offers no zero-copy (the bind fails and
// Attach retries in copy mode). NumRxQueues of a veth is one per CPU but
// only one is in use; Attach stops at the first queue that bind refuses.
//
// # Measured
//
// BenchmarkEcho (measure_e2e_test.go; 2026-12, the lab on a 2-vCPU VM
// shared with other work, load average 5 to 7): a child process echoes
// 100-byte datagrams sent to both server addresses by 4 client sockets in
// pub, 64 in flight each, through xdpio or through one udpio socket per
// address; two sets of three runs each.
//
//	                         xdpio          udpio
//	server process CPU       4.2–5.8 µs     9.7–11.7 µs   per datagram
//	whole machine CPU        27–41 µs       21–43 µs      per datagram
//	datagrams per second     49k–72k        47k–89k
//
// The server process spends half the CPU per datagram, but the machine as a
// whole does not: on veth with the program attached, every received frame
// goes through veth's NAPI ring (and is copied into a page when the socket
// buffer lacks XDP headroom) before the copy into the UMEM, and that softirq
// work is not charged to the server; copy-mode transmit still builds a
// socket buffer per frame. The load generator and the lab's bridge take
// most of the machine in both cases, and the other work on the VM moves
// the figures by 2× between runs. Reads averaged 5 to 18 datagrams a
// batch; each sent batch costs one sendto kick. Gains beyond this need a
// NIC driver with native XDP and zero-copy sockets, which the lab lacks.
//
// The UDP checksum costs about 20 ns for a 100-byte payload and 250 ns for
// 1400 bytes (BenchmarkBuildFrame), under 1 % of the server's cost for a
// router advertisement: it is computed unless NoUDPChecksum.
//
// # Limits
//
//   - IPv4 only, untagged Ethernet only, one interface per Group.
//   - Steered datagrams bypass netfilter (nftables rules, conntrack) and,
//     received in driver mode, packet taps such as tcpdump, as with any
//     XDP fast path.
//   - Frames over 1792 bytes (MTU over 1778) are passed to the kernel,
//     which works but gains nothing.
//   - The route is looked up per destination with the first datagram's
//     source address; policy routing by source address among the steered
//     addresses is not told apart.
//   - Copy mode costs a sendto per sent batch and a copy each way; the
//     kernel's generic transmit path builds a socket buffer per frame.
//   - The interface's XDP hook must be free: Attach does not replace
//     another program, it fails.
package xdpio
