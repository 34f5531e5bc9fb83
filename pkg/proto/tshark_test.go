package proto

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/miredo-go/miredo/internal/pcapfile"
)

// TestTsharkDecodesOurPackets hands the packets our builders write to
// Wireshark's dissectors, an implementation we did not write, and checks the
// fields it decodes are the ones we meant, with no malformed packet or bad
// checksum reported. CI installs tshark; without it the test skips.
func TestTsharkDecodesOurPackets(t *testing.T) {
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		t.Skip("tshark not installed (apt-get install tshark, or run scripts/install-deps.sh)")
	}
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
	}

	fields := map[string]bool{"_ws.malformed": true, "_ws.expert.severity": true, "frame.len": true}
	for _, f := range frames {
		for k := range f.want {
			fields[k] = true
		}
	}
	var names []string
	for k := range fields {
		names = append(names, k)
	}

	var buf bytes.Buffer
	w, err := pcapfile.NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range frames {
		if err := w.WritePacket(pcapfile.AppendUDP4(nil, f.src, f.dst, f.payload)); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(t.TempDir(), "ours.pcap")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"-r", path, "-n", "-d", "udp.port==3545,teredo", "-d", "udp.port==40000,teredo",
		"-T", "fields", "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=,"}
	for _, n := range names {
		args = append(args, "-e", n)
	}
	cmd := exec.Command(tshark, args...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir()) // no user preferences
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark: %v\n%s", err, stderr.String())
	}
	lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
	if len(lines) != len(frames) {
		t.Fatalf("tshark printed %d lines for %d frames:\n%s", len(lines), len(frames), out)
	}
	for i, f := range frames {
		vals := strings.Split(lines[i], "\t")
		got := map[string]string{}
		for j, n := range names {
			if j < len(vals) {
				got[n] = vals[j]
			}
		}
		if got["_ws.malformed"] != "" || severityAtLeastWarn(got["_ws.expert.severity"]) {
			t.Errorf("%s: tshark reports malformed=%q expert severity=%q", f.name, got["_ws.malformed"], got["_ws.expert.severity"])
		}
		for k, want := range f.want {
			if got[k] != want {
				t.Errorf("%s: %s = %q, want %q", f.name, k, got[k], want)
			}
		}
	}
	if t.Failed() {
		t.Logf("tshark output:\n%s", out)
	}
}

// severityAtLeastWarn reads tshark's expert severities (comma-separated
// numbers: 0x00200000 chat, 0x00400000 note, 0x00600000 warn, 0x00800000
// error) and reports whether any is a warning or an error.
func severityAtLeastWarn(s string) bool {
	for _, v := range strings.Split(s, ",") {
		var n uint64
		if _, err := fmt.Sscan(v, &n); err == nil && n >= 0x00600000 {
			return true
		}
	}
	return false
}
