// SPDX-License-Identifier: MIT

package proto

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"

	"github.com/miredo-go/miredo/internal/wirecheck"
)

// TestTsharkDecodesOurPackets hands the packets our builders write to
// Wireshark's dissectors, an implementation we did not write, and checks the
// fields it decodes are the ones we meant, with no malformed packet or bad
// checksum reported. CI installs tshark; without it the test skips.
func TestTsharkDecodesOurPackets(t *testing.T) {
	client := netip.MustParseAddrPort("198.51.100.2:40000")
	server := netip.MustParseAddrPort("192.0.2.10:3544")
	relay := netip.MustParseAddrPort("192.0.2.20:3545")
	nonce := [NonceLen]byte{0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03, 0x04}
	teredo := Address{Prefix: DefaultPrefix, Server: server.Addr(), Flags: 0x04c8, MappedPort: client.Port(), MappedAddr: client.Addr()}.Addr()
	native := netip.MustParseAddr("2001:db8:2::2")
	big := AppendEchoRequest(nil, EchoFields{Src: native, Dst: teredo, HopLimit: 64, Data: make([]byte, 1400)})

	type frame struct {
		name     string
		src, dst netip.AddrPort
		payload  []byte
		want     map[string]string
	}
	frames := []frame{
		{"RS", client, server, AppendRouterSolicitation(nil, nonce, false), map[string]string{
			"teredo.auth.idlen": "0", "teredo.auth.aulen": "0", "teredo.auth.nonce": "deadbeef01020304", "teredo.auth.conf": "00",
			"ipv6.src": "fe80::ffff:ffff:ffff", "ipv6.dst": "ff02::2", "ipv6.hlim": "255",
			"icmpv6.type": "133", "icmpv6.code": "0", "icmpv6.checksum": "0x7d37", "icmpv6.checksum.status": "1",
		}},
		{"cone RS", client, server, AppendRouterSolicitation(nil, nonce, true), map[string]string{
			"ipv6.src": "fe80::8000:5445:5245:444f", "icmpv6.type": "133", "icmpv6.checksum": "0x125d", "icmpv6.checksum.status": "1",
		}},
		{"RA", server, client, AppendRouterAdvertisement(nil, RAFields{Nonce: nonce, Client: client, Dst: LinkLocalClient(),
			Server: server.Addr(), Prefix: DefaultPrefix, MTU: 1400}), map[string]string{
			"teredo.auth.nonce": "deadbeef01020304", "teredo.orig.port": "40000", "teredo.orig.addr": "198.51.100.2",
			"ipv6.src": "fe80::8000:f227:3fff:fdf5", "ipv6.dst": "fe80::ffff:ffff:ffff", "ipv6.hlim": "255",
			"icmpv6.type": "134", "icmpv6.checksum.status": "1", "icmpv6.nd.ra.router_lifetime": "0",
			"icmpv6.nd.ra.retrans_timer": "2000", "icmpv6.opt.prefix": "2001:0:c000:20a::", "icmpv6.opt.prefix.length": "64",
			"icmpv6.opt.mtu": "1400",
		}},
		{"forwarded bubble", server, client, append(AppendOrigin(nil, relay), AppendBubble(nil, netip.MustParseAddr("fe80::1"), teredo, 0)...), map[string]string{
			"teredo.orig.port": "3545", "teredo.orig.addr": "192.0.2.20", "ipv6.nxt": "59", "ipv6.plen": "0", "ipv6.hlim": "0",
			"ipv6.dst_ts_ipv4": "192.0.2.10", "ipv6.dst_tc_port": "40000", "ipv6.dst_tc_ipv4": "198.51.100.2",
		}},
		// RFC 6081 §4: trailers after the bubble. Wireshark knows none of
		// them, but must still read the bubble as one and find nothing wrong.
		{"bubble with trailers", server, client, appendTrailers(append(AppendOrigin(nil, relay), AppendBubble(nil, netip.MustParseAddr("fe80::1"), teredo, 0)...)), map[string]string{
			"teredo.orig.port": "3545", "ipv6.nxt": "59", "ipv6.plen": "0", "ipv6.dst_tc_port": "40000",
		}},
		{"connectivity test", client, server, AppendEchoRequest(nil, EchoFields{Src: teredo, Dst: native, HopLimit: 128, ID: 0x4fdf, Seq: 35932, Data: nonce[:]}), map[string]string{
			"ipv6.src_ts_ipv4": "192.0.2.10", "ipv6.src_tc_port": "40000", "ipv6.src_tc_ipv4": "198.51.100.2",
			"icmpv6.type": "128", "icmpv6.echo.identifier": "0x4fdf", "icmpv6.echo.sequence_number": "35932", "icmpv6.checksum.status": "1",
		}},
		{"echo reply", relay, client, AppendEchoReply(nil, EchoFields{Src: native, Dst: teredo, HopLimit: 64, ID: 7, Seq: 8, Data: nonce[:]}), map[string]string{
			"icmpv6.type": "129", "icmpv6.echo.identifier": "0x0007", "icmpv6.echo.sequence_number": "8", "icmpv6.checksum.status": "1",
		}},
		{"unreachable", relay, client, AppendDestUnreachable(nil, netip.MustParseAddr("2001:db8:1::2"), UnreachAddress, IPv6(big)), map[string]string{
			// The quoted echo is cut, so its own checksum cannot be verified (2).
			"icmpv6.type": "1,128", "icmpv6.code": "3,0", "icmpv6.checksum.status": "1,2", "ipv6.plen": fmt.Sprintf("%d,1408", MinMTU-IPv6HeaderLen),
		}},
		{"parameter problem", relay, client, AppendParamProblem(nil, teredo, ParamProblemNextHeader, 6, IPv6(bubbleWithNext(native, teredo, 17))), map[string]string{
			"icmpv6.type": "4", "icmpv6.code": "1", "icmpv6.pointer": "6", "icmpv6.checksum.status": "1",
		}},
	}

	var fields []string
	seen := map[string]bool{}
	var ds []wirecheck.Datagram
	for _, f := range frames {
		ds = append(ds, wirecheck.Datagram{Src: f.src, Dst: f.dst, Payload: f.payload})
		for k := range f.want {
			if !seen[k] {
				seen[k] = true
				fields = append(fields, k)
			}
		}
	}
	got, err := wirecheck.Decode(t.TempDir(), ds, []uint16{3545, 40000}, fields)
	if errors.Is(err, wirecheck.ErrNoTshark) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	for i, f := range frames {
		if p := wirecheck.Problems(got[i]); p != "" {
			t.Errorf("%s: tshark reports %s", f.name, p)
		}
		for k, want := range f.want {
			if got[i][k] != want {
				t.Errorf("%s: %s = %q, want %q", f.name, k, got[i][k], want)
			}
		}
	}
}

// appendTrailers appends a Nonce, an Alternate Address, a Neighbor Discovery
// Option and a Random Port trailer.
func appendTrailers(b []byte) []byte {
	b = AppendNonceTrailer(b, [TrailerNonceLen]byte{1, 2, 3, 4})
	b, _ = AppendAlternateAddressTrailer(b, []netip.AddrPort{netip.MustParseAddrPort("10.0.0.2:40000")})
	return AppendRandomPortTrailer(AppendDiscoveryTrailer(b, DiscoverySolicitation), 4001)
}

// bubbleWithNext is a header-only IPv6 packet from src to dst whose next
// header is nh: what a parameter problem quotes.
func bubbleWithNext(src, dst netip.Addr, nh uint8) []byte {
	b := AppendBubble(nil, src, dst, 64)
	b[6] = nh
	return b
}
