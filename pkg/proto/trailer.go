// SPDX-License-Identifier: MIT

package proto

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// RFC 6081 §4 lets a Teredo datagram carry trailers after the IPv6 packet:
// ParseIPv6 and ParseEnvelope hand those bytes over as the trailer area, and
// ParseTrailers reads them. Each trailer is a type-length-value triple
// (§4.1): one type byte, one length byte counting only the value, then the
// value, with no padding or alignment.

// TrailerType is the first byte of a trailer (RFC 6081 §4.1, §9).
type TrailerType uint8

// Trailer types. RFC 6081 gives the Random Port trailer two numbers: §4.5
// says its type MUST be 0x05, the IANA registry of §9 lists it as 0x02. Both
// are read as a Random Port trailer; AppendRandomPortTrailer writes 0x05, the
// value of the protocol text that [MS-TERE], and so Windows, was written from.
const (
	TrailerNonce            TrailerType = 0x01 // §4.2
	TrailerRandomPortIANA   TrailerType = 0x02 // §9 registry number of the Random Port trailer
	TrailerAlternateAddress TrailerType = 0x03 // §4.3
	TrailerNeighborDiscover TrailerType = 0x04 // §4.4, the Neighbor Discovery Option trailer
	TrailerRandomPort       TrailerType = 0x05 // §4.5
)

// Sizes of the trailers' values (RFC 6081 §4.2-§4.5).
const (
	TrailerHeaderLen   = 2 // type and length
	TrailerNonceLen    = 4
	randomPortLen      = 2
	discoveryLen       = 4 // discovery type and 3 reserved bytes
	altAddrReservedLen = 2
	altAddrEntryLen    = 6 // IPv4 address and port
	// MaxAlternateAddresses is the most entries an Alternate Address trailer
	// may hold (§4.3: a length of at most 26), a cap against amplification
	// (§7): each entry earns a direct bubble.
	MaxAlternateAddresses = 4
)

// DiscoveryType is the value of a Neighbor Discovery Option trailer (RFC
// 6081 §4.4), used by the Server Load Reduction extension (§5.7).
type DiscoveryType uint8

const (
	// DiscoverySolicitation asks the receiver for a direct bubble carrying
	// DiscoveryAdvertisement.
	DiscoverySolicitation DiscoveryType = 0x00
	// DiscoveryAdvertisement answers a solicitation.
	DiscoveryAdvertisement DiscoveryType = 0x01
)

// Trailer errors. Which ones cost the whole packet follows RFC 6081; see
// TrailerDropsPacket. They are sentinels so callers count them without
// allocating.
var (
	// ErrTrailerTruncated: fewer than 2 bytes, or fewer than 2 + Length
	// bytes, remain (§5.1.2's definition of malformed). Processing stops;
	// the packet and the trailers before it stand.
	ErrTrailerTruncated = errors.New("proto: truncated trailer")
	// ErrTrailerLength: a Nonce, Random Port or Neighbor Discovery Option
	// trailer whose length is not the one §4.2, §4.5 or §4.4 requires. It is
	// treated as malformed: processing stops, the packet stands.
	ErrTrailerLength = errors.New("proto: trailer length not as RFC 6081 §4 requires")
	// ErrTrailerDiscard: an unknown trailer whose type starts with the bits
	// 01, which tell a receiver that does not know it to discard the packet
	// (§4.1).
	ErrTrailerDiscard = errors.New("proto: unknown trailer type that asks for the packet to be discarded")
	// ErrAlternateAddress: an Alternate Address trailer breaking §4.3 (a
	// length other than 8, 14, 20 or 26, an address that is not unicast, a
	// zero port); §5.6.4.2 says to drop such a bubble.
	ErrAlternateAddress = errors.New("proto: malformed alternate address trailer")
)

// TrailerDropsPacket reports whether a ParseTrailers error means the packet
// must be dropped (ErrTrailerDiscard, ErrAlternateAddress); after any other
// error the packet is processed with the trailers read before the bad one.
func TrailerDropsPacket(err error) bool {
	return errors.Is(err, ErrTrailerDiscard) || errors.Is(err, ErrAlternateAddress)
}

// DiscardIfUnknown reports whether a receiver that does not know type t
// must discard the packet: the two high-order bits are 01 (RFC 6081 §4.1).
func (t TrailerType) DiscardIfUnknown() bool { return t>>6 == 1 }

