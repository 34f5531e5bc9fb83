// SPDX-License-Identifier: MIT

package conf

import (
	"errors"
	"fmt"
	"math"
	"net/netip"
	"strings"
)

// Value parsers. Each takes the value as written and returns the typed value,
// the canonical text Format writes back, an optional warning and an error
// that explains the fault without repeating the directive or the value (the
// caller's Error adds those).

// parseUint reads s as C's strtoul(s, &end, 0) does and accepts it only if
// it reads all of s and the result is within [lo, hi]: decimal, 0x hex, or
// octal after a leading 0, with an optional sign. As in C, "-0" is zero and
// any other negative number wraps around to a huge value (out of range).
func parseUint(s string, lo, hi uint64) (uint64, error) {
	digits := s
	neg := false
	if digits != "" && (digits[0] == '+' || digits[0] == '-') {
		neg = digits[0] == '-'
		digits = digits[1:]
	}
	v, rest, overflow, ok := scanUint(digits)
	if !ok || rest != "" {
		return 0, errors.New("not a number")
	}
	if overflow || (neg && v != 0) || v < lo || v > hi {
		return 0, fmt.Errorf("out of range %d-%d", lo, hi)
	}
	return v, nil
}

// scanUint reads the longest prefix of s that strtoul with base 0 reads
// (after its optional sign): "0x" starts hex only if a hex digit follows,
// else the "0" alone is read as octal. ok is false when s starts with no
// digit. overflow reports a value above uint64, which strtoul clamps.
func scanUint(s string) (v uint64, rest string, overflow, ok bool) {
	base, i := uint64(10), 0
	switch {
	case len(s) > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') && digitValue(s[2]) < 16:
		base, i = 16, 2
	case len(s) > 0 && s[0] == '0':
		base = 8
	}
	start := i
	for ; i < len(s); i++ {
		d := digitValue(s[i])
		if d >= base {
			break
		}
		if v > (math.MaxUint64-d)/base {
			overflow = true
		}
		v = v*base + d
	}
	return v, s[i:], overflow, i > start
}

// digitValue returns c's value as a hex digit, or 255.
func digitValue(c byte) uint64 {
	switch {
	case '0' <= c && c <= '9':
		return uint64(c - '0')
	case 'a' <= c && c <= 'f':
		return uint64(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return uint64(c-'A') + 10
	}
	return 255
}

// inetAton reads the IPv4 forms glibc's inet_aton accepts, which is what
// getaddrinfo tries before DNS: one to four parts separated by dots, each a C
// integer (decimal, 0x hex, 0 octal), the last part filling the remaining
// bytes ("10.1" is 10.0.0.1, "0x7f000001" is 127.0.0.1).
func inetAton(s string) (netip.Addr, bool) {
	var parts [4]uint64
	n := 0
	for {
		if n == len(parts) || s == "" || s[0] < '0' || s[0] > '9' {
			return netip.Addr{}, false
		}
		v, rest, overflow, _ := scanUint(s)
		if overflow || v > math.MaxUint32 {
			return netip.Addr{}, false
		}
		parts[n] = v
		n++
		if rest == "" {
			break
		}
		if rest[0] != '.' {
			return netip.Addr{}, false
		}
		s = rest[1:]
	}
	// Every part but the last is one byte; the last fills the rest.
	for _, p := range parts[:n-1] {
		if p > 0xff {
			return netip.Addr{}, false
		}
	}
	last := parts[n-1]
	if last >= 1<<(8*(5-n)) {
		return netip.Addr{}, false
	}
	var v uint32
	for _, p := range parts[:n-1] {
		v = v<<8 | uint32(p)
	}
	v = v<<(8*(5-n)) | uint32(last)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true
}

// checkHostName accepts what could be a DNS or /etc/hosts name: at most 253
// bytes (plus a final dot), labels of 1 to 63 letters, digits, '-' or '_'.
// An all-numeric last label means the operator meant an IPv4 address and
// mistyped it; that is refused rather than sent to DNS.
func checkHostName(s string) error {
	name := strings.TrimSuffix(s, ".")
	if name == "" || len(name) > 253 {
		return errors.New("not an IPv4 address or host name")
	}
	labels := strings.Split(name, ".")
	for _, l := range labels {
		if l == "" || len(l) > 63 {
			return errors.New("not an IPv4 address or host name")
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return errors.New("not an IPv4 address or host name")
			}
		}
	}
	if strings.Trim(labels[len(labels)-1], "0123456789") == "" {
		return errors.New("not a valid IPv4 address")
	}
	return nil
}

// legacyWarning explains how an inet_aton form was read.
func legacyWarning(a netip.Addr) string {
	return "read as " + a.String() + " (legacy inet_aton form); write it as " + a.String()
}

// mappedWarning explains how an IPv4-mapped IPv6 literal was read: glibc's
// getaddrinfo returns the IPv4 address for it when asked for AF_INET.
func mappedWarning(a netip.Addr) string {
	return "read as " + a.String() + " (IPv4-mapped IPv6 form); write it as " + a.String()
}

