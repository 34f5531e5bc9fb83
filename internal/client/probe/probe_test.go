// SPDX-License-Identifier: MIT

package probe

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miredo-go/miredo/pkg/proto"
)

// fakeServer is a Teredo server on two loopback addresses (127.0.0.1 and
// 127.0.0.2, one port): it answers router solicitations as a server does
// (a cone one from the other address), with the origin it sees turned by
// mapping, and can drop or spoil answers.
type fakeServer struct {
	conns [2]*net.UDPConn
	port  uint16
	// answer, if set, decides per solicitation (numbered from 0 on each
	// address) whether to answer, and may spoil the advertisement.
	mu     sync.Mutex
	seen   [2]int
	answer func(on, n int, cone bool, ra *[]byte) bool
	// mapping turns the source seen on each address into the origin
	// reported: a NAT's behaviour.
	mapping func(on int, from netip.AddrPort) netip.AddrPort
}

var loopback = [2]netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")}

func newFakeServer(t *testing.T) *fakeServer {
	t.Helper()
	s := &fakeServer{mapping: func(_ int, from netip.AddrPort) netip.AddrPort { return from }}
	for i, a := range loopback {
		c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(a, s.port)))
		if err != nil {
			t.Skipf("loopback %v: %v", a, err)
		}
		s.conns[i] = c
		s.port = uint16(c.LocalAddr().(*net.UDPAddr).Port)
		t.Cleanup(func() { c.Close() })
	}
	for i := range s.conns {
		go s.serve(i)
	}
	return s
}

func (s *fakeServer) serve(on int) {
	buf := make([]byte, 2048)
	var e proto.Envelope
	for {
		n, from, err := s.conns[on].ReadFromUDPAddrPort(buf)
		if err != nil {
			return
		}
		if proto.ParseEnvelope(buf[:n], &e) != nil {
			continue
		}
		rs, err := proto.ParseRouterSolicitation(e.IPv6)
		if err != nil {
			continue
		}
		ra := proto.AppendRouterAdvertisement(nil, proto.RAFields{Nonce: e.Auth.Nonce, Client: s.mapping(on, from),
			Dst: rs.Src, Server: loopback[0], Prefix: proto.DefaultPrefix, MTU: 1280})
		s.mu.Lock()
		k := s.seen[on]
		s.seen[on]++
		ok := s.answer == nil || s.answer(on, k, rs.Cone, &ra)
		s.mu.Unlock()
		via := on
		if rs.Cone {
			via = 1 - on
		}
		if ok {
			s.conns[via].WriteToUDPAddrPort(ra, from)
		}
	}
}

// run probes the fake server and returns the result.
func (s *fakeServer) run(t *testing.T, timeout time.Duration) Result {
	t.Helper()
	c, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(loopback[0], 0)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := Result{Local: c.LocalAddr().(*net.UDPAddr).AddrPort()}
	p := &prober{conn: c, primary: loopback[0], secondary: loopback[1], port: s.port}
	p.run(context.Background(), &r, Config{Timeout: timeout, Prefix: proto.DefaultPrefix})
	return r
}

func TestProbeLoopback(t *testing.T) {
	public := netip.MustParseAddr("198.51.100.2")
	for _, tc := range []struct {
		name    string
		answer  func(on, n int, cone bool, ra *[]byte) bool
		mapping func(on int, from netip.AddrPort) netip.AddrPort
		works   bool
		nat     string
		sent    [3]int // solicitations of each exchange
		refused string // in the first exchange's refusals
	}{
		{name: "no NAT", works: true, nat: NATNone, sent: [3]int{1, 1, 1}},
		{name: "cone NAT", works: true, nat: NATCone, sent: [3]int{1, 1, 1},
			mapping: func(_ int, f netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(public, f.Port()) }},
		{name: "restricted NAT: the cone answer filtered", works: true, nat: NATRestricted, sent: [3]int{1, 2, 1},
			answer:  func(_, _ int, cone bool, _ *[]byte) bool { return !cone },
			mapping: func(_ int, f netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(public, 7000) }},
		{name: "symmetric NAT", works: true, nat: NATSymmetric, sent: [3]int{1, 2, 1},
			answer:  func(_, _ int, cone bool, _ *[]byte) bool { return !cone },
			mapping: func(on int, f netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(public, uint16(7000+on)) }},
		{name: "lost solicitations are sent again", works: true, nat: NATNone, sent: [3]int{2, 2, 3},
			// Numbered per address: on the primary, two primary
			// solicitations come before the cone ones (2 and 3).
			answer: func(on, n int, cone bool, _ *[]byte) bool {
				return (on == 0 && !cone && n >= 1) || (cone && n >= 3) || (on == 1 && n >= 2)
			}},
		{name: "silent secondary: cone answer, mapping unknown", works: true, nat: NATCone, sent: [3]int{1, 1, 3},
			answer:  func(on, _ int, cone bool, _ *[]byte) bool { return on == 0 },
			mapping: func(_ int, f netip.AddrPort) netip.AddrPort { return netip.AddrPortFrom(public, f.Port()) }},
		{name: "silent server", works: false, sent: [3]int{3},
			answer: func(int, int, bool, *[]byte) bool { return false }},
		{name: "wrong prefix refused", works: false, sent: [3]int{3}, refused: "prefix",
			answer: func(_, _ int, _ bool, ra *[]byte) bool {
				b := *ra
				pkt := proto.IPv6(b[proto.AuthHeaderMinLen+proto.OriginLen:])
				msg := pkt.Payload()
				msg[16+16] ^= 0x40 // the prefix's first byte: 0x20 -> 0x60
				msg[2], msg[3] = 0, 0
				c := proto.ICMPv6Checksum(pkt.Src(), pkt.Dst(), msg)
				msg[2], msg[3] = byte(c>>8), byte(c)
				return true
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newFakeServer(t)
			s.answer = tc.answer
			if tc.mapping != nil {
				s.mapping = tc.mapping
			}
			start := time.Now()
			r := s.run(t, 300*time.Millisecond)
			if took := time.Since(start); took > 5*time.Second {
				t.Errorf("took %v with a 300 ms timeout", took)
			}
			if r.Works != tc.works {
				t.Fatalf("works %v (%s), want %v", r.Works, r.Error, tc.works)
			}
			for i, x := range r.Exchanges {
				if x.Sent != tc.sent[i] {
					t.Errorf("%s: %d sent, want %d", x.Kind, x.Sent, tc.sent[i])
				}
			}
			if tc.refused != "" && (len(r.Exchanges) == 0 || !strings.Contains(strings.Join(r.Exchanges[0].Refused, ";"), tc.refused)) {
				t.Errorf("refusals %v, want one about %q", r.Exchanges[0].Refused, tc.refused)
			}
			if !tc.works {
				if r.NAT != nil || len(r.Exchanges) != 1 || r.Error == "" {
					t.Errorf("a server that does not work: %+v", r)
				}
				return
			}
			if r.NAT == nil || r.NAT.Type != tc.nat {
				t.Fatalf("NAT %+v, want %s", r.NAT, tc.nat)
			}
			x := r.Exchanges[0]
			if x.RTT <= 0 || x.From != netip.AddrPortFrom(loopback[0], s.port) || r.Mapping != x.Mapping {
				t.Errorf("primary exchange %+v", x)
			}
			if a, _ := proto.ParseAddress(r.Address); a.Server != loopback[0] || a.Mapping() != r.Mapping || a.Flags != 0 {
				t.Errorf("Teredo address %v for mapping %v", r.Address, r.Mapping)
			}
		})
	}
}
