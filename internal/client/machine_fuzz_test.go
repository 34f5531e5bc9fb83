// SPDX-License-Identifier: MIT

package client

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"

	"github.com/miredo-go/miredo/internal/pcapfile"
	"github.com/miredo-go/miredo/pkg/proto"
)

// FuzzMachineReceive drives the qualification machine, put first in one of
// its phases (qualifying, retrying after a loss, probing the NAT with the
// cone or the secondary solicitation, qualified idle or refreshing,
// offline), with a fuzzed script of datagrams from the primary, the
// secondary or another source, timer ticks and network changes. Datagrams
// are raw bytes or advertisements built with pkg/proto and then mutated;
// either may carry the nonce of an outstanding solicitation, which the
// fuzzer could not guess. After every step it checks what a hostile network
// must not achieve:
//   - a refused datagram changes nothing (status, solicitations, actions);
//   - an accepted one came from port 3544 of the server address its
//     solicitation went to, carried that solicitation's nonce and an origin,
//     and ended the solicitation;
//   - the machine becomes qualified only from an accepted answer to the
//     primary solicitation, and the Teredo address it reports is in the
//     configured prefix, carries the server and the origin of that answer,
//     RFC 5991 random flags only, and an MTU in range;
//   - one Receive sends at most one solicitation, one Tick at most three,
//     only to the server's two addresses, and Receive never asks for a
//     resolution.
func FuzzMachineReceive(f *testing.F) {
	for _, s := range machineFuzzSeeds(f) {
		f.Add(s.setup, s.script)
	}
	f.Fuzz(func(t *testing.T, setup uint8, script []byte) {
		d := newMachineDriver(t, setup)
		d.runScript(script)
	})
}

// Script encoding: each step is a header byte h, then its operands.
//
//	h&7     what: fzRaw (n, then n payload bytes), fzBuiltRA (origin
//	        IPv4(4), port(2), MTU(2), m, then m%4 mutations of position(2)
//	        and xor(1)), fzTick (d: advance d*50 ms, or to the deadline when
//	        0, then Tick), fzRediscover, fzSuspect, fzHeard, fzWait (d:
//	        advance d*10 ms); 7 is another raw datagram
//	h>>3&3  source: fzPrimary, fzSecondary, fzOther (another host's 3544),
//	        fzWrongPort (the primary's 3545)
//	h>>5&3  whose nonce the datagram carries: 0 primary, 1 cone,
//	        2 secondary solicitation, 3 none (raw bytes kept); for
//	        fzRediscover, 1 makes the resolution fail
//	h>>7    the source as an IPv4-mapped IPv6 address; for fzRediscover,
//	        the server moves to other addresses
const (
	fzRaw = iota
	fzBuiltRA
	fzTick
	fzRediscover
	fzSuspect
	fzHeard
	fzWait
	fzRaw2
)

const (
	fzPrimary = iota
	fzSecondary
	fzOther
	fzWrongPort
)

// Setup byte: s&7 is the phase (see machineDriver.setPhase); s&8 sets
// MaxMTU 1792; s&16 an alternate prefix; s&32 a UPnP mapping equal to the
// setup's mapping; s&64 LocalPort equal to its port.
const (
	fzSetupMaxMTU    = 8
	fzSetupPrefix    = 16
	fzSetupUPnP      = 32
	fzSetupLocalPort = 64
)

var (
	fzServers = [2][2]netip.Addr{
		{netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("192.0.2.11")},
		{netip.MustParseAddr("192.0.2.20"), netip.MustParseAddr("192.0.2.21")},
	}
	fzOtherHost  = netip.MustParseAddr("198.51.100.99")
	fzSetupMap   = netip.MustParseAddrPort("198.51.100.2:40000")
	fzAltPrefix  = uint32(0x20010db8)
	fzMaxMTU     = 1792
	fzMaxPerRecv = 1 // solicitations one Receive may ask for
	fzMaxPerTick = 3 // primary retry, secondary after the cone wait, secondary retry
)

type machineDriver struct {
	t       *testing.T
	m       *Machine
	cfg     MachineConfig
	now     time.Time
	servers int // index in fzServers of what resolution returns
	failDNS bool
	// mapping and server are the origin of the last accepted answer to
	// the primary solicitation and the server it came from: what the
	// reported address must carry. (After a network change moved the
	// server, the old address is kept until the new server answers.)
	mapping netip.AddrPort
	server  netip.Addr
}