// Known reports whether this package reads trailers of type t.
func (t TrailerType) Known() bool {
	return t >= TrailerNonce && t <= TrailerRandomPort
}

// Trailer is a view of one trailer: type, length and value. Accessors do not
// check bounds; NextTrailer returns only complete trailers.
type Trailer []byte

// Type returns the trailer type.
func (t Trailer) Type() TrailerType { return TrailerType(t[0]) }

// Value returns the bytes the length field covers.
func (t Trailer) Value() []byte { return t[TrailerHeaderLen : TrailerHeaderLen+int(t[1])] }

// NextTrailer splits the first trailer off the trailer area b. It returns
// ErrTrailerTruncated when b holds less than a whole trailer (RFC 6081
// §5.1.2); b must not be empty.
func NextTrailer(b []byte) (t Trailer, rest []byte, err error) {
	if len(b) < TrailerHeaderLen || len(b) < TrailerHeaderLen+int(b[1]) {
		return nil, nil, ErrTrailerTruncated
	}
	n := TrailerHeaderLen + int(b[1])
	return Trailer(b[:n:n]), b[n:], nil
}

// AlternateAddresses is a view of the address list of an Alternate Address
// trailer (RFC 6081 §4.3): 6-byte entries of IPv4 address and port. It
// aliases the datagram.
type AlternateAddresses []byte

// Len returns the number of entries.
func (a AlternateAddresses) Len() int { return len(a) / altAddrEntryLen }

// At returns entry i, which must be below Len.
func (a AlternateAddresses) At(i int) netip.AddrPort {
	e := a[i*altAddrEntryLen:]
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte(e[0:4])), binary.BigEndian.Uint16(e[4:6]))
}

// Trailers are the RFC 6081 trailers a datagram carried, as the extensions
// need them. AltAddrs aliases the datagram. When a type appears more than
// once the last one counts, as processing in order (§5.1.2) implies.
type Trailers struct {
	HasNonce bool
	// Nonce authenticates bubbles to and from a client behind a symmetric
	// NAT (§4.2, §5.2.4).
	Nonce [TrailerNonceLen]byte
	// RandomPort is the external port the sender predicts its NAT gave it
	// towards this receiver (§4.5); 0 when absent (a trailer carrying port 0
	// predicts nothing and reads the same).
	RandomPort uint16
	// AltAddrs are the sender's other endpoints (local address, UPnP
	// mapping) for a peer behind the same NAT (§4.3, §5.6); nil when absent.
	AltAddrs AlternateAddresses
	// HasDiscovery tells whether a Neighbor Discovery Option trailer came.
	HasDiscovery bool
	Discovery    DiscoveryType // §4.4
	// Skipped counts unknown trailers passed over (§4.1).
	Skipped int
}

// ParseTrailers reads the trailer area b (what follows the IPv6 packet; see
// ParseEnvelope) into t, which the caller owns so the data path does not
// allocate. Trailers are processed in order (RFC 6081 §5.1.2): unknown ones
// are skipped unless their type asks for the packet to be discarded; the
// first malformed one stops processing and its error is returned, with t
// holding what came before it. TrailerDropsPacket tells which errors cost
// the packet.
func ParseTrailers(b []byte, t *Trailers) error {
	*t = Trailers{}
	for len(b) > 0 {
		tr, rest, err := NextTrailer(b)
		if err != nil {
			return err
		}
		b = rest
		v := tr.Value()
		switch tr.Type() {
		case TrailerNonce:
			if len(v) != TrailerNonceLen {
				return ErrTrailerLength
			}
			t.HasNonce = true
			t.Nonce = [TrailerNonceLen]byte(v)
		case TrailerRandomPort, TrailerRandomPortIANA:
			if len(v) != randomPortLen {
				return ErrTrailerLength
			}
			t.RandomPort = binary.BigEndian.Uint16(v)
		case TrailerNeighborDiscover:
			if len(v) != discoveryLen {
				return ErrTrailerLength
			}
			t.HasDiscovery = true
			t.Discovery = DiscoveryType(v[0])
		case TrailerAlternateAddress:
			a, err := parseAlternateAddresses(v)
			if err != nil {
				return err
			}
			t.AltAddrs = a
		default:
			if tr.Type().DiscardIfUnknown() {
				return ErrTrailerDiscard
			}
			t.Skipped++
		}
	}
	return nil
}

