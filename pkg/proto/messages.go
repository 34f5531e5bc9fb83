// SPDX-License-Identifier: MIT

package proto

import (
	"encoding/binary"
	"net/netip"
	"slices"
)

// Neighbor discovery layout (RFC 4861) as Teredo uses it.
const (
	rsLen          = 8  // type, code, checksum, reserved
	raLen          = 16 // type, code, checksum, hop, flags, lifetime, reachable, retrans
	ndOptPrefix    = 3
	ndOptMTU       = 5
	pioLen         = 32
	mtuOptLen      = 8
	raRetransTimer = 2000 // ms, as Miredo and Microsoft's servers advertise
	ndHopLimit     = 255
	pioFlagAuto    = 0x40
	obsoletePrefix = 0x3ffe831f // Windows XP before MS06-064
)

// AppendRouterSolicitation appends the UDP payload of a qualification router
// solicitation (RFC 4380 §5.2.1) as Miredo sends it: an authentication header
// carrying nonce, then an RS from fe80::ffff:ffff:ffff (or the cone address
// fe80::8000:5445:5245:444f) to ff02::2 with hop limit 255 and no options.
func AppendRouterSolicitation(dst []byte, nonce [NonceLen]byte, cone bool) []byte {
	dst = AppendNonceAuth(dst, nonce)
	src := LinkLocalClient()
	if cone {
		src = LinkLocalClientCone()
	}
	start := len(dst)
	dst = AppendIPv6Header(dst, IPv6Fields{NextHeader: ProtoICMPv6, HopLimit: ndHopLimit, Src: src, Dst: AllRouters()})
	dst = append(dst, ICMPv6RouterSolicit, 0, 0, 0, 0, 0, 0, 0)
	return finishICMPv6(dst, start)
}

// RouterSolicitation is what a server needs from a valid RS.
type RouterSolicitation struct {
	// Src is the RS's link-local source; the advertisement goes back to it.
	Src netip.Addr
	// Cone is the cone bit of Src's interface identifier: the client asks for
	// the answer from the other server address (RFC 4380 §5.3.2).
	Cone bool
}

// ParseRouterSolicitation checks that pkt is a router solicitation a Teredo
// server answers (RFC 4380 §5.3.1 case 4, RFC 4861 §6.1.1): ICMPv6 type 133
// code 0 with a correct checksum, hop limit 255, from a link-local address to
// ff02::2.
func ParseRouterSolicitation(pkt IPv6) (RouterSolicitation, error) {
	m, err := ParseICMPv6(pkt)
	if err != nil {
		return RouterSolicitation{}, err
	}
	if m.Type() != ICMPv6RouterSolicit || m.Code() != 0 || len(m) < rsLen || pkt.HopLimit() != ndHopLimit {
		return RouterSolicitation{}, ErrNotRS
	}
	src, dst := pkt.Src(), pkt.Dst()
	if !IsLinkLocalIPv6(src) || dst != AllRouters() {
		return RouterSolicitation{}, ErrNotRS
	}
	if err := walkOptions(m[rsLen:], nil); err != nil {
		return RouterSolicitation{}, err
	}
	return RouterSolicitation{Src: src, Cone: pkt[8+8]&0x80 != 0}, nil
}

// RAFields describe the router advertisement a Teredo server sends in answer
// to a solicitation (RFC 4380 §5.3.2).
type RAFields struct {
	Nonce  [NonceLen]byte // echoed from the solicitation
	Client netip.AddrPort // where the RS came from: the origin indication
	Dst    netip.Addr     // the RS's IPv6 source
	Server netip.Addr     // primary server IPv4, advertised in the prefix
	Prefix uint32         // Teredo prefix, normally DefaultPrefix
	MTU    uint32         // advertised link MTU
}