func newMachineDriver(t *testing.T, setup uint8) *machineDriver {
	r := rand.New(rand.NewChaCha8([32]byte{9}))
	cfg := MachineConfig{Rand: func(b []byte) {
		for i := range b {
			b[i] = byte(r.Uint32())
		}
	}}
	if setup&fzSetupMaxMTU != 0 {
		cfg.MaxMTU = fzMaxMTU
	}
	if setup&fzSetupPrefix != 0 {
		cfg.Prefix = fzAltPrefix
	}
	if setup&fzSetupUPnP != 0 {
		cfg.UPnP = fzSetupMap
	}
	if setup&fzSetupLocalPort != 0 {
		cfg.LocalPort = fzSetupMap.Port()
	}
	d := &machineDriver{t: t, m: NewMachine(cfg), now: t0}
	d.cfg = d.m.cfg // with NewMachine's defaults
	var a Actions
	d.m.Start(d.now, &a)
	d.apply(&a)
	d.setPhase(setup & 7)
	d.checkStatus("setup")
	return d
}

// apply answers a resolution request the way the client does.
func (d *machineDriver) apply(a *Actions) {
	for range 4 {
		if !a.Resolve {
			return
		}
		a.Reset()
		var err error
		if d.failDNS {
			err = errResolveFuzz
		}
		s := fzServers[d.servers]
		d.m.Resolved(d.now, s[0], s[1], err, a)
	}
	d.t.Fatal("resolutions do not settle")
}

var errResolveFuzz = errors.New("no such host")

// answer delivers the server's genuine answer to solicitation k.
func (d *machineDriver) answer(k rsKind) {
	d.t.Helper()
	st := d.m.Status()
	if !d.m.rs[k].active {
		d.t.Fatalf("setup: no %s solicitation outstanding (phase %v)", kindNames[k], st.Phase)
	}
	dst, from := proto.LinkLocalClient(), st.Server
	if k == rsCone {
		dst = proto.LinkLocalClientCone()
	}
	if k != rsPrimary {
		from = st.Server2
	}
	b := proto.AppendRouterAdvertisement(nil, proto.RAFields{Nonce: d.m.rs[k].nonce, Client: fzSetupMap, Dst: dst,
		Server: st.Server, Prefix: d.cfg.Prefix, MTU: 1280})
	d.now = d.now.Add(40 * time.Millisecond)
	var a Actions
	if err := d.m.Receive(d.now, b, netip.AddrPortFrom(from, proto.Port), &a); err != nil {
		d.t.Fatalf("setup: answer to the %s solicitation refused: %v", kindNames[k], err)
	}
	if k == rsPrimary {
		d.mapping, d.server = fzSetupMap, st.Server
	}
	d.apply(&a)
}

// tickToDeadline runs the machine's next timer.
func (d *machineDriver) tickToDeadline() {
	if dl := d.m.Deadline(); !dl.IsZero() && dl.After(d.now) {
		d.now = dl
	}
	var a Actions
	d.m.Tick(d.now, &a)
	d.apply(&a)
}

// setPhase brings the machine, just resolved and soliciting the primary
// address, to phase p.
func (d *machineDriver) setPhase(p uint8) {
	switch p {
	case 0: // qualifying: the first solicitation to the primary address
	case 1: // qualifying again after a loss: one try, shorter wait
		for i := 0; d.m.Status().Phase != PhaseOffline; i++ {
			if i == 10 {
				d.t.Fatal("setup: never offline")
			}
			d.tickToDeadline()
		}
		d.tickToDeadline()
	case 2: // qualified, the cone solicitation out (the secondary one with UPnP)
		d.answer(rsPrimary)
	case 3: // qualified, the cone probe filtered: the secondary solicitation out
		d.answer(rsPrimary)
		if d.m.rs[rsCone].active {
			d.tickToDeadline()
		}
	case 4: // qualified, NAT known, nothing out
		d.answer(rsPrimary)
		if d.m.rs[rsCone].active {
			d.tickToDeadline()
		}
		d.answer(rsSecondary)
	case 5: // qualified, refreshing
		d.answer(rsPrimary)
		if d.m.rs[rsCone].active {
			d.tickToDeadline()
		}
		d.answer(rsSecondary)
		d.tickToDeadline()
	case 6: // offline
		for i := 0; d.m.Status().Phase != PhaseOffline; i++ {
			if i == 10 {
				d.t.Fatal("setup: never offline")
			}
			d.tickToDeadline()
		}
	case 7: // qualified, NAT probe and an early refresh out at once
		d.answer(rsPrimary)
		var a Actions
		d.m.Suspect(d.now, &a)
		d.apply(&a)
	}
}

