// SPDX-License-Identifier: MIT

package proto

import (
	"encoding/binary"
	"net/netip"
)

// Sizes of the Teredo indicators that may precede the IPv6 packet in a UDP
// payload (RFC 4380 §5.1.1).
const (
	AuthHeaderMinLen = 13 // 00 01, id-len, au-len, nonce(8), confirmation
	OriginLen        = 8  // 00 00, ~port(2), ~IPv4(4)
	NonceLen         = 8
)

// Auth is the authentication indicator. ClientID and Value alias the parsed
// datagram; copy them to keep them past the buffer's reuse.
type Auth struct {
	ClientID     []byte
	Value        []byte
	Nonce        [NonceLen]byte
	Confirmation byte
}

// Envelope is a parsed Teredo UDP payload: optional authentication header,
// optional origin indication, then an IPv6 packet and any trailing bytes.
// Byte slices alias the datagram.
type Envelope struct {
	HasAuth   bool
	Auth      Auth
	HasOrigin bool
	// Origin is the de-obfuscated origin indication: the IPv4 endpoint a
	// server saw the packet come from.
	Origin netip.AddrPort
	IPv6   IPv6
	// Trailer holds the bytes after the IPv6 packet (RFC 6081 trailers).
	Trailer []byte
}

// ParseEnvelope parses a Teredo UDP payload into e, which the caller owns so
// the hot path does not allocate. The authentication header, when present,
// must come first, then at most one origin indication, then the IPv6 packet
// (RFC 4380 §5.1.1); the packet must pass ParseIPv6. On error e is left in an
// unspecified state.
func ParseEnvelope(b []byte, e *Envelope) error {
	*e = Envelope{}
	if len(b) >= 2 && b[0] == 0 && b[1] == 1 {
		n, err := parseAuth(b, &e.Auth)
		if err != nil {
			return err
		}
		e.HasAuth = true
		b = b[n:]
	}
	if len(b) >= 2 && b[0] == 0 && b[1] == 0 {
		if len(b) < OriginLen {
			return ErrShortOrigin
		}
		e.HasOrigin = true
		e.Origin = decodeOrigin(b)
		b = b[OriginLen:]
	}
	if len(b) >= 1 && b[0]>>4 != 6 {
		if len(b) >= 2 && b[0] == 0 && b[1] == 0 {
			return ErrDuplicateOrigin
		}
		return ErrBadIndicator
	}
	pkt, trailer, err := ParseIPv6(b)
	if err != nil {
		return err
	}
	e.IPv6, e.Trailer = pkt, trailer
	return nil
}

// parseAuth reads the authentication header at the start of b and returns
// its length.
func parseAuth(b []byte, a *Auth) (int, error) {
	if len(b) < AuthHeaderMinLen {
		return 0, ErrShortAuth
	}
	idLen, auLen := int(b[2]), int(b[3])
	n := AuthHeaderMinLen + idLen + auLen
	if len(b) < n {
		return 0, ErrShortAuth
	}
	a.ClientID = b[4 : 4+idLen : 4+idLen]
	a.Value = b[4+idLen : 4+idLen+auLen : 4+idLen+auLen]
	copy(a.Nonce[:], b[n-9:n-1])
	a.Confirmation = b[n-1]
	return n, nil
}

func decodeOrigin(b []byte) netip.AddrPort {
	port := ^binary.BigEndian.Uint16(b[2:4])
	addr := netip.AddrFrom4([4]byte{^b[4], ^b[5], ^b[6], ^b[7]})
	return netip.AddrPortFrom(addr, port)
}

// AppendAuth appends an authentication header. Client identifier and
// authentication value are at most 255 bytes each.
func AppendAuth(dst []byte, a Auth) ([]byte, error) {
	if len(a.ClientID) > 255 || len(a.Value) > 255 {
		return dst, ErrTooLong
	}
	dst = append(dst, 0, 1, byte(len(a.ClientID)), byte(len(a.Value)))
	dst = append(dst, a.ClientID...)
	dst = append(dst, a.Value...)
	dst = append(dst, a.Nonce[:]...)
	return append(dst, a.Confirmation), nil
}

// AppendNonceAuth appends the 13-byte authentication header Miredo and
// Windows put on router solicitations and advertisements: no client
// identifier, no authentication value, just the nonce and confirmation 0.
func AppendNonceAuth(dst []byte, nonce [NonceLen]byte) []byte {
	dst = append(dst, 0, 1, 0, 0)
	dst = append(dst, nonce[:]...)
	return append(dst, 0)
}

// AppendOrigin appends an origin indication for the IPv4 endpoint from.
func AppendOrigin(dst []byte, from netip.AddrPort) []byte {
	dst = append(dst, 0, 0, 0, 0, 0, 0, 0, 0)
	putOrigin(dst[len(dst)-OriginLen:], from)
	return dst
}

// putOrigin writes the origin indication for from into b[:OriginLen]: 00 00,
// then the port and IPv4 address with every bit inverted (RFC 4380 §5.1.1).
// An address that is not IPv4 is written as 0.0.0.0.
func putOrigin(b []byte, from netip.AddrPort) {
	a := ipv4Bytes(from.Addr())
	b = b[:OriginLen]
	b[0], b[1] = 0, 0
	binary.BigEndian.PutUint16(b[2:4], ^from.Port())
	binary.BigEndian.PutUint32(b[4:8], ^binary.BigEndian.Uint32(a[:]))
}