// AppendRouterAdvertisement appends the UDP payload of a Teredo server's
// router advertisement as Miredo sends it: authentication header echoing the
// nonce, origin indication, then an RA from the server's link-local address
// with router lifetime 0, retransmit timer 2000 ms, one prefix information
// option (prefix ‖ server IPv4 / 64, autonomous, infinite lifetimes) and an
// MTU option.
func AppendRouterAdvertisement(dst []byte, f RAFields) []byte {
	dst = AppendNonceAuth(dst, f.Nonce)
	dst = AppendOrigin(dst, f.Client)
	start := len(dst)
	dst = AppendIPv6Header(dst, IPv6Fields{NextHeader: ProtoICMPv6, HopLimit: ndHopLimit, Src: ServerLinkLocal(f.Server), Dst: f.Dst})
	dst = append(dst, ICMPv6RouterAdvertise, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(dst[len(dst)-4:], raRetransTimer)
	s := ipv4Bytes(f.Server)
	dst = append(dst, ndOptPrefix, pioLen/8, 64, pioFlagAuto,
		0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0,
		byte(f.Prefix>>24), byte(f.Prefix>>16), byte(f.Prefix>>8), byte(f.Prefix), s[0], s[1], s[2], s[3],
		0, 0, 0, 0, 0, 0, 0, 0)
	dst = append(dst, ndOptMTU, mtuOptLen/8, 0, 0, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(dst[len(dst)-4:], f.MTU)
	return finishICMPv6(dst, start)
}

// Where AppendRouterAdvertisement puts the fields that vary from one
// solicitation to the next, as offsets in the UDP payload it appends.
const (
	raNonceOff    = 4                             // in the authentication header
	raOriginOff   = AuthHeaderMinLen              // the origin indication
	raIPv6Off     = raOriginOff + OriginLen       // the IPv6 header
	raDstOff      = raIPv6Off + 24                // its destination address
	raChecksumOff = raIPv6Off + IPv6HeaderLen + 2 // the ICMPv6 checksum
	raPayloadLen  = raIPv6Off + IPv6HeaderLen + raLen + pioLen + mtuOptLen
)

// RATemplate is the router advertisement of one server, built once: a
// server answers every solicitation with the same bytes but for the nonce,
// the origin indication and the IPv6 destination, and only the destination
// is under the ICMPv6 checksum. Append copies the bytes, patches those three
// fields and finishes the checksum from a precomputed ones'-complement sum
// of everything else (source, length, next header and message), so a reply
// costs a copy and a 16-byte sum instead of a build and a full checksum.
// A template is immutable, so goroutines may share one; make it with
// NewRATemplate.
type RATemplate struct {
	b   [raPayloadLen]byte // the RA to ::, nonce 0, origin 0.0.0.0:0, checksum 0
	sum uint64             // the checksum's sum without the destination
}

// NewRATemplate returns the template of the advertisement
// AppendRouterAdvertisement builds with these Server, Prefix and MTU fields.
func NewRATemplate(server netip.Addr, prefix, mtu uint32) *RATemplate {
	t := new(RATemplate)
	copy(t.b[:], AppendRouterAdvertisement(make([]byte, 0, raPayloadLen), RAFields{Server: server, Prefix: prefix, MTU: mtu}))
	t.b[raChecksumOff], t.b[raChecksumOff+1] = 0, 0
	// The destination is ::, so the pseudo-header sum over source and
	// destination is the source's alone.
	pkt := IPv6(t.b[raIPv6Off:])
	msg := pkt[IPv6HeaderLen:]
	t.sum = sumBytes(0, pkt[8:IPv6HeaderLen]) + uint64(len(msg)) + ProtoICMPv6
	t.sum = sumBytes(t.sum, msg)
	return t
}

// Append appends the advertisement answering a solicitation that carried
// nonce and came from client (the origin indication), addressed to to (the
// solicitation's IPv6 source). The bytes are those AppendRouterAdvertisement
// appends for the same fields.
func (t *RATemplate) Append(dst []byte, nonce [NonceLen]byte, client netip.AddrPort, to netip.Addr) []byte {
	n := len(dst)
	dst = slices.Grow(dst, raPayloadLen)[:n+raPayloadLen]
	p := (*[raPayloadLen]byte)(dst[n:])
	*p = t.b
	copy(p[raNonceOff:raNonceOff+NonceLen], nonce[:])
	putOrigin(p[raOriginOff:], client)
	hi, lo := as16Words(to)
	binary.BigEndian.PutUint64(p[raDstOff:], hi)
	binary.BigEndian.PutUint64(p[raDstOff+8:], lo)
	// The destination's four 32-bit words, as sumBytes would add them.
	sum := t.sum + hi>>32 + hi&0xffffffff + lo>>32 + lo&0xffffffff
	binary.BigEndian.PutUint16(p[raChecksumOff:], ^fold(sum))
	return dst
}

// as16Words returns a.As16() as two big-endian 64-bit words. It goes
// through AsSlice, not As16: a 16-byte copy of the array As16 returns, which
// was stored as two 8-byte halves, stalls the CPU (the store cannot be
// forwarded to the load), and RATemplate.Append wants words anyway.
func as16Words(a netip.Addr) (hi, lo uint64) {
	switch b := a.AsSlice(); len(b) {
	case 16:
		return binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	case 4: // As16 maps IPv4 into ::ffff:0:0/96
		return 0, 0xffff<<32 | uint64(binary.BigEndian.Uint32(b))
	}
	return 0, 0
}

// RouterAdvertisement is what a client learns from a server's RA.
type RouterAdvertisement struct {
	Prefix uint32     // Teredo prefix; the obsolete 3ffe:831f:: is read as 2001:0::
	Server netip.Addr // server IPv4 from the second half of the /64 prefix
	MTU    uint32     // 0 when the RA carries no MTU option
}

// ParseRouterAdvertisement checks that pkt is a router advertisement a
// Teredo client accepts (RFC 4380 §5.2.1; Miredo's checks): ICMPv6 type 134
// code 0, correct checksum, hop limit 255, link-local source, well-formed
// options, exactly one prefix information option and it is a /64 outside
// ff00::/8, and an MTU option, if any, within 1280-65535. Matching the nonce,
// destination and server address is the caller's part.
func ParseRouterAdvertisement(pkt IPv6) (RouterAdvertisement, error) {
	var ra RouterAdvertisement
	m, err := ParseICMPv6(pkt)
	if err != nil {
		return ra, err
	}
	if m.Type() != ICMPv6RouterAdvertise || m.Code() != 0 || len(m) < raLen ||
		pkt.HopLimit() != ndHopLimit || !IsLinkLocalIPv6(pkt.Src()) {
		return ra, ErrNotRA
	}
	prefixes := 0
	err = walkOptions(m[raLen:], func(typ uint8, opt []byte) error {
		switch typ {
		case ndOptPrefix:
			prefixes++
			if len(opt) != pioLen || opt[2] != 64 {
				return ErrPrefixCount
			}
			ra.Prefix = binary.BigEndian.Uint32(opt[16:20])
			ra.Server = netip.AddrFrom4([4]byte(opt[20:24]))
		case ndOptMTU:
			if len(opt) != mtuOptLen {
				return ErrBadOption
			}
			ra.MTU = binary.BigEndian.Uint32(opt[4:8])
			if ra.MTU < MinMTU || ra.MTU > 65535 {
				return ErrBadMTU
			}
		}
		return nil
	})
	if err != nil {
		return RouterAdvertisement{}, err
	}
	if prefixes != 1 || ra.Prefix>>24 == 0xff {
		return RouterAdvertisement{}, ErrPrefixCount
	}
	if ra.Prefix == obsoletePrefix {
		ra.Prefix = DefaultPrefix
	}
	return ra, nil
}

// walkOptions checks the neighbor discovery options in b (each a type, a
// length in units of 8 bytes that is not zero, and its data) and calls fn,
// when not nil, for each.
func walkOptions(b []byte, fn func(typ uint8, opt []byte) error) error {
	for len(b) > 0 {
		if len(b) < 2 || b[1] == 0 || int(b[1])*8 > len(b) {
			return ErrBadOption
		}
		n := int(b[1]) * 8
		if fn != nil {
			if err := fn(b[0], b[:n]); err != nil {
				return err
			}
		}
		b = b[n:]
	}
	return nil
}

// AppendBubble appends a Teredo bubble (RFC 4380 §2.8): an IPv6 header with
// payload length 0 and next header 59. Miredo sends bubbles with hop limit 0.
func AppendBubble(dst []byte, src, to netip.Addr, hopLimit uint8) []byte {
	return AppendIPv6Header(dst, IPv6Fields{NextHeader: ProtoNoNext, HopLimit: hopLimit, Src: src, Dst: to})
}
