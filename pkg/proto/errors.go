// SPDX-License-Identifier: MIT

package proto

import "errors"

// Parse errors. They are sentinel values so that the data path can count
// drops by reason without allocating.
var (
	ErrShortIPv6       = errors.New("proto: shorter than an IPv6 header")
	ErrNotIPv6         = errors.New("proto: IP version is not 6")
	ErrIPv6Length      = errors.New("proto: IPv6 payload length exceeds the datagram")
	ErrShortAuth       = errors.New("proto: truncated authentication header")
	ErrShortOrigin     = errors.New("proto: truncated origin indication")
	ErrBadIndicator    = errors.New("proto: unknown Teredo indicator")
	ErrDuplicateOrigin = errors.New("proto: more than one origin indication")
	ErrShortICMPv6     = errors.New("proto: truncated ICMPv6 message")
	ErrICMPv6Checksum  = errors.New("proto: bad ICMPv6 checksum")
	ErrNotRA           = errors.New("proto: not a router advertisement")
	ErrNotRS           = errors.New("proto: not a router solicitation")
	ErrBadOption       = errors.New("proto: malformed neighbor discovery option")
	ErrPrefixCount     = errors.New("proto: router advertisement must carry exactly one /64 prefix")
	ErrBadMTU          = errors.New("proto: MTU option outside 1280-65535")
	ErrTooLong         = errors.New("proto: field too long")
)
