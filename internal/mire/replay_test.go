// SPDX-License-Identifier: MIT

package mire

import (
	"bytes"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"testing"

	"github.com/miredo-go/miredo/internal/pcapfile"
	"github.com/miredo-go/miredo/pkg/proto"
)

// captureFile holds what Debian's teredo-mire (Miredo 1.2.6) answered to a
// catalogue of datagrams in the lab: see testdata/README and
// TestTeredoMireCapture, which rewrites it with -update.
const captureFile = "testdata/teredo-mire.pcap"

// captureAddr is the address teredo-mire ran on in the capture.
var captureAddr = netip.MustParseAddr("192.0.2.40")

// diverges lists the drop reasons for which we leave unanswered what
// teredo-mire answers, each on purpose; any other difference fails.
var diverges = map[DropReason]string{
	DropNotOurs:    "teredo-mire answers for any destination, taking it as the source of its answer (multicast, link-local, native IPv6, other Teredo addresses); we answer for our own address only",
	DropIPv6Source: "teredo-mire answers towards multicast, unspecified and loopback IPv6 sources",
	DropSource:     "teredo-mire answers echo requests from IPv4 sources that are not global (10/8 here) and bubbles from 192.88.99/24 and 240/4",
	DropBadICMPv6:  "teredo-mire answers echo requests with a bad ICMPv6 checksum, which RFC 4443 §2.4 asks to discard",
}

// exchange is a datagram sent to a responder and what it answered, if
// anything.
type exchange struct {
	req   pcapfile.Datagram
	reply *pcapfile.Datagram
}

// pairCapture pairs each answer of the responder on addr with the request
// it answers: the latest one before it from the address it goes to. The
// catalogue makes this unambiguous: each request is answered (or not)
// before the next one from the same source is sent.
func pairCapture(ds []pcapfile.Datagram, addr netip.Addr) ([]exchange, error) {
	var xs []exchange
	for _, d := range ds {
		switch {
		case d.Dst.Addr() == addr && (d.Dst.Port() == proto.Port || d.Dst.Port() == MappedPort):
			xs = append(xs, exchange{req: d})
		case d.Src.Addr() == addr:
			i := len(xs) - 1
			for i >= 0 && xs[i].req.Src != d.Dst {
				i--
			}
			if i < 0 {
				return nil, fmt.Errorf("frame %d: an answer to %v, which sent nothing", d.Frame, d.Dst)
			}
			if xs[i].reply != nil {
				return nil, fmt.Errorf("frame %d: a second answer to frame %d", d.Frame, xs[i].req.Frame)
			}
			xs[i].reply = &d
		}
	}
	return xs, nil
}

// comparison is how our handler's answers compare with a capture's.
type comparison struct {
	same       int                // answered alike, byte for byte
	silent     int                // answered by neither
	diverged   map[DropReason]int // answered by the capture's responder only, by our reason
	mismatches []string
}

// compareAnswers replays each request of xs into our handler for addr and
// compares its answer with the captured one.
func compareAnswers(xs []exchange, addr netip.Addr) comparison {
	c := comparison{diverged: map[DropReason]int{}}
	h := NewHandler(addr)
	var e proto.Envelope
	out := make([]byte, 0, 2048)
	for _, x := range xs {
		on := OnMappedPort
		if x.req.Dst.Port() == proto.Port {
			on = OnServerPort
		}
		r := h.Handle(x.req.Payload, x.req.Src, on, out, &e)
		switch {
		case r.Verdict == Reply && x.reply == nil:
			c.mismatches = append(c.mismatches, fmt.Sprintf("frame %d (%v -> %v %x): we answer %x, the capture has no answer",
				x.req.Frame, x.req.Src, x.req.Dst, x.req.Payload, r.Packet))
		case r.Verdict == Reply:
			want := *x.reply
			if want.Src != netip.AddrPortFrom(addr, MappedPort) || want.Dst != r.To || !bytes.Equal(want.Payload, r.Packet) {
				c.mismatches = append(c.mismatches, fmt.Sprintf("frame %d (%v -> %v %x):\n we send %v -> %v %x\n captured (frame %d) %v -> %v %x",
					x.req.Frame, x.req.Src, x.req.Dst, x.req.Payload, netip.AddrPortFrom(addr, MappedPort), r.To, r.Packet,
					want.Frame, want.Src, want.Dst, want.Payload))
			} else {
				c.same++
			}
		case x.reply == nil:
			c.silent++
		default:
			if _, ok := diverges[r.Reason]; ok {
				c.diverged[r.Reason]++
			} else {
				c.mismatches = append(c.mismatches, fmt.Sprintf("frame %d (%v -> %v %x): we drop it (%v), the capture answers (frame %d) %x",
					x.req.Frame, x.req.Src, x.req.Dst, x.req.Payload, r.Reason, x.reply.Frame, x.reply.Payload))
			}
		}
	}
	return c
}

// String summarises a comparison for the test log.
func (c comparison) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%d answered alike byte for byte, %d answered by neither", c.same, c.silent)
	var reasons []DropReason
	for r := range c.diverged {
		reasons = append(reasons, r)
	}
	sort.Slice(reasons, func(i, j int) bool { return reasons[i] < reasons[j] })
	for _, r := range reasons {
		fmt.Fprintf(&b, "\n%d answered by teredo-mire only (%v): %s", c.diverged[r], r, diverges[r])
	}
	return b.String()
}

// TestReplayTeredoMireCapture feeds the datagrams Debian's teredo-mire
// received in the reference capture to our handler: where we answer, the
// answer must be teredo-mire's byte for byte, from the same port to the
// same destination; where we do not, teredo-mire must not have answered
// either, or the reason must be one of the differences we chose (diverges,
// each of which the capture must show at least once).
func TestReplayTeredoMireCapture(t *testing.T) {
	ds, err := pcapfile.ReadUDP4File(captureFile)
	if err != nil {
		t.Fatal(err)
	}
	xs, err := pairCapture(ds, captureAddr)
	if err != nil {
		t.Fatal(err)
	}
	c := compareAnswers(xs, captureAddr)
	for _, m := range c.mismatches {
		t.Error(m)
	}
	t.Logf("%d requests in %s:\n%v", len(xs), captureFile, c)
	if c.same < 30 || c.silent < 20 {
		t.Errorf("only %d answered alike and %d by neither: the capture lacks its catalogue", c.same, c.silent)
	}
	for r := range diverges {
		if c.diverged[r] == 0 {
			t.Errorf("the capture shows no case of %v (%s)", r, diverges[r])
		}
	}
}
