// SPDX-License-Identifier: MIT

package client

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/huin/goupnp/soap"
)

// fakeIGD records the actions a client calls and answers as told.
type fakeIGD struct {
	mu       sync.Mutex
	adds     []addCall
	deletes  []uint16
	external string
	addErr   func(lease uint32) error
	extErr   error
	renewed  chan struct{}
}

type addCall struct {
	remote       string
	ext, port    uint16
	proto        string
	client, desc string
	enabled      bool
	lease        uint32
}

func (f *fakeIGD) AddPortMappingCtx(_ context.Context, remote string, ext uint16, proto string, port uint16, client string,
	enabled bool, desc string, lease uint32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.addErr != nil {
		if err := f.addErr(lease); err != nil {
			return err
		}
	}
	f.adds = append(f.adds, addCall{remote, ext, port, proto, client, desc, enabled, lease})
	if f.renewed != nil && len(f.adds) > 1 {
		select {
		case f.renewed <- struct{}{}:
		default:
		}
	}
	return nil
}

func (f *fakeIGD) GetExternalIPAddressCtx(context.Context) (string, error) {
	return f.external, f.extErr
}

func (f *fakeIGD) DeletePortMappingCtx(_ context.Context, remote string, ext uint16, proto string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deletes = append(f.deletes, ext)
	return nil
}

func finder(g igd, local string, err error) igdFinder {
	return func(context.Context) (igd, netip.Addr, error) {
		if err != nil {
			return nil, netip.Addr{}, err
		}
		return g, netip.MustParseAddr(local), nil
	}
}

// onlyPermanent is WANIPConnection:1's refusal of a lease with a time.
func onlyPermanent(lease uint32) error {
	if lease == 0 {
		return nil
	}
	f := &soap.SOAPFaultError{FaultCode: "s:Client", FaultString: "UPnPError"}
	f.Detail.UPnPError.Errorcode = upnpOnlyPermanent
	return f
}

// TestTakeUPnP: the mapping RFC 6081 §5.3.3 asks for (the socket's port
// outside, from anyone, UDP, "TEREDO"), with a lease we renew, or a
// permanent one where the gateway takes no other; no extension when any
// step fails, and no mapping left behind when the external address cannot
// be read.
func TestTakeUPnP(t *testing.T) {
	bind := netip.MustParseAddrPort("0.0.0.0:40000")
	log := slog.New(slog.DiscardHandler)
	cases := []struct {
		name      string
		g         *fakeIGD
		find      error
		bind      netip.AddrPort
		wantErr   bool
		wantLease time.Duration
		wantAdd   addCall
		deletes   int
	}{
		{name: "mapped", g: &fakeIGD{external: "198.51.100.2"}, bind: bind, wantLease: upnpLeaseTime,
			wantAdd: addCall{"", 40000, 40000, "UDP", "10.0.0.2", "TEREDO", true, 600}},
		{name: "bound address", g: &fakeIGD{external: "198.51.100.2"}, bind: netip.MustParseAddrPort("10.0.0.9:40000"), wantLease: upnpLeaseTime,
			wantAdd: addCall{"", 40000, 40000, "UDP", "10.0.0.9", "TEREDO", true, 600}},
		{name: "permanent leases only", g: &fakeIGD{external: "198.51.100.2", addErr: onlyPermanent}, bind: bind,
			wantAdd: addCall{"", 40000, 40000, "UDP", "10.0.0.2", "TEREDO", true, 0}},
		{name: "no gateway", g: &fakeIGD{}, find: errNoGateway, bind: bind, wantErr: true},
		{name: "refused", g: &fakeIGD{addErr: func(uint32) error { return errors.New("conflict") }}, bind: bind, wantErr: true},
		{name: "no external address", g: &fakeIGD{extErr: errors.New("down")}, bind: bind, wantErr: true, deletes: 1,
			wantAdd: addCall{"", 40000, 40000, "UDP", "10.0.0.2", "TEREDO", true, 600}},
		{name: "external address not IPv4", g: &fakeIGD{external: "2001:db8::1"}, bind: bind, wantErr: true, deletes: 1,
			wantAdd: addCall{"", 40000, 40000, "UDP", "10.0.0.2", "TEREDO", true, 600}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			u, err := takeUPnP(t.Context(), finder(tc.g, "10.0.0.2", tc.find), tc.bind, log)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err %v, want error %v", err, tc.wantErr)
			}
			if len(tc.g.deletes) != tc.deletes {
				t.Errorf("%d deletions, want %d", len(tc.g.deletes), tc.deletes)
			}
			if tc.wantAdd != (addCall{}) && (len(tc.g.adds) != 1 || tc.g.adds[0] != tc.wantAdd) {
				t.Errorf("AddPortMapping %+v, want %+v", tc.g.adds, tc.wantAdd)
			}
			if err != nil {
				return
			}
			if u.lease != tc.wantLease || u.mapping != netip.MustParseAddrPort("198.51.100.2:40000") {
				t.Errorf("lease %v mapping %v", u.lease, u.mapping)
			}
		})
	}
}

