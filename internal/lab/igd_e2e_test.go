// SPDX-License-Identifier: MIT

//go:build e2e

package lab_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/miredo-go/miredo/internal/lab"
)

// upnpLab is a lab whose nat1 is symmetric with the UPnP gateway, and a
// socket on client1 to map.
type upnpLab struct {
	l      *lab.Lab
	gw     *lab.Gateway
	sock   *net.UDPConn
	local  netip.AddrPort
	client *lab.Host
}

func newUPnPLab(t *testing.T) *upnpLab {
	t.Helper()
	l := lab.New(t, lab.Options{NAT1: lab.SymmetricUPnP})
	u := &upnpLab{l: l, gw: l.Gateway(lab.NAT1), client: l.Host(lab.Client1)}
	if u.gw == nil {
		t.Fatal("nat1 in symmetric-upnp mode has no gateway")
	}
	var err error
	if u.sock, err = u.client.ListenUDP(netip.AddrPortFrom(u.client.IPv4(), 0)); err != nil {
		t.Fatal(err)
	}
	u.local = u.sock.LocalAddr().(*net.UDPAddr).AddrPort()
	return u
}

// seenFrom sends from the client's socket to a fresh socket on host at a,
// and returns where the packet came from.
func (u *upnpLab) seenFrom(t *testing.T, host string, a netip.AddrPort) netip.AddrPort {
	t.Helper()
	srv, err := u.l.Host(host).ListenUDP(a)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if _, err := u.sock.WriteToUDPAddrPort([]byte("out"), a); err != nil {
		t.Fatal(err)
	}
	_ = srv.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 64)
	_, from, err := srv.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatalf("%s never heard the client: %v", a, err)
	}
	return netip.AddrPortFrom(from.Addr().Unmap(), from.Port())
}

// reaches reports whether a packet from a never-contacted endpoint on host
// (at src) to the client's mapping arrives. A control packet follows it on
// the same path through nat1, answering a flow the client opens to inet1;
// once that is in, the first had every chance to arrive.
func (u *upnpLab) reaches(t *testing.T, host string, src, mapping netip.AddrPort) bool {
	t.Helper()
	from, err := u.l.Host(host).ListenUDP(src)
	if err != nil {
		t.Fatal(err)
	}
	defer from.Close()
	inet1 := u.l.Host(lab.Inet1)
	ctl, err := inet1.ListenUDP(netip.AddrPortFrom(inet1.IPv4(), 4100))
	if err != nil {
		t.Fatal(err)
	}
	defer ctl.Close()
	if _, err := u.sock.WriteToUDPAddrPort([]byte("open"), netip.AddrPortFrom(inet1.IPv4(), 4100)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 64)
	_ = ctl.SetReadDeadline(time.Now().Add(2 * time.Second))
	_, back, err := ctl.ReadFromUDPAddrPort(buf)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := from.WriteToUDPAddrPort([]byte("probe"), mapping); err != nil {
		t.Fatal(err)
	}
	if _, err := ctl.WriteToUDPAddrPort([]byte("control"), back); err != nil {
		t.Fatal(err)
	}
	got := false
	_ = u.sock.SetReadDeadline(time.Now().Add(2 * time.Second))
	for range 2 {
		n, _, err := u.sock.ReadFromUDPAddrPort(buf)
		if err != nil {
			break
		}
		switch string(buf[:n]) {
		case "probe":
			got = true
		case "control":
			_ = u.sock.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		}
	}
	return got
}

// upnpc runs Debian's upnpc on h; it must exit with success unless
// failing is set (upnpc exits with 2 when the gateway refuses an action).
func upnpc(t *testing.T, ctx context.Context, h *lab.Host, failing bool, args ...string) string {
	t.Helper()
	out, err := h.Run(ctx, append([]string{"upnpc"}, args...)...)
	t.Logf("upnpc %s:\n%s", strings.Join(args, " "), out)
	if (err != nil) != failing {
		t.Fatalf("upnpc %v: %v", args, err)
	}
	return string(out)
}

func wantMatch(t *testing.T, out, pattern string) {
	t.Helper()
	if !regexp.MustCompile(pattern).MatchString(out) {
		t.Errorf("upnpc output does not match %q", pattern)
	}
}

