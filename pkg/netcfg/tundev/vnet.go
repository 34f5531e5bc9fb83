// SPDX-License-Identifier: MIT

package tundev

import (
	"encoding/binary"
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

// vnetHdrLen is the size of struct virtio_net_hdr, which a TUN opened with
// IFF_VNET_HDR puts in front of every packet in both directions (the
// default size; we never change it with TUNSETVNETHDRSZ).
const vnetHdrLen = 10

// vnetHdr is struct virtio_net_hdr (include/uapi/linux/virtio_net.h). It
// tells the reader of a packet that the kernel left work to it (a partial
// checksum, a super-segment to cut up) and tells the kernel the same about
// a packet we write.
type vnetHdr struct {
	flags      uint8  // VIRTIO_NET_HDR_F_*
	gsoType    uint8  // VIRTIO_NET_HDR_GSO_*, maybe with the ECN bit
	hdrLen     uint16 // bytes of headers in front of the payload (a hint)
	gsoSize    uint16 // payload bytes per segment
	csumStart  uint16 // where checksumming starts: the L4 header
	csumOffset uint16 // where the checksum goes, from csumStart
}

// The TUN driver uses the legacy virtio layout, which is in the host's
// byte order unless TUNSETVNETBE/LE say otherwise; we never set them.
var vnetOrder = binary.NativeEndian

var errShortVnetHdr = errors.New("shorter than a virtio-net header")

func decodeVnetHdr(b []byte) (vnetHdr, error) {
	if len(b) < vnetHdrLen {
		return vnetHdr{}, fmt.Errorf("netcfg: %d bytes: %w", len(b), errShortVnetHdr)
	}
	return vnetHdr{
		flags:      b[0],
		gsoType:    b[1],
		hdrLen:     vnetOrder.Uint16(b[2:]),
		gsoSize:    vnetOrder.Uint16(b[4:]),
		csumStart:  vnetOrder.Uint16(b[6:]),
		csumOffset: vnetOrder.Uint16(b[8:]),
	}, nil
}

// encode writes h into b[:vnetHdrLen].
func (h vnetHdr) encode(b []byte) {
	_ = b[vnetHdrLen-1]
	b[0] = h.flags
	b[1] = h.gsoType
	vnetOrder.PutUint16(b[2:], h.hdrLen)
	vnetOrder.PutUint16(b[4:], h.gsoSize)
	vnetOrder.PutUint16(b[6:], h.csumStart)
	vnetOrder.PutUint16(b[8:], h.csumOffset)
}

// needsCsum reports a partial checksum: the L4 checksum field holds only
// the pseudo-header sum, and whoever takes the packet must finish it.
func (h vnetHdr) needsCsum() bool { return h.flags&unix.VIRTIO_NET_HDR_F_NEEDS_CSUM != 0 }

// gso is the segmentation type without the ECN bit.
func (h vnetHdr) gso() uint8 { return h.gsoType &^ unix.VIRTIO_NET_HDR_GSO_ECN }