// TestUPnPKeep: the lease is renewed at half its time while the client
// serves, and the mapping deleted when it stops (§5.3.5.1).
func TestUPnPKeep(t *testing.T) {
	g := &fakeIGD{external: "198.51.100.2", renewed: make(chan struct{}, 1)}
	u, err := takeUPnP(t.Context(), finder(g, "10.0.0.2", nil), netip.MustParseAddrPort("0.0.0.0:40000"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	u.lease = 40 * time.Millisecond
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { u.keep(ctx); close(done) }()
	for range 2 {
		select {
		case <-g.renewed:
		case <-time.After(5 * time.Second):
			t.Fatal("no renewal")
		}
	}
	cancel()
	<-done
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(g.deletes) != 1 || g.deletes[0] != 40000 || u.renewed < 2 {
		t.Errorf("deletes %v, %d renewals", g.deletes, u.renewed)
	}
}

// TestIGDSearch: the route and the next hop's answer to the unicast search
// end the search at once when they settle it (no gateway can carry our
// traffic, or the next hop refuses or answers); only a silent next hop or
// an unknown route leaves the multicast search to wait out its bound. Each
// search logs one line saying what decided it.
func TestIGDSearch(t *testing.T) {
	gw := netip.MustParseAddr("10.0.0.1")
	loc := "http://10.0.0.1:5000/rootDesc.xml"
	mloc := "http://10.0.0.7:5000/rootDesc.xml"
	cases := []struct {
		name      string
		hop       nextHop
		probe     probeResult
		multicast []string // LOCATIONs the multicast search finds
		wantErr   error
		wantAt    string // the description read
		waits     bool   // the multicast search ran to its bound
		wantLog   []string
	}{
		{name: "server on-link", hop: nextHop{kind: hopNone, why: "route to the server is on-link"}, wantErr: errNoGateway,
			wantLog: []string{"route=none", "probe=none", `route_detail="route to the server is on-link"`}},
		{name: "next hop refuses", hop: nextHop{kind: hopGateway, addr: gw}, probe: probeRefused, multicast: []string{mloc},
			wantErr: errNoGateway, wantLog: []string{"route=gateway", "next_hop=10.0.0.1", "probe=refused"}},
		{name: "next hop answers", hop: nextHop{kind: hopGateway, addr: gw}, probe: probeAnswered, multicast: []string{mloc},
			wantAt: loc, wantLog: []string{"probe=answered", "location=" + loc}},
		{name: "next hop silent", hop: nextHop{kind: hopGateway, addr: gw}, probe: probeSilent, multicast: []string{mloc},
			wantAt: mloc, waits: true, wantLog: []string{"probe=silent", "answers=1", "location=" + mloc}},
		{name: "next hop silent, no answers", hop: nextHop{kind: hopGateway, addr: gw}, probe: probeSilent,
			wantErr: errNoGateway, waits: true, wantLog: []string{"probe=silent", "answers=0"}},
		{name: "route unknown", hop: nextHop{kind: hopUnknown, why: "no default route"}, multicast: []string{mloc},
			wantAt: mloc, waits: true, wantLog: []string{"route=unknown", "probe=none", "answers=1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var logs bytes.Buffer
			var probed, searched bool
			var at string
			s := &igdSearch{
				server: "192.0.2.10", bind: netip.IPv4Unspecified(),
				log:   slog.New(slog.NewTextHandler(&logs, nil)),
				route: func(string, netip.Addr) nextHop { return tc.hop },
				probe: func(ctx context.Context, src netip.Addr, to netip.AddrPort) (probeResult, *url.URL, error) {
					probed = true
					if to != netip.AddrPortFrom(gw, ssdpPort) || src.IsValid() {
						t.Errorf("probe of %v from %v", to, src)
					}
					if tc.probe == probeSilent {
						<-ctx.Done()
						return probeSilent, nil, nil
					}
					u, _ := url.Parse(loc)
					return tc.probe, u, nil
				},
				multicast: func(ctx context.Context) ([]*http.Response, error) {
					searched = true
					<-ctx.Done() // goupnp waits until the search ends
					var out []*http.Response
					for _, l := range tc.multicast {
						out = append(out, &http.Response{StatusCode: 200, Header: http.Header{"Location": {l}}})
					}
					if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
						out = nil // cancelled: what it heard no longer matters
					}
					return out, nil
				},
				gatewayAt: func(_ context.Context, u *url.URL) (igd, netip.Addr, error) {
					at = u.String()
					return &fakeIGD{}, netip.MustParseAddr("10.0.0.2"), nil
				},
			}
			start := time.Now()
			g, local, err := s.find(t.Context())
			took := time.Since(start)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr == nil) != (g != nil) {
				t.Fatalf("find: %v %v, want error %v", g, err, tc.wantErr)
			}
			if at != tc.wantAt {
				t.Errorf("description read at %q, want %q", at, tc.wantAt)
			}
			if err == nil && local != netip.MustParseAddr("10.0.0.2") {
				t.Errorf("local address %v", local)
			}
			if probed != (tc.hop.kind == hopGateway) || searched != (tc.hop.kind != hopNone) {
				t.Errorf("probed %v, multicast search %v", probed, searched)
			}
			if tc.waits != (took >= upnpSearch) {
				t.Errorf("took %v: waited out the search's bound %v: %v, want %v", took, upnpSearch, took >= upnpSearch, tc.waits)
			}
			line := logs.String()
			if strings.Count(line, "\n") != 1 || !strings.Contains(line, `msg="UPnP gateway search"`) {
				t.Fatalf("want one log line:\n%s", line)
			}
			for _, w := range tc.wantLog {
				if !strings.Contains(line, w) {
					t.Errorf("log line lacks %s:\n%s", w, line)
				}
			}
		})
	}
}