// runScript runs the steps of script (see fzRaw) and checks the machine
// after each.
func (d *machineDriver) runScript(script []byte) {
	r := fzReader{b: script}
	for step := 0; !r.done(); step++ {
		h := r.byte()
		src, nonceOf, mapped := (h>>3)&3, rsKind((h>>5)&3), h&0x80 != 0
		switch h & 7 {
		case fzRaw, fzRaw2:
			b := append([]byte(nil), r.bytes(int(r.byte()))...)
			d.patchNonce(b, nonceOf)
			d.receive(step, b, d.source(src, mapped))
		case fzBuiltRA:
			st := d.m.Status()
			var nonce [proto.NonceLen]byte
			if nonceOf < numKinds {
				nonce = d.m.rs[nonceOf].nonce
			}
			dst := proto.LinkLocalClient()
			if nonceOf == rsCone {
				dst = proto.LinkLocalClientCone()
			}
			origin := netip.AddrPortFrom(netip.AddrFrom4([4]byte(r.fixed(4))), r.uint16())
			b := proto.AppendRouterAdvertisement(nil, proto.RAFields{Nonce: nonce, Client: origin, Dst: dst,
				Server: st.Server, Prefix: d.cfg.Prefix, MTU: uint32(r.uint16())})
			for range r.byte() % 4 {
				pos, x := int(r.uint16()), r.byte()
				b[pos%len(b)] ^= x
			}
			d.receive(step, b, d.source(src, mapped))
		case fzTick:
			if n := r.byte(); n == 0 {
				if dl := d.m.Deadline(); dl.After(d.now) {
					d.now = dl
				}
			} else {
				d.now = d.now.Add(time.Duration(n) * 50 * time.Millisecond)
			}
			d.tick(step)
		case fzRediscover:
			d.failDNS = nonceOf == 1
			if mapped {
				d.servers = 1 - d.servers
			}
			var a Actions
			d.m.Rediscover(d.now, &a)
			d.apply(&a)
			d.checkSends(step, "Rediscover", &a, fzMaxPerRecv)
		case fzSuspect:
			var a Actions
			d.m.Suspect(d.now, &a)
			d.checkSends(step, "Suspect", &a, fzMaxPerRecv)
		case fzHeard:
			d.m.Heard(d.now)
		case fzWait:
			d.now = d.now.Add(time.Duration(r.byte()) * 10 * time.Millisecond)
		}
		d.checkStatus("after step")
	}
}

// source returns the address a datagram comes from.
func (d *machineDriver) source(src uint8, mapped bool) netip.AddrPort {
	st := d.m.Status()
	var ap netip.AddrPort
	switch src {
	case fzPrimary:
		ap = netip.AddrPortFrom(st.Server, proto.Port)
	case fzSecondary:
		ap = netip.AddrPortFrom(st.Server2, proto.Port)
	case fzOther:
		ap = netip.AddrPortFrom(fzOtherHost, proto.Port)
	default:
		ap = netip.AddrPortFrom(st.Server, proto.Port+1)
	}
	if mapped && ap.Addr().Is4() {
		ap = netip.AddrPortFrom(netip.AddrFrom16(ap.Addr().As16()), ap.Port())
	}
	return ap
}

// patchNonce writes the nonce of solicitation k into b's authentication
// header, if b has one.
func (d *machineDriver) patchNonce(b []byte, k rsKind) {
	if k >= numKinds || len(b) < 4 || b[0] != 0 || b[1] != 1 {
		return
	}
	off := 4 + int(b[2]) + int(b[3])
	if off+proto.NonceLen <= len(b) {
		copy(b[off:], d.m.rs[k].nonce[:])
	}
}

