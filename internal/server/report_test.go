// SPDX-License-Identifier: MIT

package server

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miredo-go/miredo/pkg/udpio"
)

// TestStatusLine: the status summary says how the socket loops coalesce,
// and nothing about it when --xdp serves (no sockets).
func TestStatusLine(t *testing.T) {
	for _, tc := range []struct {
		name     string
		sockets  int
		inUse    int
		coalesce time.Duration
		want     string
		not      string
	}{
		{"coalescing", 1, 0, DefaultCoalesce, "1 sockets each, coalescing up to 500µs, send limit", "in use"},
		{"off", 2, 0, 0, "2 sockets each, no coalescing, send limit", ""},
		{"steered", 2, 1, DefaultCoalesce, "2 sockets each (1 in use), coalescing up to 500µs", ""},
		{"xdp", 0, 0, DefaultCoalesce, "0 sockets each, send limit", "coalesc"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := StatusReport{Primary: netip.MustParseAddr("192.0.2.1"), Secondary: netip.MustParseAddr("192.0.2.2"),
				Sockets: tc.sockets, SocketsInUse: tc.inUse, Coalesce: tc.coalesce.String()}
			var b bytes.Buffer
			r.WriteText(&b)
			if !strings.Contains(b.String(), tc.want) || tc.not != "" && strings.Contains(b.String(), tc.not) {
				t.Errorf("status:\n%s\nwant it to contain %q and not %q", b.String(), tc.want, tc.not)
			}
		})
	}
}

// TestSocketCounters: the sockets group sums what the server's UDP sockets
// counted, and is left out when no socket counts (test fakes, --xdp).
func TestSocketCounters(t *testing.T) {
	s := &Server{}
	if sc := s.socketCounters(); sc != nil {
		t.Errorf("no sockets: %v, want nil", sc)
	}
	var conns [2][]udpio.PacketConn
	for i := range conns {
		c, err := udpio.Listen(netip.MustParseAddrPort("127.0.0.1:0"), udpio.Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns[i] = []udpio.PacketConn{c}
	}
	s.conns = conns
	msgs := udpio.NewMessages(3, 64)
	for i := range msgs {
		msgs[i].N, msgs[i].Addr = 10, conns[1][0].(*udpio.Conn).LocalAddr()
	}
	if n, err := conns[0][0].WriteBatch(msgs); n != 3 {
		t.Fatalf("sent %d of 3: %v", n, err)
	}
	got := 0
	in := udpio.NewMessages(8, 64)
	for got < 3 {
		n, err := conns[1][0].ReadBatch(in)
		if err != nil {
			t.Fatal(err)
		}
		got += n
	}
	sc := s.socketCounters()
	if sc["write_datagrams"] != uint64(3) || sc["read_datagrams"] != uint64(3) || sc["coalesce_sleeps"] != uint64(0) ||
		sc["spread_widened"] != uint64(0) {
		t.Errorf("socket counters %v, want 3 written, 3 read, no sleeps, no widening", sc)
	}
}
