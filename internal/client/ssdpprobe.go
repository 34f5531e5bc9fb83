// SPDX-License-Identifier: MIT

package client

// The gateway probe: a unicast SSDP search (UPnP Device Architecture 1.1
// §1.3.2) sent to the next hop of our route to the Teredo server, which is
// the only IGD whose mapping the server can see (an IGD elsewhere on the LAN
// does not carry our traffic). It tells in one round trip what the
// multicast search can only tell by waiting out its bound:
//
//   - the next hop answers: it is a gateway, and its LOCATION is the device
//     description (a unicast search is answered at once, with no MX delay);
//   - ICMP port unreachable comes back (ECONNREFUSED): nothing listens on
//     port 1900 there, so the next hop is no UPnP gateway, and no other
//     device can map our port;
//   - nothing comes back (a firewall dropping the probe, a UDA 1.0 device
//     that ignores unicast searches, a loss): the multicast search decides,
//     as it did before the probe.
//
// The socket is not connected: devices built on the Intel SDK (libupnp),
// and the lab's gateway, answer from another port than 1900, which a
// socket connected to port 1900 would never see. IP_RECVERR makes the
// kernel report ICMP errors on it all the same (Linux reports them on an
// unconnected UDP socket only with it), on the next read or write.
//
// Debian's miniupnpd 2.3.1 answers the probe in about 50 ms (its scheduler
// delays every search response that much), from port 1900. Two things can
// make the probe fall silent or mislead. Routers rate-limit ICMP errors
// (Linux: one a second per host after a burst of six), so a client started
// several times a second finds its next hop silent and waits out the
// search, as it always did. And a gateway whose SSDP socket were bound to
// the multicast group alone would refuse a unicast search it should answer
// (UDA 1.1); miniupnpd and libupnp bind the wildcard address, and such a
// client would lose only the mapping, as with --no-upnp.

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

const (
	// ssdpPort is where devices take searches, multicast or unicast.
	ssdpPort = 1900
	// probeResend: the probe is sent a second time this long after the
	// first when neither an answer nor a refusal came back, against the
	// loss of one datagram.
	probeResend = 100 * time.Millisecond
	// probeMaxErrors bounds the other errors (ICMP host or network
	// unreachable, ...) the probe reads past while it waits.
	probeMaxErrors = 4
	// igdTypePrefix starts the search target of every version of the
	// InternetGatewayDevice.
	igdTypePrefix = "urn:schemas-upnp-org:device:InternetGatewayDevice:"
)

// probeResult is what the probe learned of the next hop.
type probeResult int

const (
	probeSilent   probeResult = iota // nothing came back in time: unknown
	probeRefused                     // port unreachable: no gateway
	probeAnswered                    // a gateway, at the location given
)

func (r probeResult) String() string {
	switch r {
	case probeRefused:
		return "refused"
	case probeAnswered:
		return "answered"
	default:
		return "silent"
	}
}

// searchRequest is a unicast M-SEARCH for target at host (UDA 1.1
// §1.3.2). UDA 1.1 leaves MX out of unicast searches, but miniupnpd built
// with UPNP_STRICT drops any search without one: MX 1 is answered by both,
// at once by the devices that follow UDA 1.1 and within a second by those
// that delay by MX.
func searchRequest(host netip.AddrPort, target string) []byte {
	return []byte("M-SEARCH * HTTP/1.1\r\n" +
		"HOST: " + host.String() + "\r\n" +
		"MAN: \"ssdp:discover\"\r\n" +
		"MX: 1\r\n" +
		"ST: " + target + "\r\n" +
		"USER-AGENT: Linux UPnP/1.1 miredo-go\r\n" +
		"\r\n")
}

// errNotGateway: a search response that names no Internet Gateway Device.
var errNotGateway = errors.New("not an Internet Gateway Device")

