// SPDX-License-Identifier: MIT

//go:build e2e && linux

package udpio

import (
	"net/netip"
	"os"
	"runtime"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// These tests run the offloads through real devices with real MTUs, in
// network namespaces of their own (unnamed, so nothing outlives the test
// process; each disappears when its handle and sockets are closed).

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to create network namespaces")
	}
}

// onThreadIn runs fn on an OS thread switched into ns (NsHandle(-1): a new
// namespace, returned), so that sockets fn opens live there. If the thread
// cannot be switched back it stays locked and the runtime discards it.
func onThreadIn(t *testing.T, ns netns.NsHandle, fn func() error) netns.NsHandle {
	t.Helper()
	type result struct {
		ns  netns.NsHandle
		err error
	}
	create := ns == -1
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			done <- result{-1, err}
			return
		}
		defer orig.Close()
		target := ns
		if create {
			target, err = netns.New()
		} else {
			err = netns.Set(target)
		}
		if err == nil {
			err = fn()
		}
		if serr := netns.Set(orig); serr != nil {
			done <- result{target, serr}
			return
		}
		runtime.UnlockOSThread()
		done <- result{target, err}
	}()
	r := <-done
	if create && r.ns != -1 {
		t.Cleanup(func() { r.ns.Close() }) // a namespace of our making
	}
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.ns
}

// newNetns returns a new network namespace whose loopback has the given
// MTU (0: the default) and is up.
func newNetns(t *testing.T, loMTU int) netns.NsHandle {
	t.Helper()
	ns := onThreadIn(t, -1, func() error { return nil })
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		t.Fatal(err)
	}
	if loMTU > 0 {
		if err := h.LinkSetMTU(lo, loMTU); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.LinkSetUp(lo); err != nil {
		t.Fatal(err)
	}
	return ns
}

// listenIn opens a Conn inside ns.
func listenIn(t *testing.T, ns netns.NsHandle, addr netip.AddrPort, opt Options) *Conn {
	t.Helper()
	var c *Conn
	onThreadIn(t, ns, func() error {
		var err error
		c, err = Listen(addr, opt)
		return err
	})
	t.Cleanup(func() { c.Close() })
	return c
}

// TestGSOSmallMTU: on a device whose MTU is below the segment size, the
// kernel refuses the GSO send with EMSGSIZE; the datagrams must still
// arrive (fragmented, as Teredo wants: DF is off), and GSO must stay on for
// segments that fit.
func TestGSOSmallMTU(t *testing.T) {
	needRoot(t)
	ns := newNetns(t, 1300)
	loop := netip.MustParseAddrPort("127.0.0.1:0")
	a := listenIn(t, ns, loop, Options{GSO: true})
	b := listenIn(t, ns, loop, Options{GRO: true, RecvBuffer: 1 << 20})
	needOffloads(t, a, Options{GSO: true})
	needOffloads(t, b, Options{GRO: true})
	var ids, sizes []int
	for _, size := range []int{1400, 1400, 1200} { // refused, over the cap, fits
		out := newMsgs(8, size)
		fill(out, size, b.LocalAddr(), len(ids))
		if n, err := a.WriteBatch(out); n != len(out) || err != nil {
			t.Fatalf("WriteBatch of %d bytes = %d, %v; want %d, nil", size, n, err, len(out))
		}
		ids, sizes = append(ids, seq(len(ids), len(out))...), append(sizes, repeat(size, len(out))...)
	}
	check(t, readN(t, b, len(ids), 2048), a.LocalAddr(), ids, sizes)
	sa, sb := a.Stats(), b.Stats()
	if !sa.GSO || sa.GSOFallbacks != 1 || sa.GSOSends != 1 || sa.GSOSegments != 8 || a.gsoMax.Load() != 1399 {
		t.Errorf("sender %+v (largest segment %d): want GSO on, 1 fallback, largest segment 1399, one GSO send of 8",
			sa, a.gsoMax.Load())
	}
	if sb.GROReads != 1 || sb.GROSegments != 8 {
		t.Errorf("receiver %+v: want the 1200-byte run in one coalesced read", sb)
	}
}

// TestOffloadsOverVeth sends runs between two namespaces joined by a veth
// pair (192.0.2.0/24, a documentation range), a device with checksum
// offload as most NICs have, and checks that nothing is lost or reordered
// and that the sender used GSO. Whether the receiver sees the runs
// coalesced depends on the veth's NAPI/GRO set-up, so that is only logged.
func TestOffloadsOverVeth(t *testing.T) {
	needRoot(t)
	nsA, nsB := newNetns(t, 0), newNetns(t, 0)
	ha, err := netlink.NewHandleAt(nsA)
	if err != nil {
		t.Fatal(err)
	}
	defer ha.Close()
	hb, err := netlink.NewHandleAt(nsB)
	if err != nil {
		t.Fatal(err)
	}
	defer hb.Close()
	veth := &netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "udpio0"}, PeerName: "udpio1", PeerNamespace: netlink.NsFd(nsB)}
	if err := ha.LinkAdd(veth); err != nil {
		t.Fatal(err)
	}
	for _, side := range []struct {
		h    *netlink.Handle
		name string
		addr string
	}{{ha, "udpio0", "192.0.2.1/24"}, {hb, "udpio1", "192.0.2.2/24"}} {
		l, err := side.h.LinkByName(side.name)
		if err != nil {
			t.Fatal(err)
		}
		addr, _ := netlink.ParseAddr(side.addr)
		if err := side.h.AddrAdd(l, addr); err != nil {
			t.Fatal(err)
		}
		if err := side.h.LinkSetUp(l); err != nil {
			t.Fatal(err)
		}
	}
	a := listenIn(t, nsA, netip.MustParseAddrPort("192.0.2.1:0"), Options{GSO: true})
	b := listenIn(t, nsB, netip.MustParseAddrPort("192.0.2.2:0"), Options{GRO: true, RecvBuffer: 4 << 20})
	needOffloads(t, a, Options{GSO: true})
	needOffloads(t, b, Options{GRO: true})
	const count, size = 3 * MaxBatch, 1200
	out := newMsgs(count, size)
	fill(out, size, b.LocalAddr(), 0)
	out[count-1].N = 500
	if n, err := a.WriteBatch(out); n != count || err != nil {
		t.Fatalf("WriteBatch = %d, %v; want %d, nil", n, err, count)
	}
	sizes := repeat(size, count)
	sizes[count-1] = 500
	check(t, readN(t, b, count, 2048), a.LocalAddr(), seq(0, count), sizes)
	sa, sb := a.Stats(), b.Stats()
	if !sa.GSO || sa.GSOSegments != count || sa.GSOFallbacks != 0 {
		t.Errorf("sender %+v: want every datagram sent by GSO", sa)
	}
	t.Logf("receiver: %d reads, %d coalesced reads of %d datagrams", sb.ReadCalls, sb.GROReads, sb.GROSegments)
}
