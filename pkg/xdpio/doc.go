// Package xdpio moves the UDP datagrams of one port on a few local IPv4
// addresses through AF_XDP sockets instead of the kernel's UDP stack, behind
// the batch-shaped interface of pkg/udpio: ReadBatch and WriteBatch over
// []Message (Buf, N, Addr, plus Local, the address a datagram was sent to or
// is to leave from).
//
// An XDP program on the interface steers IPv4 UDP frames for the port and
// addresses into one AF_XDP socket per receive queue and passes everything
// else to the kernel untouched. Each socket has a UMEM of its own; received
// frames are checked (lengths, IPv4 header checksum, UDP checksum) and their
// payloads copied into the caller's buffers; sent datagrams get Ethernet,
// IPv4 and UDP headers written in UMEM frames, addressed to the next hop the
// kernel's routing and neighbour tables name. Where that next hop is unknown,
// the datagram is too long, or the TX ring is full, it goes through a kernel
// UDP socket bound to the same address and port instead, which also receives
// what the program passes (fragments, IP options).
package xdpio
