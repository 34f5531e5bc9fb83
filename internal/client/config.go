package client

import "net/netip"

// Config is what the client needs to run, after flags and miredo.conf have
// been merged.
type Config struct {
	Server      string     // ServerAddress: host name or IPv4, resolved at start and after loss
	Server2     string     // ServerAddress2: primary+1 when empty
	Interface   string     // InterfaceName
	BindAddress netip.Addr // BindAddress; unspecified means any
	BindPort    uint16     // BindPort; 0 means ephemeral
	Hook        string     // script run with Miredo's client-hook environment
	User        string
	Chroot      string
	PIDFile     string
}
