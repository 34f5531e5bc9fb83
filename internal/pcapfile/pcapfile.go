// SPDX-License-Identifier: MIT

// Package pcapfile reads and writes classic libpcap capture files, and picks
// the UDP datagrams out of them. Tests use it to take real Miredo traffic as
// vectors and to hand our packets to tshark; it is not for production paths.
package pcapfile

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
)

// Link types this package understands (tcpdump.org link-layer header types).
const (
	LinkEthernet = 1
	LinkRaw      = 101 // a bare IPv4 or IPv6 packet
)

const (
	magicMicro    = 0xa1b2c3d4
	magicNano     = 0xa1b23c4d
	globalHdrLen  = 24
	recordHdrLen  = 16
	maxRecordSize = 1 << 18
)

// Record is one captured frame.
type Record struct {
	Index int // 1-based frame number, as tshark counts
	Data  []byte
}

// Read returns the link type and the frames of a capture.
func Read(r io.Reader) (linkType uint32, recs []Record, err error) {
	var gh [globalHdrLen]byte
	if _, err := io.ReadFull(r, gh[:]); err != nil {
		return 0, nil, fmt.Errorf("pcapfile: global header: %w", err)
	}
	var bo binary.ByteOrder
	switch m := binary.LittleEndian.Uint32(gh[0:4]); m {
	case magicMicro, magicNano:
		bo = binary.LittleEndian
	default:
		if m2 := binary.BigEndian.Uint32(gh[0:4]); m2 == magicMicro || m2 == magicNano {
			bo = binary.BigEndian
		} else {
			return 0, nil, fmt.Errorf("pcapfile: not a pcap file (magic %#x)", m)
		}
	}
	linkType = bo.Uint32(gh[20:24])
	for i := 1; ; i++ {
		var rh [recordHdrLen]byte
		if _, err := io.ReadFull(r, rh[:]); err == io.EOF {
			return linkType, recs, nil
		} else if err != nil {
			return 0, nil, fmt.Errorf("pcapfile: frame %d header: %w", i, err)
		}
		n := bo.Uint32(rh[8:12])
		if n > maxRecordSize {
			return 0, nil, fmt.Errorf("pcapfile: frame %d: length %d too large", i, n)
		}
		data := make([]byte, n)
		if _, err := io.ReadFull(r, data); err != nil {
			return 0, nil, fmt.Errorf("pcapfile: frame %d: %w", i, err)
		}
		recs = append(recs, Record{Index: i, Data: data})
	}
}

// Writer writes a capture of raw IP packets (LinkRaw), one record per call.
type Writer struct {
	w   io.Writer
	sec uint32
}

// NewWriter writes the global header and returns a Writer.
func NewWriter(w io.Writer) (*Writer, error) {
	var gh [globalHdrLen]byte
	binary.LittleEndian.PutUint32(gh[0:4], magicMicro)
	binary.LittleEndian.PutUint16(gh[4:6], 2)
	binary.LittleEndian.PutUint16(gh[6:8], 4)
	binary.LittleEndian.PutUint32(gh[16:20], 65535)
	binary.LittleEndian.PutUint32(gh[20:24], LinkRaw)
	if _, err := w.Write(gh[:]); err != nil {
		return nil, fmt.Errorf("pcapfile: %w", err)
	}
	return &Writer{w: w}, nil
}

// WritePacket appends one raw IP packet; timestamps count up by a second so
// frames keep their order.
func (w *Writer) WritePacket(pkt []byte) error {
	var rh [recordHdrLen]byte
	w.sec++
	binary.LittleEndian.PutUint32(rh[0:4], w.sec)
	binary.LittleEndian.PutUint32(rh[8:12], uint32(len(pkt)))
	binary.LittleEndian.PutUint32(rh[12:16], uint32(len(pkt)))
	if _, err := w.w.Write(rh[:]); err != nil {
		return fmt.Errorf("pcapfile: %w", err)
	}
	if _, err := w.w.Write(pkt); err != nil {
		return fmt.Errorf("pcapfile: %w", err)
	}
	return nil
}

// Datagram is a UDP datagram over IPv4 found in a capture.
type Datagram struct {
	Frame    int
	Src, Dst netip.AddrPort
	Payload  []byte
}

// ErrNotUDP4 is returned by UDP4 for frames that are not UDP over IPv4.
var ErrNotUDP4 = errors.New("pcapfile: not a UDP/IPv4 frame")

// UDP4 extracts the UDP/IPv4 datagram of a frame.
func UDP4(linkType uint32, rec Record) (Datagram, error) {
	b := rec.Data
	switch linkType {
	case LinkEthernet:
		if len(b) < 14 || binary.BigEndian.Uint16(b[12:14]) != 0x0800 {
			return Datagram{}, ErrNotUDP4
		}
		b = b[14:]
	case LinkRaw:
	default:
		return Datagram{}, fmt.Errorf("pcapfile: link type %d not supported", linkType)
	}
	if len(b) < 20 || b[0]>>4 != 4 || b[9] != 17 {
		return Datagram{}, ErrNotUDP4
	}
	ihl := int(b[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(b[2:4]))
	if ihl < 20 || total > len(b) || total < ihl+8 {
		return Datagram{}, ErrNotUDP4
	}
	src := netip.AddrFrom4([4]byte(b[12:16]))
	dst := netip.AddrFrom4([4]byte(b[16:20]))
	u := b[ihl:total]
	ulen := int(binary.BigEndian.Uint16(u[4:6]))
	if ulen < 8 || ulen > len(u) {
		return Datagram{}, ErrNotUDP4
	}
	return Datagram{
		Frame:   rec.Index,
		Src:     netip.AddrPortFrom(src, binary.BigEndian.Uint16(u[0:2])),
		Dst:     netip.AddrPortFrom(dst, binary.BigEndian.Uint16(u[2:4])),
		Payload: u[8:ulen],
	}, nil
}

// ReadUDP4File returns the UDP/IPv4 datagrams of the capture file at path,
// in order, leaving out the frames that are something else (ARP, IPv6 and
// the like).
func ReadUDP4File(path string) ([]Datagram, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	lt, recs, err := Read(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	var out []Datagram
	for _, r := range recs {
		if d, err := UDP4(lt, r); err == nil {
			out = append(out, d)
		}
	}
	return out, nil
}

// AppendUDP4 appends an IPv4 header and a UDP header around payload, with a
// correct IPv4 header checksum and a UDP checksum of zero (allowed for IPv4),
// so tools decode it as traffic from src to dst.
func AppendUDP4(dst []byte, src, to netip.AddrPort, payload []byte) []byte {
	total := 20 + 8 + len(payload)
	start := len(dst)
	s, d := src.Addr().As4(), to.Addr().As4()
	dst = append(dst, 0x45, 0, byte(total>>8), byte(total), 0, 0, 0x40, 0, 64, 17, 0, 0)
	dst = append(dst, s[:]...)
	dst = append(dst, d[:]...)
	var sum uint32
	for i := start; i < start+20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(dst[i:]))
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(dst[start+10:], ^uint16(sum))
	ulen := 8 + len(payload)
	dst = append(dst, byte(src.Port()>>8), byte(src.Port()), byte(to.Port()>>8), byte(to.Port()), byte(ulen>>8), byte(ulen), 0, 0)
	return append(dst, payload...)
}
