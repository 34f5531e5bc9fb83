// SPDX-License-Identifier: MIT

package server

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miredo-go/miredo/internal/fakeio"
	"github.com/miredo-go/miredo/pkg/udpio"
	"github.com/miredo-go/miredo/pkg/xdpio"

	"github.com/miredo-go/miredo/internal/pcapfile"
	"github.com/miredo-go/miredo/pkg/proto"
)

// TestReplayMiredoServerCapture feeds what miredo-server 1.2.6 received in
// the reference capture to our handler: every datagram it answered must get
// the same answer from us, byte for byte, from the same address, to the same
// destination (the connectivity test goes to the raw socket instead).
func TestReplayMiredoServerCapture(t *testing.T) {
	ds := serverCapture(t)
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

// serverCapture reads the UDP datagrams of the reference capture of
// miredo-server 1.2.6.
func serverCapture(t *testing.T) []pcapfile.Datagram {
	t.Helper()
	ds, err := pcapfile.ReadUDP4File("../../pkg/proto/testdata/server.pcap")
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

// fakeXDP is an AF_XDP Conn of a server under test: reads hand out its
// inputs one batch at a time, then block until Close; writes are recorded.
type fakeXDP struct {
	mu     sync.Mutex
	inputs []xdpio.Message
	sent   []xdpio.Message
	closed chan struct{}
	once   sync.Once
}

func (f *fakeXDP) ReadBatch(msgs []xdpio.Message) (int, error) {
	f.mu.Lock()
	n := min(len(msgs), len(f.inputs))
	for i, in := range f.inputs[:n] {
		msgs[i].N = copy(msgs[i].Buf, in.Buf)
		msgs[i].Addr, msgs[i].Local = in.Addr, in.Local
	}
	f.inputs = f.inputs[n:]
	f.mu.Unlock()
	if n > 0 {
		return n, nil
	}
	<-f.closed
	return 0, net.ErrClosed
}

func (f *fakeXDP) WriteBatch(msgs []xdpio.Message) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, m := range msgs {
		f.sent = append(f.sent, xdpio.Message{Buf: slices.Clone(m.Buf[:m.N]), N: m.N, Addr: m.Addr, Local: m.Local})
	}
	return len(msgs), nil
}

func (f *fakeXDP) Close() error {
	f.once.Do(func() { close(f.closed) })
	return nil
}

// TestReplayThroughLoops feeds the capture's datagrams to a whole server,
// through the socket loops and through the AF_XDP loop: each path must send
// what Miredo sent, byte for byte, from the address Miredo sent it from,
// and hand the connectivity test to the raw socket.
func TestReplayThroughLoops(t *testing.T) {
	ds := serverCapture(t)
	var inputs []pcapfile.Datagram
	var want []string
	for i, d := range ds {
		if d.Dst.Port() != proto.Port {
			continue
		}
		inputs = append(inputs, d)
		if i+1 < len(ds) && ds[i+1].Src.Port() == proto.Port {
			a := ds[i+1]
			want = append(want, fmt.Sprintf("%v -> %v %x", a.Src.Addr(), a.Dst, a.Payload))
		}
	}
	cfg, err := Config{Primary: primary, Secondary: secondary}.Check()
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"sockets", "xdp"} {
		t.Run(path, func(t *testing.T) {
			raw := &fakeRaw{entered: make(chan struct{})}
			var got func() []string
			var s *Server
			switch path {
			case "sockets":
				conns := [2]*fakeio.Conn{fakeio.NewConn(), fakeio.NewConn()}
				for via, a := range []netip.Addr{primary, secondary} {
					conns[via].Local = netip.AddrPortFrom(a, proto.Port)
					var queue []pcapfile.Datagram
					for _, d := range inputs {
						if d.Dst.Addr() == a {
							queue = append(queue, d)
						}
					}
					conns[via].ReadFunc = func(msgs []udpio.Message) (int, error) {
						if len(queue) == 0 {
							conns[via].ReadFunc = nil // block until Close
							return 0, nil
						}
						msgs[0].N, msgs[0].Addr = copy(msgs[0].Buf, queue[0].Payload), queue[0].Src
						queue = queue[1:]
						return 1, nil
					}
				}
				s = newServer(cfg, [2][]udpio.PacketConn{{conns[0]}, {conns[1]}}, raw, slog.New(slog.DiscardHandler))
				got = func() []string {
					var out []string
					for via, c := range conns {
						for _, m := range c.Sent() {
							out = append(out, fmt.Sprintf("%v -> %v %x", []netip.Addr{primary, secondary}[via], m.Addr, m.Buf[:m.N]))
						}
					}
					return out
				}
			case "xdp":
				x := &fakeXDP{closed: make(chan struct{})}
				for _, d := range inputs {
					x.inputs = append(x.inputs, xdpio.Message{Buf: d.Payload, Addr: d.Src, Local: d.Dst.Addr()})
				}
				s = newServer(cfg, [2][]udpio.PacketConn{}, raw, slog.New(slog.DiscardHandler))
				s.useXDP(&xdpPath{conns: []xdpConn{x}})
				got = func() []string {
					x.mu.Lock()
					defer x.mu.Unlock()
					var out []string
					for _, m := range x.sent {
						out = append(out, fmt.Sprintf("%v -> %v %x", m.Local, m.Addr, m.Buf[:m.N]))
					}
					return out
				}
			}
			t.Cleanup(s.Close)
			ctx, cancel := context.WithCancel(t.Context())
			done := make(chan error, 1)
			go func() { done <- s.Serve(ctx) }()
			deadline := time.Now().Add(10 * time.Second)
			for s.Stats().Received < uint64(len(inputs)) || len(got()) < len(want) {
				if time.Now().After(deadline) {
					t.Fatalf("stats %+v, sent %d of %d", s.Stats(), len(got()), len(want))
				}
				time.Sleep(time.Millisecond)
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			out := got()
			slices.Sort(out)
			exp := slices.Clone(want)
			slices.Sort(exp)
			if !slices.Equal(out, exp) {
				t.Errorf("sent:\n%s\nMiredo sent:\n%s", strings.Join(out, "\n"), strings.Join(exp, "\n"))
			}
			if st := s.Stats(); raw.sent != 1 || st.ToIPv6 != 1 || st.Answered != 2 || st.Forwarded != 2 {
				t.Errorf("raw sends %d, stats %+v: want one connectivity test, two RAs, two forwarded bubbles", raw.sent, st)
			}
		})
	}
}
