// SPDX-License-Identifier: MIT

package client

import (
	"bufio"
	"bytes"
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// igdAnswer is a gateway's answer to our search, as miniupnpd words it.
const igdAnswer = "HTTP/1.1 200 OK\r\n" +
	"CACHE-CONTROL: max-age=120\r\n" +
	"ST: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n" +
	"USN: uuid:4c616267-6174-6577-0000-000000000000::urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n" +
	"EXT:\r\n" +
	"SERVER: Linux/6 UPnP/1.1 MiniUPnPd/2.3.1\r\n" +
	"LOCATION: http://10.0.0.1:5000/rootDesc.xml\r\n" +
	"\r\n"

// fakeDevice listens on a loopback address and, when answer is set, answers
// each M-SEARCH with it, from its own socket or, when replyFrom is set,
// from a socket bound there. It reports each search it reads.
type fakeDevice struct {
	conn     *net.UDPConn
	searches chan *http.Request
}

func newFakeDevice(t *testing.T, addr, answer, replyFrom string) *fakeDevice {
	t.Helper()
	conn, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(addr)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	reply := conn
	if replyFrom != "" {
		if reply, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.MustParseAddrPort(replyFrom))); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { reply.Close() })
	}
	d := &fakeDevice{conn: conn, searches: make(chan *http.Request, 8)}
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				return
			}
			req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(buf[:n])))
			if err != nil {
				continue
			}
			select {
			case d.searches <- req:
			default:
			}
			if answer != "" {
				_, _ = reply.WriteToUDPAddrPort([]byte(answer), from)
			}
		}
	}()
	return d
}

func (d *fakeDevice) addr() netip.AddrPort { return d.conn.LocalAddr().(*net.UDPAddr).AddrPort() }

// device is a test's fake device.
func device(addr, answer, replyFrom string) func(t *testing.T) netip.AddrPort {
	return func(t *testing.T) netip.AddrPort { return newFakeDevice(t, addr, answer, replyFrom).addr() }
}

// closedPort is a loopback port nothing listens on.
func closedPort(t *testing.T) netip.AddrPort {
	t.Helper()
	c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	a := c.LocalAddr().(*net.UDPAddr).AddrPort()
	c.Close()
	return a
}

// TestProbeGateway: the unicast search tells an answering next hop (from
// port 1900 or another, as libupnp answers), a refusing one (nothing on
// the port: ICMP port unreachable) and a silent one apart, at once for the
// first two; answers from another address or without a gateway's LOCATION
// are not taken for the next hop's.
func TestProbeGateway(t *testing.T) {
	const bound = 400 * time.Millisecond
	cases := []struct {
		name   string
		target func(t *testing.T) netip.AddrPort
		want   probeResult
		loc    string
		fast   bool // decided well before the bound
	}{
		{name: "answers", want: probeAnswered, loc: "http://10.0.0.1:5000/rootDesc.xml", fast: true,
			target: device("127.0.0.1:0", igdAnswer, "")},
		{name: "answers from another port", want: probeAnswered, loc: "http://10.0.0.1:5000/rootDesc.xml", fast: true,
			target: device("127.0.0.1:0", igdAnswer, "127.0.0.1:0")},
		{name: "refuses", want: probeRefused, fast: true, target: closedPort},
		{name: "silent", want: probeSilent, target: device("127.0.0.1:0", "", "")},
		{name: "answer from another address", want: probeSilent, target: device("127.0.0.2:0", igdAnswer, "127.0.0.3:0")},
		{name: "not a gateway", want: probeSilent,
			target: device("127.0.0.1:0", strings.Replace(igdAnswer, "device:InternetGatewayDevice", "device:MediaServer", 1), "")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			gw := tc.target(t)
			ctx, cancel := context.WithTimeout(t.Context(), bound)
			defer cancel()
			start := time.Now()
			r, loc, err := probeGateway(ctx, netip.Addr{}, gw)
			took := time.Since(start)
			if err != nil {
				t.Fatal(err)
			}
			if r != tc.want {
				t.Fatalf("probe of %v: %v, want %v", gw, r, tc.want)
			}
			if tc.loc != "" && (loc == nil || loc.String() != tc.loc) {
				t.Errorf("location %v, want %s", loc, tc.loc)
			}
			if tc.fast && took > bound/2 {
				t.Errorf("took %v, want well under the bound %v", took, bound)
			}
			if !tc.fast && took < bound-50*time.Millisecond {
				t.Errorf("gave up after %v, before the bound %v", took, bound)
			}
		})
	}
}

