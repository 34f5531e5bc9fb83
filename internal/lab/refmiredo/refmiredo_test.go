// SPDX-License-Identifier: MIT

package refmiredo

import (
	"net/netip"
	"strings"
	"testing"
)

// The address of client 1 in the reference capture (pkg/proto/testdata/client-wan.pcap).
func TestDecode(t *testing.T) {
	server, flags, mapped, err := Decode(netip.MustParseAddr("2001:0:c000:20a:4c8:769c:39cc:9bfd"))
	if err != nil {
		t.Fatal(err)
	}
	if server != netip.MustParseAddr("192.0.2.10") || flags != 0x04c8 || mapped != netip.MustParseAddrPort("198.51.100.2:35171") {
		t.Errorf("got server %s flags %#x mapped %s", server, flags, mapped)
	}
	if _, _, _, err := Decode(netip.MustParseAddr("2001:db8::1")); err == nil {
		t.Error("2001:db8::1 decoded as Teredo")
	}
}

func TestConfigs(t *testing.T) {
	a := netip.MustParseAddr("192.0.2.10")
	cases := []struct{ conf, want string }{
		{ServerConfig(a), "ServerBindAddress 192.0.2.10\n"},
		{RelayConfig(a, "teredo"), "RelayType cone\n"},
		{RelayConfig(a, "teredo"), "InterfaceName teredo\n"},
		{ClientConfig(a, "teredo"), "ServerAddress 192.0.2.10\n"},
		{ClientConfig(a, "teredo"), "InterfaceName teredo\n"},
	}
	for _, tc := range cases {
		if !strings.Contains(tc.conf, tc.want) {
			t.Errorf("config lacks %q:\n%s", tc.want, tc.conf)
		}
	}
}
