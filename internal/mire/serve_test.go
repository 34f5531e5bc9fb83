// SPDX-License-Identifier: MIT

package mire

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miredo-go/miredo/internal/fakeio"
	"github.com/miredo-go/miredo/pkg/proto"
	"github.com/miredo-go/miredo/pkg/udpio"
)

// testResponder is a responder on fake sockets whose reads return the given
// datagrams once, then report the socket closed, which ends that loop.
func testResponder(t *testing.T, rate uint32, in [2][]udpio.Message) (*Responder, [2]*fakeio.Conn) {
	t.Helper()
	cfg, err := Config{Addr: me, RateLimit: rate}.Check()
	if err != nil {
		t.Fatal(err)
	}
	var conns [2]*fakeio.Conn
	for i, port := range [2]uint16{proto.Port, MappedPort} {
		c := fakeio.NewConn()
		c.Local = netip.AddrPortFrom(me, port)
		done := false
		c.ReadFunc = func(msgs []udpio.Message) (int, error) {
			if done {
				return 0, net.ErrClosed // this loop ends; the other may still send
			}
			done = true
			for j, m := range in[i] {
				msgs[j].N = copy(msgs[j].Buf, m.Buf)
				msgs[j].Addr, msgs[j].Truncated = m.Addr, m.Truncated
			}
			return len(in[i]), nil
		}
		conns[i] = c
	}
	r := newResponder(cfg, [2]udpio.PacketConn{conns[0], conns[1]}, slog.New(slog.DiscardHandler))
	t.Cleanup(r.Close)
	return r, conns
}

// serveUntil runs r until every datagram given is counted, then stops it.
func serveUntil(t *testing.T, r *Responder, total uint64) Stats {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- r.Serve(ctx) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := r.Stats()
		handled := st.Replies[EchoReply] + st.Replies[Bubble] + st.Replies[ParamProblem]
		for _, d := range st.Dropped {
			handled += d
		}
		if handled >= total {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("datagrams not handled: %+v", st)
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	return r.Stats()
}

// TestServe: both loops answer through the 3545 socket, count each reply
// and each drop by reason, and count a truncated datagram as malformed.
func TestServe(t *testing.T) {
	echo := echoReq(peer, mireAddr, "ping")
	in := [2][]udpio.Message{
		OnServerPort: {
			{Buf: proto.AppendBubble(nil, peer, mireAddr, 0), Addr: asker},
			{Buf: echo, Addr: asker},
		},
		OnMappedPort: {
			{Buf: echo, Addr: asker},
			{Buf: withNext(peer, mireAddr, 6, 20), Addr: asker},
			{Buf: []byte("junk"), Addr: asker},
			{Buf: echo, Addr: asker, Truncated: true},
		},
	}
	r, conns := testResponder(t, 100, in)
	st := serveUntil(t, r, 6)
	if st.Received != 6 || st.Replies != [NumKinds]uint64{EchoReply: 1, Bubble: 1, ParamProblem: 1} ||
		st.Dropped[DropNotBubble] != 1 || st.Dropped[DropMalformed] != 2 {
		t.Errorf("stats %+v", st)
	}
	if n := len(conns[OnServerPort].Sent()); n != 0 {
		t.Errorf("%d datagrams sent from 3544, want none", n)
	}
	sent := conns[OnMappedPort].Sent()
	if len(sent) != 3 {
		t.Fatalf("%d replies sent from 3545, want 3", len(sent))
	}
	var bubbles int
	for _, m := range sent {
		if m.Addr != asker {
			t.Errorf("reply to %v", m.Addr)
		}
		if bytes.Equal(m.Buf[:m.N], proto.AppendBubble(nil, mireAddr, peer, 0)) {
			bubbles++
		}
	}
	if bubbles != 1 {
		t.Errorf("%d bubbles among the replies, want 1", bubbles)
	}
}

// TestRateLimitBothPorts: requests on both ports share one budget.
func TestRateLimitBothPorts(t *testing.T) {
	const rate = 5
	var in [2][]udpio.Message
	for i := range rate {
		from := netip.AddrPortFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(i + 1)}), 40000)
		in[OnServerPort] = append(in[OnServerPort], udpio.Message{Buf: proto.AppendBubble(nil, peer, mireAddr, 0), Addr: from})
		in[OnMappedPort] = append(in[OnMappedPort], udpio.Message{Buf: echoReq(peer, mireAddr, "x"), Addr: from})
	}
	r, conns := testResponder(t, rate, in)
	st := serveUntil(t, r, 2*rate)
	if n := len(conns[OnMappedPort].Sent()); n != rate || st.Dropped[DropRateLimited] != rate {
		t.Errorf("%d replies sent, %d limited; want %d of each", n, st.Dropped[DropRateLimited], rate)
	}
}

func TestConfigCheck(t *testing.T) {
	for _, tc := range []struct {
		cfg Config
		ok  bool
	}{
		{Config{Addr: me, RateLimit: 1}, true},
		{Config{Addr: netip.MustParseAddr("::ffff:192.0.2.40"), RateLimit: DefaultRateLimit}, true},
		{Config{Addr: netip.MustParseAddr("10.0.0.1"), RateLimit: 1}, false},
		{Config{Addr: netip.MustParseAddr("2001:db8::1"), RateLimit: 1}, false},
		{Config{RateLimit: 1}, false},
		{Config{Addr: me}, false},
		{Config{Addr: me, RateLimit: 1_000_001}, false},
	} {
		if _, err := tc.cfg.Check(); (err == nil) != tc.ok {
			t.Errorf("%+v: %v", tc.cfg, err)
		}
	}
}