// TestProbeGatewayRequest: the search is a unicast M-SEARCH for the
// gateway type, with the MX strict miniupnpd needs, sent twice to a silent
// next hop.
func TestProbeGatewayRequest(t *testing.T) {
	d := newFakeDevice(t, "127.0.0.1:0", "", "")
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if r, _, err := probeGateway(ctx, netip.MustParseAddr("127.0.0.1"), d.addr()); err != nil || r != probeSilent {
		t.Fatalf("%v %v", r, err)
	}
	for i := range 2 {
		select {
		case req := <-d.searches:
			if req.Method != "M-SEARCH" || req.RequestURI != "*" || req.Host != d.addr().String() ||
				req.Header.Get("Man") != `"ssdp:discover"` || req.Header.Get("St") != igdSearchTarget || req.Header.Get("Mx") != "1" {
				t.Errorf("search %d: %s %s host %q %v", i, req.Method, req.RequestURI, req.Host, req.Header)
			}
		default:
			t.Fatalf("%d searches, want 2", i)
		}
	}
}

// TestProbeGatewayCancel: a cancelled search ends the wait at once.
func TestProbeGatewayCancel(t *testing.T) {
	d := newFakeDevice(t, "127.0.0.1:0", "", "")
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(50*time.Millisecond, cancel)
	start := time.Now()
	if r, _, _ := probeGateway(ctx, netip.Addr{}, d.addr()); r != probeSilent {
		t.Fatalf("%v", r)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("took %v after the cancel", took)
	}
}

func TestParseSearchResponse(t *testing.T) {
	cases := []struct {
		name, in, want string
	}{
		{"miniupnpd", igdAnswer, "http://10.0.0.1:5000/rootDesc.xml"},
		{"lower-case names", "HTTP/1.1 200 OK\r\nst: urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n" +
			"location: http://10.0.0.1:5000/rootDesc.xml\r\n\r\n", "http://10.0.0.1:5000/rootDesc.xml"},
		{"IGD:2", strings.Replace(igdAnswer, "Device:1\r\nUSN", "Device:2\r\nUSN", 1), "http://10.0.0.1:5000/rootDesc.xml"},
		{"Linksys spacing", "HTTP/1.1 200 OK\r\nCache-Control:max-age=120\r\nLocation:http://192.168.5.1:5678/rootDesc.xml\r\n" +
			"ST:urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\nEXT:\r\n\r\n", "http://192.168.5.1:5678/rootDesc.xml"},
		{"not found", strings.Replace(igdAnswer, "200 OK", "404 Not Found", 1), ""},
		{"other device", strings.Replace(igdAnswer, "device:InternetGatewayDevice", "service:WANIPConnection", 1), ""},
		{"no location", strings.Replace(igdAnswer, "LOCATION: http://10.0.0.1:5000/rootDesc.xml\r\n", "", 1), ""},
		{"https location", strings.Replace(igdAnswer, "http://", "https://", 1), ""},
		{"relative location", strings.Replace(igdAnswer, "http://10.0.0.1:5000", "", 1), ""},
		{"a search, not an answer", string(searchRequest(netip.MustParseAddrPort("10.0.0.1:1900"), igdSearchTarget)), ""},
		{"empty", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			loc, err := parseSearchResponse([]byte(tc.in))
			switch {
			case tc.want == "" && err == nil:
				t.Errorf("accepted: %v", loc)
			case tc.want != "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && loc.String() != tc.want:
				t.Errorf("location %v, want %s", loc, tc.want)
			}
		})
	}
}

// FuzzParseSearchResponse: any datagram a LAN device sends is parsed
// without panicking, and what is accepted is an absolute http URL.
func FuzzParseSearchResponse(f *testing.F) {
	f.Add([]byte(igdAnswer))
	f.Add([]byte("HTTP/1.1 200 OK\r\nLocation:http://192.168.5.1:5678/rootDesc.xml\r\nST:urn:schemas-upnp-org:device:InternetGatewayDevice:1\r\n\r\n"))
	f.Add(searchRequest(netip.MustParseAddrPort("10.0.0.1:1900"), igdSearchTarget))
	f.Add([]byte("HTTP/1.1 200 OK\r\nST: urn:schemas-upnp-org:device:InternetGatewayDevice:2\r\nLOCATION: http://[::1]:80/x\r\nContent-Length: 5\r\n\r\nab"))
	f.Fuzz(func(t *testing.T, b []byte) {
		loc, err := parseSearchResponse(b)
		if err != nil {
			return
		}
		if loc.Scheme != "http" || loc.Host == "" {
			t.Fatalf("accepted %q", loc)
		}
	})
}
