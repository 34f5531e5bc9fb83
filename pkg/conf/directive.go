// SPDX-License-Identifier: MIT

package conf

import "strconv"

// Directive is one configuration directive known to Miredo 1.2.6.
type Directive uint8

// The directives of miredo.conf and miredo-server.conf. The zero Directive is
// none of them.
const (
	RelayType          Directive = iota + 1 // client, autoclient, cone, relay or restricted
	ServerAddress                           // client: Teredo server host name or IPv4
	ServerAddress2                          // client: secondary server; Miredo 1.2.6 parses and ignores it
	Prefix                                  // relay, server: Teredo prefix, first 32 bits used
	InterfaceMTU                            // relay: tunnel MTU; server: MTU advertised in RAs
	InterfaceName                           // client, relay: tunnel interface name
	BindAddress                             // client, relay: local IPv4 of the UDP socket
	BindPort                                // client, relay: local UDP port
	SyslogFacility                          // all: syslog facility name
	ServerBindAddress                       // server: primary IPv4 address
	ServerBindAddress2                      // server: secondary IPv4 address
	LogLevel                                // all (ours, not Miredo's): least severe messages logged
	RateLimit                               // server (ours): datagrams sent to one /24 per second

	numDirectives // one past the last directive
)

// String returns the directive's name as Miredo's documentation spells it.
func (d Directive) String() string {
	switch d {
	case RelayType:
		return "RelayType"
	case ServerAddress:
		return "ServerAddress"
	case ServerAddress2:
		return "ServerAddress2"
	case Prefix:
		return "Prefix"
	case InterfaceMTU:
		return "InterfaceMTU"
	case InterfaceName:
		return "InterfaceName"
	case BindAddress:
		return "BindAddress"
	case BindPort:
		return "BindPort"
	case SyslogFacility:
		return "SyslogFacility"
	case ServerBindAddress:
		return "ServerBindAddress"
	case ServerBindAddress2:
		return "ServerBindAddress2"
	case LogLevel:
		return "LogLevel"
	case RateLimit:
		return "RateLimit"
	}
	return "Directive(" + strconv.Itoa(int(d)) + ")"
}

// ParseDirective finds the directive called name, ignoring ASCII case as
// Miredo's strcasecmp does (Unicode folding would let "ServerAddreſſ" in).
func ParseDirective(name string) (Directive, bool) {
	for d := Directive(1); d < numDirectives; d++ {
		if equalFoldASCII(name, d.String()) {
			return d, true
		}
	}
	return 0, false
}

// Schema is the set of directives one role uses. A directive outside the
// schema draws a "superfluous directive" warning, as in Miredo.
type Schema uint32

// The schemas of the three roles, matching what Miredo 1.2.6 consumes in
// client mode, relay mode (src/relayd.c) and in miredo-server
// (src/serverd.c). SyslogFacility is read by the shared main for all.
// LogLevel (all) and RateLimit (server) are ours: settings a reload
// (SIGHUP) can change, which Miredo's files have no directive for.
const (
	ClientSchema Schema = 1<<RelayType | 1<<ServerAddress | 1<<ServerAddress2 |
		1<<InterfaceName | 1<<BindAddress | 1<<BindPort | 1<<SyslogFacility | 1<<LogLevel
	RelaySchema Schema = 1<<RelayType | 1<<Prefix | 1<<InterfaceMTU |
		1<<InterfaceName | 1<<BindAddress | 1<<BindPort | 1<<SyslogFacility | 1<<LogLevel
	ServerSchema Schema = 1<<ServerBindAddress | 1<<ServerBindAddress2 |
		1<<Prefix | 1<<InterfaceMTU | 1<<SyslogFacility | 1<<LogLevel | 1<<RateLimit
)

// SchemaOf returns the schema holding exactly ds.
func SchemaOf(ds ...Directive) Schema {
	var s Schema
	for _, d := range ds {
		if d > 0 && d < numDirectives {
			s |= 1 << d
		}
	}
	return s
}

// Has reports whether the schema uses d.
func (s Schema) Has(d Directive) bool {
	return d > 0 && d < numDirectives && s&(1<<d) != 0
}

// Directives lists the schema's directives in Directive order.
func (s Schema) Directives() []Directive {
	var ds []Directive
	for d := Directive(1); d < numDirectives; d++ {
		if s.Has(d) {
			ds = append(ds, d)
		}
	}
	return ds
}

