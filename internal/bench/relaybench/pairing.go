// SPDX-License-Identifier: MIT

package main

import (
	"slices"
	"strings"
)

// role is one end of the Teredo data path: Debian's Miredo 1.2.6 or our
// daemon with extra arguments.
type role struct {
	miredo bool
	args   []string
}

func (r role) String() string {
	if r.miredo {
		return "Miredo"
	}
	return strings.Join(append([]string{"ours"}, r.args...), " ")
}

// pairing is one configuration of the path client ↔ relay ↔ native: a
// Teredo client and relay, or the kernel's VXLAN tunnel as the ceiling.
type pairing struct {
	// key names it for -only (no spaces); title for the table.
	key, title    string
	client, relay role
	vxlan         bool
}

// refKey is the pairing every ratio is taken against.
const refKey = "miredo"

// standardPairings are measured in this order in every round. Extra
// arguments go to our daemons (another engineer's flags, kill switches).
func standardPairings(clientArgs, relayArgs []string) []pairing {
	miredo, ourClient, ourRelay := role{miredo: true}, role{args: clientArgs}, role{args: relayArgs}
	return []pairing{
		{key: refKey, title: "Miredo client + Miredo relay", client: miredo, relay: miredo},
		{key: "ours", title: "our client + our relay", client: ourClient, relay: ourRelay},
		{key: "our-relay", title: "Miredo client + our relay", client: miredo, relay: ourRelay},
		{key: "our-client", title: "our client + Miredo relay", client: ourClient, relay: miredo},
		{key: "vxlan", title: "kernel VXLAN (ceiling)", vxlan: true},
	}
}

// legend says what runs in a pairing, with our daemons' extra arguments.
func (p pairing) legend() string {
	if p.vxlan {
		return "VXLAN over IPv4 from the client host through nat1 to the relay host, IPv6 inside, kernel only"
	}
	return "client " + p.client.String() + ", relay " + p.relay.String()
}

// parseVariant reads -variant "KEY|CLIENT|RELAY", where CLIENT and RELAY
// are "miredo" or "ours" followed by arguments for our daemon, e.g.
// "nobatch|ours|ours --no-batch".
func parseVariant(s string) (pairing, error) {
	parts := strings.Split(s, "|")
	if len(parts) != 3 {
		return pairing{}, usagef("-variant %q: want KEY|CLIENT|RELAY, e.g. 'nobatch|ours|ours --no-batch'", s)
	}
	key := strings.TrimSpace(parts[0])
	if key == "" || strings.ContainsAny(key, " \t,") {
		return pairing{}, usagef("-variant %q: the key must be one word", s)
	}
	client, err := parseRole(parts[1])
	if err != nil {
		return pairing{}, usagef("-variant %q: client: %v", s, err)
	}
	relay, err := parseRole(parts[2])
	if err != nil {
		return pairing{}, usagef("-variant %q: relay: %v", s, err)
	}
	return pairing{key: key, title: "variant " + key, client: client, relay: relay}, nil
}

func parseRole(s string) (role, error) {
	f := strings.Fields(s)
	switch {
	case len(f) == 0:
		return role{}, usagef("empty; want miredo or ours [ARGS]")
	case f[0] == "miredo" && len(f) == 1:
		return role{miredo: true}, nil
	case f[0] == "miredo":
		return role{}, usagef("%q: Miredo takes no arguments here", s)
	case f[0] == "ours":
		return role{args: f[1:]}, nil
	}
	return role{}, usagef("%q: want miredo or ours [ARGS]", s)
}

// selectPairings keeps the pairings named in only (keys, comma-separated;
// empty keeps all), in their own order.
func selectPairings(all []pairing, only string) ([]pairing, error) {
	if only == "" {
		return all, nil
	}
	var keys []string
	for _, p := range all {
		keys = append(keys, p.key)
	}
	want := map[string]bool{}
	for _, k := range strings.Split(only, ",") {
		k = strings.TrimSpace(k)
		if !slices.Contains(keys, k) {
			return nil, usagef("-only: no pairing %q (have %s)", k, strings.Join(keys, ","))
		}
		want[k] = true
	}
	var out []pairing
	for _, p := range all {
		if want[p.key] {
			out = append(out, p)
		}
	}
	return out, nil
}

// usesMiredo and usesOurs say which binaries the pairings need.
func usesMiredo(ps []pairing) bool {
	return slices.ContainsFunc(ps, func(p pairing) bool { return !p.vxlan && (p.client.miredo || p.relay.miredo) })
}

func usesOurs(ps []pairing) bool {
	return slices.ContainsFunc(ps, func(p pairing) bool { return !p.vxlan && (!p.client.miredo || !p.relay.miredo) })
}
