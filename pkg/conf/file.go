// SPDX-License-Identifier: MIT

package conf

import (
	"net/netip"
	"strings"
)

// Miredo's defaults for directives a file leaves out.
const (
	DefaultMode     = ModeClient
	DefaultMTU      = 1280 // InterfaceMTU; also the minimum
	DefaultFacility = FacilityDaemon
)

// DefaultPrefix returns the Teredo prefix 2001::/32 (RFC 4380 §2.6).
func DefaultPrefix() netip.Prefix {
	return netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01}), 32)
}

// File is one parsed configuration file. Every field holds the file's value
// for its directive, or Miredo's default when the file does not set it (or
// sets it but the schema does not use it); [File.IsSet] tells which. Fields
// with no default stay zero: Miredo's client requires ServerAddress, and the
// server requires ServerBindAddress and derives ServerBindAddress2 from it,
// both checks the role makes after flags are merged.
type File struct {
	Name string // the file name given to Parse, for messages

	RelayType          Mode         // default client
	ServerAddress      string       // IPv4 literal (dotted quad) or host name, resolved by the client
	ServerAddress2     string       // as ServerAddress; unused by Miredo 1.2.6
	Prefix             netip.Prefix // a /32; default 2001::/32
	InterfaceMTU       uint16       // 1280-65535; default 1280
	InterfaceName      string       // "" lets the kernel choose (tunN)
	BindAddress        netip.Addr   // IPv4; default 0.0.0.0 (any)
	BindPort           uint16       // default 0 (ephemeral)
	SyslogFacility     Facility     // default daemon
	ServerBindAddress  netip.Addr   // IPv4, global unicast
	ServerBindAddress2 netip.Addr   // IPv4, global unicast
	LogLevel           string       // debug, info, warn or error; "" when unset
	RateLimit          uint32       // 0 (no limit) to 2^31; 0 when unset

	set [numDirectives]setting
}

// setting records where a directive's value came from.
type setting struct {
	line int    // 0 when the file does not set the directive
	raw  string // the value as written
	text string // the value as Format writes it
}

// newFile returns a File holding Miredo's defaults.
func newFile(name string) *File {
	return &File{
		Name:           name,
		RelayType:      DefaultMode,
		Prefix:         DefaultPrefix(),
		InterfaceMTU:   DefaultMTU,
		BindAddress:    netip.IPv4Unspecified(),
		SyslogFacility: DefaultFacility,
	}
}

// IsSet reports whether the file set d (and the schema uses it), so a
// command-line flag can tell an explicit value from a default.
func (f *File) IsSet(d Directive) bool { return f.Line(d) != 0 }

// Line returns the line that set d, or 0.
func (f *File) Line(d Directive) int {
	if d == 0 || d >= numDirectives {
		return 0
	}
	return f.set[d].line
}

// Raw returns d's value exactly as the file wrote it, or "".
func (f *File) Raw(d Directive) string {
	if d == 0 || d >= numDirectives {
		return ""
	}
	return f.set[d].raw
}

// Text returns d's value as Format writes it ("relay" as "cone", "10.1" as
// "10.0.0.1"), or "": the form to compare with a command-line value.
func (f *File) Text(d Directive) string {
	if d == 0 || d >= numDirectives {
		return ""
	}
	return f.set[d].text
}

// ErrorAt builds an error about d at the line that set it, for checks the
// role makes after parsing ("ServerAddress not set", a derived secondary
// address that is not global): the operator gets the same "file:line:
// Directive "value": reason" form as from Parse.
func (f *File) ErrorAt(d Directive, err error) *Error {
	return &Error{File: f.Name, Line: f.Line(d), Directive: d, Value: f.Raw(d), Err: err}
}

// Format renders the directives the file set, one per line in Directive
// order, with canonical values ("relay" becomes "cone", "10.1" becomes
// "10.0.0.1"; host names stay host names). Parse reads the result back to
// the same values.
func (f *File) Format() string {
	var b strings.Builder
	for d := Directive(1); d < numDirectives; d++ {
		if s := f.set[d]; s.line != 0 {
			b.WriteString(d.String())
			b.WriteByte(' ')
			b.WriteString(s.text)
			b.WriteByte('\n')
		}
	}
	return b.String()
}