// Mode is the value of RelayType: whether miredo.conf sets up a Teredo client
// or a relay.
type Mode uint8

// Modes. The zero Mode is the client, Miredo's default.
const (
	ModeClient     Mode = iota // "client", or its alias "autoclient"
	ModeCone                   // "cone", or its alias "relay"
	ModeRestricted             // "restricted": the relay also sends direct bubbles
)

// String returns the mode's canonical RelayType value.
func (m Mode) String() string {
	switch m {
	case ModeClient:
		return "client"
	case ModeCone:
		return "cone"
	case ModeRestricted:
		return "restricted"
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}

// ParseMode reads a RelayType value, ignoring ASCII case. Aliases map to
// their mode: "autoclient" is a client since Miredo 1.1.0 removed its special
// logic, and "relay" is a cone relay.
func ParseMode(s string) (Mode, bool) {
	switch {
	case equalFoldASCII(s, "client"), equalFoldASCII(s, "autoclient"):
		return ModeClient, true
	case equalFoldASCII(s, "cone"), equalFoldASCII(s, "relay"):
		return ModeCone, true
	case equalFoldASCII(s, "restricted"):
		return ModeRestricted, true
	}
	return 0, false
}

// Facility is a syslog facility. Its value is the facility code shifted left
// by three, as in <syslog.h>, so it converts directly to log/syslog's
// Priority: syslog.Priority(f).
type Facility int

// The facilities Miredo accepts in SyslogFacility.
const (
	FacilityKern     Facility = 0 << 3
	FacilityUser     Facility = 1 << 3
	FacilityMail     Facility = 2 << 3
	FacilityDaemon   Facility = 3 << 3
	FacilityAuth     Facility = 4 << 3
	FacilitySyslog   Facility = 5 << 3
	FacilityLPR      Facility = 6 << 3
	FacilityNews     Facility = 7 << 3
	FacilityUUCP     Facility = 8 << 3
	FacilityCron     Facility = 9 << 3
	FacilityAuthPriv Facility = 10 << 3
	FacilityFTP      Facility = 11 << 3
	FacilityLocal0   Facility = 16 << 3
	FacilityLocal1   Facility = 17 << 3
	FacilityLocal2   Facility = 18 << 3
	FacilityLocal3   Facility = 19 << 3
	FacilityLocal4   Facility = 20 << 3
	FacilityLocal5   Facility = 21 << 3
	FacilityLocal6   Facility = 22 << 3
	FacilityLocal7   Facility = 23 << 3
)

// facilityName returns the SyslogFacility value naming f, or "".
func facilityName(f Facility) string {
	switch f {
	case FacilityKern:
		return "kern"
	case FacilityUser:
		return "user"
	case FacilityMail:
		return "mail"
	case FacilityDaemon:
		return "daemon"
	case FacilityAuth:
		return "auth"
	case FacilitySyslog:
		return "syslog"
	case FacilityLPR:
		return "lpr"
	case FacilityNews:
		return "news"
	case FacilityUUCP:
		return "uucp"
	case FacilityCron:
		return "cron"
	case FacilityAuthPriv:
		return "authpriv"
	case FacilityFTP:
		return "ftp"
	}
	if f >= FacilityLocal0 && f <= FacilityLocal7 && f%8 == 0 {
		return "local" + strconv.Itoa(int(f-FacilityLocal0)>>3)
	}
	return ""
}

// String returns the facility's name as SyslogFacility spells it.
func (f Facility) String() string {
	if n := facilityName(f); n != "" {
		return n
	}
	return "Facility(" + strconv.Itoa(int(f)) + ")"
}

// ParseFacility reads a SyslogFacility value, ignoring ASCII case as Miredo
// does.
func ParseFacility(s string) (Facility, bool) {
	for f := FacilityKern; f <= FacilityLocal7; f += 1 << 3 {
		if n := facilityName(f); n != "" && equalFoldASCII(s, n) {
			return f, true
		}
	}
	return 0, false
}

// equalFoldASCII compares a and b ignoring the case of ASCII letters only.
func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lowerASCII(a[i]) != lowerASCII(b[i]) {
			return false
		}
	}
	return true
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