func (d *machineDriver) receive(step int, b []byte, from netip.AddrPort) {
	t := d.t
	before, rsBefore := d.m.Status(), d.m.rs
	var a Actions
	err := d.m.Receive(d.now, b, from, &a)
	after := d.m.Status()
	if err != nil {
		if after != before || d.m.rs != rsBefore || len(a.Send) != 0 || a.Changed || a.Resolve {
			t.Fatalf("step %d: refused datagram (%v) from %v changed the machine:\nbefore %+v\nafter  %+v\nactions %+v", step, err, from, before, after, a)
		}
		return
	}
	// Accepted: it must be the genuine answer to an outstanding
	// solicitation.
	var e proto.Envelope
	if perr := proto.ParseEnvelope(b, &e); perr != nil || !e.HasAuth || !e.HasOrigin || e.Auth.Confirmation != 0 {
		t.Fatalf("step %d: accepted % x (parse %v, auth %v origin %v)", step, b, perr, e.HasAuth, e.HasOrigin)
	}
	k := numKinds
	for i, s := range rsBefore {
		if s.active && s.nonce == e.Auth.Nonce {
			k = rsKind(i)
		}
	}
	if k == numKinds {
		t.Fatalf("step %d: accepted a datagram whose nonce %x no solicitation had", step, e.Auth.Nonce)
	}
	want := before.Server
	if k != rsPrimary {
		want = before.Server2
	}
	if from.Port() != proto.Port || from.Addr().Unmap() != want {
		t.Fatalf("step %d: accepted the answer to the %s solicitation from %v, want %v:%d", step, kindNames[k], from, want, proto.Port)
	}
	if d.m.rs[k].active {
		t.Fatalf("step %d: the %s solicitation is still outstanding after its answer", step, kindNames[k])
	}
	if a.Resolve || len(a.Send) > fzMaxPerRecv {
		t.Fatalf("step %d: one datagram asked for %d sends, resolve %v", step, len(a.Send), a.Resolve)
	}
	d.checkSends(step, "Receive", &a, fzMaxPerRecv)
	switch k {
	case rsPrimary:
		ra, perr := proto.ParseRouterAdvertisement(e.IPv6)
		if perr != nil {
			t.Fatalf("step %d: accepted an RA that does not parse: %v", step, perr)
		}
		mtu := int(ra.MTU)
		if mtu == 0 {
			mtu = proto.MinMTU
		}
		if d.cfg.MaxMTU > 0 {
			mtu = min(mtu, d.cfg.MaxMTU)
		}
		if after.Phase != PhaseQualified || after.Mapping != e.Origin || after.MTU != mtu || !after.Refreshed.Equal(d.now) {
			t.Fatalf("step %d: after an accepted RA (origin %v, MTU %d): %+v", step, e.Origin, mtu, after)
		}
		d.mapping, d.server = e.Origin, before.Server
	default:
		if before.Phase != PhaseQualified || after.Phase != before.Phase || after.Addr != before.Addr ||
			after.Mapping != before.Mapping || after.MTU != before.MTU {
			t.Fatalf("step %d: a %s answer changed more than the NAT type:\nbefore %+v\nafter  %+v", step, kindNames[k], before, after)
		}
	}
}

func (d *machineDriver) tick(step int) {
	before := d.m.Status()
	var a Actions
	d.m.Tick(d.now, &a)
	after := d.m.Status()
	if after.Phase == PhaseQualified && (before.Phase != PhaseQualified || after.Addr != before.Addr) {
		d.t.Fatalf("step %d: a timer qualified the machine or changed its address:\nbefore %+v\nafter  %+v", step, before, after)
	}
	d.checkSends(step, "Tick", &a, fzMaxPerTick)
	d.apply(&a)
}

// checkSends checks the solicitations a call asked for.
func (d *machineDriver) checkSends(step int, call string, a *Actions, most int) {
	if len(a.Send) > most {
		d.t.Fatalf("step %d: %s asked for %d sends, at most %d expected", step, call, len(a.Send), most)
	}
	st := d.m.Status()
	for _, s := range a.Send {
		if s.To.Port() != proto.Port || (s.To.Addr() != st.Server && s.To.Addr() != st.Server2) {
			d.t.Fatalf("step %d: %s sends to %v, not to the server (%v, %v)", step, call, s.To, st.Server, st.Server2)
		}
		var e proto.Envelope
		if err := proto.ParseEnvelope(s.Payload, &e); err != nil || !e.HasAuth {
			d.t.Fatalf("step %d: %s sends a bad solicitation: %v", step, call, err)
		}
		if _, err := proto.ParseRouterSolicitation(e.IPv6); err != nil {
			d.t.Fatalf("step %d: %s sends a bad solicitation: %v", step, call, err)
		}
	}
}

// checkStatus checks what the machine reports, whatever happened before.
func (d *machineDriver) checkStatus(when string) {
	t := d.t
	st := d.m.Status()
	if int(st.Phase) >= len(phaseNames) || int(st.NAT) >= len(natNames) {
		t.Fatalf("%s: phase %v NAT %v", when, st.Phase, st.NAT)
	}
	if st.Phase != PhaseQualified {
		if st.Addr.IsValid() {
			t.Fatalf("%s: %v with address %v", when, st.Phase, st.Addr)
		}
		return
	}
	a, ok := proto.ParseAddress(st.Addr)
	if !ok || !proto.HasPrefix(st.Addr, d.cfg.Prefix) || a.Server != d.server || a.Mapping() != d.mapping ||
		st.Mapping != d.mapping || a.Flags&^proto.RandomFlagsMask != 0 {
		t.Fatalf("%s: address %v decodes to %+v; want prefix %v, server %v, mapping %v (status mapping %v)",
			when, st.Addr, a, proto.PrefixAddr(d.cfg.Prefix), d.server, d.mapping, st.Mapping)
	}
	top := 65535
	if d.cfg.MaxMTU > 0 {
		top = d.cfg.MaxMTU
	}
	if st.MTU < proto.MinMTU || st.MTU > top {
		t.Fatalf("%s: MTU %d outside %d-%d", when, st.MTU, proto.MinMTU, top)
	}
}