// The lab's gateway, driven by Debian's upnpc (miniupnpc 2.2), the
// reference client: discovery, the mapping RFC 6081 §5.3.3 asks for, the
// NAT behaviour it buys, conflicts, a Rebind, deletion and lease expiry.
func TestUPnPGatewayWithUpnpc(t *testing.T) {
	if _, err := exec.LookPath("upnpc"); err != nil {
		t.Skip("needs upnpc (apt-get install miniupnpc)")
	}
	u := newUPnPLab(t)
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	wan := u.l.WAN(lab.NAT1)
	p := fmt.Sprint(u.local.Port())

	// Discovery by SSDP, then AddPortMapping as RFC 6081 §5.3.3 calls it
	// (external port = internal port, "TEREDO", lease 0, which upnpc sends
	// to WANIPConnection:2, where it means a week, as with miniupnpd) and the
	// GetSpecificPortMappingEntry upnpc checks it with. miniupnpc calls
	// a gateway whose external address is reserved, as the documentation
	// ranges are, "not connected?" and goes on only when told to (-i).
	out := upnpc(t, ctx, u.client, false, "-i", "-e", "TEREDO", "-a", u.local.Addr().String(), p, p, "UDP")
	wantMatch(t, out, `Found a \(not connected\?\) IGD : `+regexp.QuoteMeta(strings.TrimSuffix(u.gw.Location(), "/rootDesc.xml")))
	wantMatch(t, out, `desc: `+regexp.QuoteMeta(u.gw.Location()))
	wantMatch(t, out, `ExternalIPAddress = `+regexp.QuoteMeta(wan.String()))
	wantMatch(t, out, fmt.Sprintf(`external %s:%s UDP is redirected to internal %s:%s \(duration=604800\)`,
		regexp.QuoteMeta(wan.String()), p, regexp.QuoteMeta(u.local.Addr().String()), p))
	maps := u.gw.Mappings()
	if len(maps) != 1 || maps[0].External != u.local.Port() || maps[0].Internal != u.local || maps[0].Description != "TEREDO" || maps[0].Lease != 7*24*time.Hour {
		t.Fatalf("gateway holds %+v", maps)
	}

	// What the mapping does (RFC 6081 §3.2): the socket's first flow leaves
	// from the mapped port, later destinations see other ports, and anyone
	// may send to the mapping.
	inet2 := u.l.Host(lab.Inet2)
	if got := u.seenFrom(t, lab.Inet2, netip.AddrPortFrom(inet2.IPv4s()[0], 4200)); got != netip.AddrPortFrom(wan, u.local.Port()) {
		t.Errorf("first flow seen as %s, want the mapping %s:%d", got, wan, u.local.Port())
	}
	if got := u.seenFrom(t, lab.Inet2, netip.AddrPortFrom(inet2.IPv4s()[0], 4201)); got.Port() == u.local.Port() {
		t.Errorf("second destination saw the mapped port %s: the NAT should stay symmetric", got)
	}
	mapping := netip.AddrPortFrom(wan, u.local.Port())
	if !u.reaches(t, lab.Inet2, netip.AddrPortFrom(inet2.IPv4s()[1], 4300), mapping) {
		t.Errorf("a stranger's packet to the mapping %s did not arrive", mapping)
	}

	loc := u.gw.Location()
	out = upnpc(t, ctx, u.client, false, "-u", loc, "-l")
	wantMatch(t, out, fmt.Sprintf(`UDP\s+%s->%s:%s\s+'TEREDO' '' 60480\d`, p, regexp.QuoteMeta(u.local.Addr().String()), p))

	// Another LAN host may not take the port: 718 ConflictInMappingEntry.
	out = upnpc(t, ctx, u.client, true, "-u", loc, "-a", "10.0.0.3", "5000", p, "UDP")
	wantMatch(t, out, `failed with code 718`)

	// A Rebind keeps the mapping, on the new address.
	if err := u.l.Rebind(ctx, lab.NAT1); err != nil {
		t.Fatal(err)
	}
	wan2 := u.l.WAN(lab.NAT1)
	out = upnpc(t, ctx, u.client, false, "-u", loc, "-l")
	wantMatch(t, out, `ExternalIPAddress = `+regexp.QuoteMeta(wan2.String()))
	if !u.reaches(t, lab.Inet2, netip.AddrPortFrom(inet2.IPv4s()[1], 4301), netip.AddrPortFrom(wan2, u.local.Port())) {
		t.Errorf("after a rebind, the mapping on %s did not lead to the client", wan2)
	}

	out = upnpc(t, ctx, u.client, false, "-u", loc, "-d", p, "UDP")
	wantMatch(t, out, `UPNP_DeletePortMapping\(\) returned : 0`)
	if maps := u.gw.Mappings(); len(maps) != 0 {
		t.Errorf("after delete the gateway holds %+v", maps)
	}
	if u.reaches(t, lab.Inet2, netip.AddrPortFrom(inet2.IPv4s()[1], 4302), netip.AddrPortFrom(wan2, u.local.Port())) {
		t.Error("a stranger's packet reached the client after the mapping was deleted")
	}
	out = upnpc(t, ctx, u.client, true, "-u", loc, "-d", p, "UDP")
	wantMatch(t, out, `failed with code : 714`)

	// A lease of one second runs out by itself, rules included.
	out = upnpc(t, ctx, u.client, false, "-u", loc, "-e", "TEREDO", "-a", u.local.Addr().String(), p, p, "UDP", "1")
	wantMatch(t, out, `is redirected to internal .*\(duration=1\)`)
	deadline := time.Now().Add(5 * time.Second)
	for len(u.gw.Mappings()) != 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if maps := u.gw.Mappings(); len(maps) != 0 {
		t.Fatalf("a one-second lease still holds after 5 s: %+v", maps)
	}
	rules, err := u.l.Host(lab.NAT1).Run(ctx, "nft", "list", "map", "ip", "labnat", "upnp_in")
	if err != nil || strings.Contains(string(rules), "elements") {
		t.Errorf("the expired mapping is still in nat1's rules (%v):\n%s", err, rules)
	}
}

