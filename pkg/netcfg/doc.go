// SPDX-License-Identifier: MIT

// Package netcfg configures the Teredo tunnel interface through netlink:
// its MTU, state, addresses and routes ([Link]), the clean-up of what a
// crashed run left on it ([Link.CleanStart], [DeleteStaleLink]), and
// running code inside another network namespace ([RunInNetNS]). A [Link]
// works on a *netlink.Handle, so that tests can point it at a private
// network namespace.
//
// It also owns the facts about the interface that the device package
// [github.com/miredo-go/miredo/pkg/netcfg/tundev] shares: the default
// name, the MTU bounds, the sentinel errors and the rules for interface
// names. tundev imports this package, never the reverse.
//
// Everything here is Linux-only, like the daemons that use it.
package netcfg