// fzReader reads a script; past the end it reads zeros.
type fzReader struct {
	b []byte
}

func (r *fzReader) done() bool { return len(r.b) == 0 }

func (r *fzReader) byte() byte {
	if len(r.b) == 0 {
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *fzReader) bytes(n int) []byte {
	n = min(n, len(r.b))
	b := r.b[:n]
	r.b = r.b[n:]
	return b
}

func (r *fzReader) fixed(n int) []byte {
	b := make([]byte, n)
	copy(b, r.bytes(n))
	return b
}

func (r *fzReader) uint16() uint16 { return uint16(r.byte())<<8 | uint16(r.byte()) }

// fzSeed is one seed: a setup byte and a script.
type fzSeed struct {
	setup  uint8
	script []byte
}

// fzScript builds scripts for seeds.
type fzScript []byte

func (s fzScript) raw(src, nonceOf uint8, b []byte) fzScript {
	b = b[:min(len(b), 255)]
	return append(append(s, fzRaw|src<<3|nonceOf<<5, byte(len(b))), b...)
}

func (s fzScript) ra(src, nonceOf uint8, origin netip.AddrPort, mtu uint16) fzScript {
	a := origin.Addr().As4()
	return append(s, fzBuiltRA|src<<3|nonceOf<<5, a[0], a[1], a[2], a[3],
		byte(origin.Port()>>8), byte(origin.Port()), byte(mtu>>8), byte(mtu), 0)
}

func (s fzScript) tick(n byte) fzScript { return append(s, fzTick, n) }

// machineFuzzSeeds: each phase with the genuine answers that move it on,
// answers from the wrong source, and the servers' advertisements and
// bubbles of a Miredo capture carrying our nonces.
func machineFuzzSeeds(f *testing.F) []fzSeed {
	other := netip.MustParseAddrPort("203.0.113.7:50000")
	var seeds []fzSeed
	for phase := range uint8(8) {
		full := fzScript(nil).
			ra(fzPrimary, 0, fzSetupMap, 1280).   // qualify, or refresh
			ra(fzSecondary, 1, fzSetupMap, 1280). // the cone answer
			tick(0).
			ra(fzSecondary, 2, fzSetupMap, 1280).                                       // the secondary answer
			ra(fzPrimary, 0, other, 1400).                                              // a new mapping
			ra(fzSecondary, 2, netip.AddrPortFrom(other.Addr(), other.Port()+3), 1280). // sequential
			tick(0).tick(0).tick(0).tick(0)
		seeds = append(seeds, fzSeed{phase, full}, fzSeed{phase | fzSetupUPnP | fzSetupLocalPort, full},
			fzSeed{phase | fzSetupMaxMTU | fzSetupPrefix, fzScript(nil).ra(fzPrimary, 0, fzSetupMap, 9000).tick(0)})
		wrong := fzScript(nil).ra(fzOther, 0, fzSetupMap, 1280).ra(fzWrongPort, 0, fzSetupMap, 1280).
			ra(fzSecondary, 0, fzSetupMap, 1280).ra(fzPrimary, 1, fzSetupMap, 1280).ra(fzPrimary, 2, fzSetupMap, 1280)
		wrong = append(wrong, fzRediscover|0x80, fzSuspect, fzHeard, fzWait, 20)
		seeds = append(seeds, fzSeed{phase, wrong})
	}
	ds, err := pcapfile.ReadUDP4File("../../pkg/proto/testdata/server.pcap")
	if err != nil {
		f.Fatal(err)
	}
	var captured fzScript
	for _, dg := range ds {
		if dg.Src.Port() == proto.Port {
			captured = captured.raw(fzPrimary, 0, dg.Payload).raw(fzSecondary, 1, dg.Payload).raw(fzPrimary, 3, dg.Payload)
		}
	}
	for _, phase := range []uint8{0, 2, 5} {
		seeds = append(seeds, fzSeed{phase, captured})
	}
	return seeds
}
