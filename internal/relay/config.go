package relay

import "net/netip"

// Config is what the relay needs to run, after flags and miredo.conf have been
// merged.
type Config struct {
	Restricted  bool       // RelayType restricted: also send direct bubbles
	Prefix      netip.Addr // Teredo prefix routed to the tunnel
	Interface   string     // InterfaceName
	MTU         int        // InterfaceMTU
	BindAddress netip.Addr
	BindPort    uint16
	MaxPeers    int
	User        string
	Chroot      string
	PIDFile     string
}
