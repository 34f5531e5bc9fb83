package server

import "net/netip"

// Config is what the server needs to run, after flags and miredo-server.conf
// have been merged.
type Config struct {
	Primary   netip.Addr // ServerBindAddress
	Secondary netip.Addr // ServerBindAddress2; primary+1 when unset
	Prefix    netip.Addr // advertised Teredo prefix (first 32 bits used)
	MTU       int        // advertised in the RA MTU option
	User      string
	Chroot    string
	PIDFile   string
}