// parseAlternateAddresses checks an Alternate Address trailer's value
// against RFC 6081 §4.3: 2 reserved bytes (ignored) then one to four
// entries, each a unicast IPv4 address and a port that is not zero.
func parseAlternateAddresses(v []byte) (AlternateAddresses, error) {
	n := len(v) - altAddrReservedLen
	if n < altAddrEntryLen || n%altAddrEntryLen != 0 || n > MaxAlternateAddresses*altAddrEntryLen {
		return nil, ErrAlternateAddress
	}
	a := AlternateAddresses(v[altAddrReservedLen:])
	for i := range a.Len() {
		if e := a.At(i); !isUnicastIPv4(e.Addr()) || e.Port() == 0 {
			return nil, ErrAlternateAddress
		}
	}
	return a, nil
}

// isUnicastIPv4 is RFC 6081 §4.3's "valid unicast address": an alternate
// address may be private (it is often the sender's LAN address), but not
// 0/8, loopback, multicast, reserved or broadcast, where a bubble could not
// reach the sender.
func isUnicastIPv4(a netip.Addr) bool {
	b := a.As4()
	return b[0] != 0 && b[0] != 127 && b[0] < 224
}

// AppendNonceTrailer appends a Nonce trailer (RFC 6081 §4.2).
func AppendNonceTrailer(dst []byte, nonce [TrailerNonceLen]byte) []byte {
	dst = append(dst, byte(TrailerNonce), TrailerNonceLen)
	return append(dst, nonce[:]...)
}

// AppendRandomPortTrailer appends a Random Port trailer (RFC 6081 §4.5)
// with type 0x05; see TrailerRandomPort.
func AppendRandomPortTrailer(dst []byte, port uint16) []byte {
	return append(dst, byte(TrailerRandomPort), randomPortLen, byte(port>>8), byte(port))
}

// AppendDiscoveryTrailer appends a Neighbor Discovery Option trailer (RFC
// 6081 §4.4) with its reserved bytes zero.
func AppendDiscoveryTrailer(dst []byte, d DiscoveryType) []byte {
	return append(dst, byte(TrailerNeighborDiscover), discoveryLen, byte(d), 0, 0, 0)
}

// AppendAlternateAddressTrailer appends an Alternate Address trailer (RFC
// 6081 §4.3) listing addrs: one to four unicast IPv4 endpoints with non-zero
// ports (§4.3 advises at most two: the local endpoint and a UPnP mapping).
// On error dst is returned unchanged.
func AppendAlternateAddressTrailer(dst []byte, addrs []netip.AddrPort) ([]byte, error) {
	if len(addrs) == 0 || len(addrs) > MaxAlternateAddresses {
		return dst, ErrAlternateAddress
	}
	for _, a := range addrs {
		if !a.Addr().Is4() || !isUnicastIPv4(a.Addr()) || a.Port() == 0 {
			return dst, ErrAlternateAddress
		}
	}
	dst = append(dst, byte(TrailerAlternateAddress), byte(altAddrReservedLen+len(addrs)*altAddrEntryLen), 0, 0)
	for _, a := range addrs {
		ip := a.Addr().As4()
		dst = append(dst, ip[0], ip[1], ip[2], ip[3], byte(a.Port()>>8), byte(a.Port()))
	}
	return dst, nil
}

// AppendTrailers appends the trailers t holds, in the order of their type
// numbers (Nonce, Alternate Address, Neighbor Discovery Option, Random
// Port): what ParseTrailers read, said again. Skipped trailers are not
// written back.
func AppendTrailers(dst []byte, t *Trailers) ([]byte, error) {
	if t.HasNonce {
		dst = AppendNonceTrailer(dst, t.Nonce)
	}
	if t.AltAddrs != nil {
		if t.AltAddrs.Len() > MaxAlternateAddresses {
			return dst, ErrAlternateAddress
		}
		var buf [MaxAlternateAddresses]netip.AddrPort
		addrs := buf[:t.AltAddrs.Len()]
		for i := range addrs {
			addrs[i] = t.AltAddrs.At(i)
		}
		var err error
		if dst, err = AppendAlternateAddressTrailer(dst, addrs); err != nil {
			return dst, err
		}
	}
	if t.HasDiscovery {
		dst = AppendDiscoveryTrailer(dst, t.Discovery)
	}
	if t.RandomPort != 0 {
		dst = AppendRandomPortTrailer(dst, t.RandomPort)
	}
	return dst, nil
}