// The lab's gateway, driven by goupnp (the library the client is to use,
// through the igdcheck command run in client1's namespace) as
// WANIPConnection:1 and :2: discovery, the RFC 6081 §5.3.3 mapping, read
// back, a stranger reaching it, deletion.
func TestUPnPGatewayWithGoupnp(t *testing.T) {
	u := newUPnPLab(t)
	bin := filepath.Join(t.TempDir(), "igdcheck")
	build := exec.Command("go", "build", "-o", bin, "github.com/miredo-go/miredo/internal/lab/igdcheck")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build igdcheck: %v\n%s", err, out)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	run := func(args ...string) string {
		t.Helper()
		out, err := u.client.Run(ctx, append([]string{bin}, args...)...)
		t.Logf("igdcheck %s:\n%s", strings.Join(args, " "), out)
		if err != nil {
			t.Fatalf("igdcheck %v: %v", args, err)
		}
		return string(out)
	}
	wan := u.l.WAN(lab.NAT1)
	p := fmt.Sprint(u.local.Port())
	inet2 := u.l.Host(lab.Inet2)
	for i, c := range []struct {
		service string
		lease   string // what the gateway grants for a lease of 0
	}{{"1", "0"}, {"2", "604800"}} {
		t.Run("WANIPConnection"+c.service, func(t *testing.T) {
			out := run("-service", c.service, "add", u.local.Addr().String(), p, "0")
			wantMatch(t, out, `(?m)^location `+regexp.QuoteMeta(u.gw.Location())+`$`)
			wantMatch(t, out, `(?m)^external `+regexp.QuoteMeta(wan.String())+`$`)
			wantMatch(t, out, fmt.Sprintf(`(?m)^entry %s enabled=true description=TEREDO lease=%s$`, regexp.QuoteMeta(u.local.String()), c.lease))
			if maps := u.gw.Mappings(); len(maps) != 1 || maps[0].Internal != u.local {
				t.Fatalf("gateway holds %+v", maps)
			}
			src := netip.AddrPortFrom(inet2.IPv4s()[1], uint16(4400+i))
			if !u.reaches(t, lab.Inet2, src, netip.AddrPortFrom(wan, u.local.Port())) {
				t.Errorf("a stranger's packet to the mapping did not arrive")
			}
			out = run("-service", c.service, "-url", u.gw.Location(), "delete", p)
			wantMatch(t, out, `(?m)^gone .*714`)
			if maps := u.gw.Mappings(); len(maps) != 0 {
				t.Errorf("after delete the gateway holds %+v", maps)
			}
		})
	}
}
