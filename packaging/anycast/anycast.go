// SPDX-License-Identifier: MIT

// Package anycast holds the configurations of a Teredo fleet, as an
// operator installs them and as the namespace lab runs them
// (docs/anycast-relays.md): BIRD 2 on a relay host and on the upstream
// router, and dnsmasq serving the name of a server pool. Each BIRD file is
// included after the site's values are defined (the file's head says
// which); the lab does the same with its own addresses.
package anycast

import "embed"

// File names.
const (
	RelayBIRD    = "teredo-relay.bird.conf"
	UpstreamBIRD = "teredo-upstream.bird.conf"
	PoolDNSMasq  = "teredo-pool.dnsmasq.conf"
)

// AnnounceInterface is the interface the relay BIRD configuration announces
// the Teredo prefix by: miredo-relay --announce-interface must name it.
const AnnounceInterface = "teredo-bgp"

// PoolName is the server pool's name in PoolDNSMasq.
const PoolName = "teredo.example.net"

//go:embed *.conf
var files embed.FS

// File returns one of the configurations.
func File(name string) ([]byte, error) { return files.ReadFile(name) }
