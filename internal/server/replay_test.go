// SPDX-License-Identifier: MIT

package server

import (
	"bytes"
	"testing"

	"github.com/miredo-go/miredo/internal/pcapfile"
	"github.com/miredo-go/miredo/pkg/proto"
)

// TestReplayMiredoServerCapture feeds what miredo-server 1.2.6 received in
// the reference capture to our handler: every datagram it answered must get
// the same answer from us, byte for byte, from the same address, to the same
// destination (the connectivity test goes to the raw socket instead).
func TestReplayMiredoServerCapture(t *testing.T) {
	ds, err := pcapfile.ReadUDP4File("../../pkg/proto/testdata/server.pcap")
	if err != nil {
		t.Fatal(err)
	}
	h := NewHandler(primary, secondary, proto.DefaultPrefix, 1280)
	var e proto.Envelope
	answered := 0
	for i := 0; i < len(ds); i++ {
		in := ds[i]
		if in.Dst.Port() != proto.Port {
			continue // our own output in the capture
		}
		on := ViaPrimary
		if in.Dst.Addr() == secondary {
			on = ViaSecondary
		}
		r := h.Handle(in.Payload, in.Src, on, nil, &e)
		switch r.Verdict {
		case Drop:
			t.Errorf("frame %d: dropped (%v); Miredo handled it", in.Frame, r.Reason)
		case SendIPv6:
			if !bytes.Equal(r.Packet, in.Payload) {
				t.Errorf("frame %d: connectivity test altered", in.Frame)
			}
		case SendUDP:
			if i+1 >= len(ds) {
				t.Fatalf("frame %d: we answer, Miredo did not", in.Frame)
			}
			want := ds[i+1]
			from := primary
			if r.Via == ViaSecondary {
				from = secondary
			}
			if want.Src.Addr() != from || want.Dst != r.To || !bytes.Equal(want.Payload, r.Packet) {
				t.Errorf("frame %d: we send %v -> %v %x\nMiredo sent (frame %d) %v -> %v %x",
					in.Frame, from, r.To, r.Packet, want.Frame, want.Src, want.Dst, want.Payload)
			}
			answered++
		}
	}
	if answered != 4 { // two RAs and two forwarded bubbles
		t.Errorf("answered %d datagrams, want 4", answered)
	}
}