// parseSearchResponse reads an SSDP search response (UDA 1.1 §1.3.3) and
// returns its LOCATION, the URL of the device description. It must be a
// 200 answer for an InternetGatewayDevice (of any version: our search for
// version 1 may be answered as such or with the version the device has),
// with an absolute http URL.
func parseSearchResponse(b []byte) (*url.URL, error) {
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(b)), nil)
	if err != nil {
		return nil, fmt.Errorf("SSDP response: %w", err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("SSDP response: status %q", resp.Status)
	}
	if st := resp.Header.Get("St"); !strings.HasPrefix(st, igdTypePrefix) {
		return nil, fmt.Errorf("SSDP response for %q: %w", st, errNotGateway)
	}
	loc, err := url.Parse(strings.TrimSpace(resp.Header.Get("Location")))
	if err != nil {
		return nil, fmt.Errorf("SSDP response: LOCATION: %w", err)
	}
	if loc.Scheme != "http" || loc.Host == "" {
		return nil, fmt.Errorf("SSDP response: LOCATION %q is no http URL", loc)
	}
	return loc, nil
}

// probeGateway sends a unicast search for an InternetGatewayDevice to gw
// (the next hop, port 1900 in use) from src (our socket's address, or
// unspecified) and waits until ctx ends for an answer from gw's address
// (on any port) or a refusal. An error is returned only when the probe
// could not be sent at all; the result is then probeSilent.
func probeGateway(ctx context.Context, src netip.Addr, gw netip.AddrPort) (probeResult, *url.URL, error) {
	if !src.IsValid() {
		src = netip.IPv4Unspecified()
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) {
			serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IP, unix.IP_RECVERR, 1)
		}); err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(ctx, "udp4", netip.AddrPortFrom(src, 0).String())
	if err != nil {
		return probeSilent, nil, fmt.Errorf("gateway probe: %w", err)
	}
	conn := pc.(*net.UDPConn)
	defer conn.Close()
	// A cancelled search ends the wait at once.
	stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()

	req := searchRequest(gw, igdSearchTarget)
	to := netip.AddrPortFrom(gw.Addr().Unmap(), gw.Port())
	send := func() (bool, error) {
		_, err := conn.WriteToUDPAddrPort(req, to)
		if errors.Is(err, syscall.ECONNREFUSED) {
			// The refusal of an earlier send, reported on this one.
			return true, nil
		}
		return false, err
	}
	if refused, err := send(); refused {
		return probeRefused, nil, nil
	} else if err != nil {
		return probeSilent, nil, fmt.Errorf("gateway probe: %w", err)
	}
	resend := time.Now().Add(probeResend)
	deadline, _ := ctx.Deadline()
	buf := make([]byte, 2048)
	for errs := 0; ; {
		d := deadline
		if !resend.IsZero() && (d.IsZero() || resend.Before(d)) {
			d = resend
		}
		_ = conn.SetReadDeadline(d)
		if ctx.Err() != nil {
			return probeSilent, nil, nil
		}
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		var errno syscall.Errno
		switch {
		case err == nil:
			if from.Addr().Unmap() != to.Addr() {
				continue // not the next hop
			}
			if loc, perr := parseSearchResponse(buf[:n]); perr == nil {
				return probeAnswered, loc, nil
			}
		case errors.Is(err, syscall.ECONNREFUSED):
			return probeRefused, nil, nil
		case errors.Is(err, os.ErrDeadlineExceeded):
			now := time.Now()
			switch {
			case ctx.Err() != nil:
				return probeSilent, nil, nil
			case !resend.IsZero() && !now.Before(resend):
				resend = time.Time{}
				if refused, err := send(); refused {
					return probeRefused, nil, nil
				} else if err != nil {
					return probeSilent, nil, nil
				}
			case !deadline.IsZero() && !now.Before(deadline):
				return probeSilent, nil, nil
			}
		case errors.As(err, &errno) && errs < probeMaxErrors:
			// Another ICMP error (host or network unreachable): it
			// tells nothing about port 1900; wait on.
			errs++
		default:
			return probeSilent, nil, nil
		}
	}
}