// parseServerName reads ServerAddress and ServerAddress2: an IPv4 address or
// a host name, kept as text because the client resolves it itself, later
// and again after a loss. A legacy IPv4 form is rewritten to dotted quad so
// our resolver reads it as glibc would.
func parseServerName(s string) (text, warn string, err error) {
	if a, perr := netip.ParseAddr(s); perr == nil {
		switch {
		case a.Is4():
			return a.String(), "", nil
		case a.Is4In6() && a.Zone() == "":
			return a.Unmap().String(), mappedWarning(a.Unmap()), nil
		}
		return "", "", errors.New("not an IPv4 address or host name (Teredo servers are reached over IPv4)")
	}
	if a, ok := inetAton(s); ok {
		return a.String(), legacyWarning(a), nil
	}
	if err := checkHostName(s); err != nil {
		return "", "", err
	}
	return s, "", nil
}

// parseIPv4 reads BindAddress, ServerBindAddress and ServerBindAddress2: an
// IPv4 literal, or a host name looked up now (as Miredo does at start). Text
// keeps the host name, so Format writes what the operator wrote.
func parseIPv4(s string, lookup func(string) (netip.Addr, error)) (a netip.Addr, text, warn string, err error) {
	if a, perr := netip.ParseAddr(s); perr == nil {
		switch {
		case a.Is4():
			return a, a.String(), "", nil
		case a.Is4In6() && a.Zone() == "":
			return a.Unmap(), a.Unmap().String(), mappedWarning(a.Unmap()), nil
		}
		return netip.Addr{}, "", "", errors.New("not an IPv4 address")
	}
	if a, ok := inetAton(s); ok {
		return a, a.String(), legacyWarning(a), nil
	}
	if err := checkHostName(s); err != nil {
		return netip.Addr{}, "", "", err
	}
	if lookup == nil {
		return netip.Addr{}, "", "", fmt.Errorf("%w: no host name lookup configured", ErrLookup)
	}
	a, err = lookup(s)
	if err != nil {
		return netip.Addr{}, "", "", fmt.Errorf("%w: %w", ErrLookup, err)
	}
	a = a.Unmap()
	if !a.Is4() {
		return netip.Addr{}, "", "", fmt.Errorf("%w: lookup returned %v, not an IPv4 address", ErrLookup, a)
	}
	return a, s, "", nil
}

// parsePrefix reads Prefix: an IPv6 address of which Miredo uses the first
// 32 bits. Miredo refuses multicast (ff00::/8) prefixes.
func parsePrefix(s string) (p netip.Prefix, warn string, err error) {
	if strings.Contains(s, "/") {
		return netip.Prefix{}, "", errors.New("write the address without a prefix length; its first 32 bits are used")
	}
	a, perr := netip.ParseAddr(s)
	if perr != nil || !a.Is6() {
		return netip.Prefix{}, "", errors.New("not an IPv6 address")
	}
	if a.Zone() != "" {
		return netip.Prefix{}, "", errors.New("an IPv6 prefix takes no zone")
	}
	if a.As16()[0] == 0xff {
		return netip.Prefix{}, "", errors.New("multicast (ff00::/8) cannot be a Teredo prefix")
	}
	p = netip.PrefixFrom(a, 32).Masked()
	if p.Addr() != a {
		warn = "only the first 32 bits are used: " + p.String()
	}
	return p, warn, nil
}

// CheckInterfaceName applies Linux's dev_valid_name: 1 to 15 bytes, not "."
// or "..", no '/', ':' or whitespace. '%' may appear once, as "%d", which
// asks the kernel to number the device ("teredo%d" becomes teredo0). NUL is
// refused too: the name goes to the client's hook in its environment, which
// exec cannot carry a NUL in. InterfaceName is checked with it, and the
// client checks --interface with it, so both accept the same names.
func CheckInterfaceName(s string) error {
	if s == "" || len(s) > 15 {
		return errors.New("interface names are 1 to 15 bytes long")
	}
	if s == "." || s == ".." {
		return errors.New("not a valid interface name")
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '/' || c == ':' || c == 0 || isSpace(c) {
			return fmt.Errorf("interface names cannot contain %q", c)
		}
	}
	if i := strings.IndexByte(s, '%'); i >= 0 && (!strings.HasPrefix(s[i:], "%d") || strings.Contains(s[i+1:], "%")) {
		return errors.New("'%' may appear only once, as \"%d\"")
	}
	return nil
}

// isGlobalUnicastIPv4 is RFC 4380's test of a usable server address, as
// Miredo's is_ipv4_global_unicast applies it. Documentation ranges count as
// global, which lets tests use them.
func isGlobalUnicastIPv4(a netip.Addr) bool {
	if !a.Is4() {
		return false
	}
	b := a.As4()
	switch {
	case b[0] == 0, b[0] == 10, b[0] == 127, // this network, private, loopback
		b[0] == 169 && b[1] == 254,                        // link-local
		b[0] == 172 && b[1]&0xf0 == 16,                    // private
		b[0] == 192 && b[1] == 168,                        // private
		b[0] == 192 && b[1] == 88 && b[2] == 99,           // 6to4 relay anycast
		b[0]&0xf0 == 224,                                  // multicast
		a == netip.AddrFrom4([4]byte{255, 255, 255, 255}): // broadcast
		return false
	}
	return true
}
