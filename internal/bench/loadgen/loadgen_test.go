// SPDX-License-Identifier: MIT

package loadgen

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/miredo-go/miredo/pkg/proto"
	"github.com/miredo-go/miredo/pkg/udpio"
)

// responder is a toy Teredo server on loopback that answers solicitations
// the way answer says; it runs until the test ends.
type responder struct {
	conn, alt *udpio.Conn // alt answers in the "wrong source" case
}

// answer turns the i-th solicitation into the datagrams to send back (nil
// drops it) and the socket to send them from.
type answer func(i int, rs []byte, from netip.AddrPort, srv netip.Addr) ([][]byte, bool)

func startResponder(t *testing.T, answer answer) *responder {
	t.Helper()
	r := &responder{}
	var err error
	for _, c := range []**udpio.Conn{&r.conn, &r.alt} {
		if *c, err = udpio.Listen(netip.MustParseAddrPort("127.0.0.1:0"), udpio.Options{RecvBuffer: 1 << 20}); err != nil {
			t.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		in := make([]udpio.Message, udpio.MaxBatch)
		for j := range in {
			in[j].Buf = make([]byte, 2048)
		}
		srv := r.conn.LocalAddr().Addr()
		for i := 0; ; {
			n, err := r.conn.ReadBatch(in)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			var main, alt []udpio.Message
			for _, m := range in[:n] {
				out, fromAlt := answer(i, m.Buf[:m.N], m.Addr, srv)
				i++
				for _, b := range out {
					msg := udpio.Message{Buf: b, N: len(b), Addr: m.Addr}
					if fromAlt {
						alt = append(alt, msg)
					} else {
						main = append(main, msg)
					}
				}
			}
			r.conn.WriteBatch(main)
			r.alt.WriteBatch(alt)
		}
	}()
	t.Cleanup(func() {
		r.conn.Close()
		r.alt.Close()
		wg.Wait()
	})
	return r
}

// ra answers a solicitation correctly, with the origin given.
func ra(rs []byte, origin netip.AddrPort, srv netip.Addr) []byte {
	var e proto.Envelope
	if err := proto.ParseEnvelope(rs, &e); err != nil {
		return nil
	}
	sol, err := proto.ParseRouterSolicitation(e.IPv6)
	if err != nil {
		return nil
	}
	return proto.AppendRouterAdvertisement(nil, proto.RAFields{Nonce: e.Auth.Nonce, Client: origin, Dst: sol.Src,
		Server: srv, Prefix: proto.DefaultPrefix, MTU: 1280})
}

func TestRun(t *testing.T) {
	const sent = 2000
	// Cases where answers come use a timeout no slow run (-race, a busy
	// machine) reaches; cases where every solicitation is lost a short one,
	// so that the run settles quickly.
	const patient, impatient = time.Second, 10 * time.Millisecond
	tests := []struct {
		name    string
		timeout time.Duration
		answer  answer
		check   func(t *testing.T, c Counters)
	}{
		{"all answered", patient, func(_ int, rs []byte, from netip.AddrPort, srv netip.Addr) ([][]byte, bool) {
			return [][]byte{ra(rs, from, srv)}, false
		}, func(t *testing.T, c Counters) {
			if c.Answered != sent || c.Lost != 0 || c.Invalid != 0 || c.Late != 0 {
				t.Errorf("%+v: want all %d answered", c, sent)
			}
			if c.MeanRTT() <= 0 {
				t.Errorf("mean RTT %v", c.MeanRTT())
			}
		}},
		{"every tenth dropped", 100 * time.Millisecond, func(i int, rs []byte, from netip.AddrPort, srv netip.Addr) ([][]byte, bool) {
			if i%10 == 9 {
				return nil, false
			}
			return [][]byte{ra(rs, from, srv)}, false
		}, func(t *testing.T, c Counters) {
			if c.Answered+c.Lost != sent || c.Lost < sent/10-1 || c.Lost > sent/10+1 || c.Invalid != 0 {
				t.Errorf("%+v: want about %d lost and the rest answered", c, sent/10)
			}
		}},
		{"answered twice", patient, func(_ int, rs []byte, from netip.AddrPort, srv netip.Addr) ([][]byte, bool) {
			b := ra(rs, from, srv)
			return [][]byte{b, b}, false
		}, func(t *testing.T, c Counters) {
			if c.Answered != sent || c.Late != sent {
				t.Errorf("%+v: want %d answered and as many late", c, sent)
			}
		}},
		{"wrong origin", impatient, func(_ int, rs []byte, from netip.AddrPort, srv netip.Addr) ([][]byte, bool) {
			return [][]byte{ra(rs, netip.AddrPortFrom(from.Addr(), from.Port()+1), srv)}, false
		}, func(t *testing.T, c Counters) {
			if c.Answered != 0 || c.Invalid != sent || c.Lost != sent {
				t.Errorf("%+v: want every answer invalid and every solicitation lost", c)
			}
		}},
		{"wrong source", impatient, func(_ int, rs []byte, from netip.AddrPort, srv netip.Addr) ([][]byte, bool) {
			return [][]byte{ra(rs, from, srv)}, true
		}, func(t *testing.T, c Counters) {
			if c.Answered != 0 || c.Invalid != sent {
				t.Errorf("%+v: want every answer invalid", c)
			}
		}},
		{"wrong server in the prefix", impatient, func(_ int, rs []byte, from netip.AddrPort, _ netip.Addr) ([][]byte, bool) {
			return [][]byte{ra(rs, from, netip.MustParseAddr("192.0.2.99"))}, false
		}, func(t *testing.T, c Counters) {
			if c.Answered != 0 || c.Invalid != sent {
				t.Errorf("%+v: want every answer invalid", c)
			}
		}},
		{"corrupted", impatient, func(_ int, rs []byte, from netip.AddrPort, srv netip.Addr) ([][]byte, bool) {
			b := ra(rs, from, srv)
			b[len(b)-1] ^= 1 // breaks the ICMPv6 checksum
			return [][]byte{b}, false
		}, func(t *testing.T, c Counters) {
			if c.Answered != 0 || c.Invalid != sent {
				t.Errorf("%+v: want every answer invalid", c)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := startResponder(t, tt.answer)
			g, err := Open(Config{
				Server:  r.conn.LocalAddr(),
				Sources: []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")},
				Sockets: 8, Window: 4, Timeout: tt.timeout,
				MaxSent: sent, MaxDuration: 20 * time.Second,
			})
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			if err := g.Run(context.Background()); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d > 15*time.Second {
				t.Errorf("run took %v: it should end once the budget is settled", d)
			}
			c := g.Counters()
			if c.Sent != sent || c.SendErrors != 0 {
				t.Errorf("sent %d (%d errors), want %d", c.Sent, c.SendErrors, sent)
			}
			tt.check(t, c)
			if err := g.Run(context.Background()); err == nil {
				t.Error("a second Run succeeded")
			}
		})
	}
}

// TestRunEndsWithContext checks the time bound: a server that never answers
// keeps the generator busy only until the context ends.
func TestRunEndsWithContext(t *testing.T) {
	r := startResponder(t, func(int, []byte, netip.AddrPort, netip.Addr) ([][]byte, bool) { return nil, false })
	g, err := Open(Config{Server: r.conn.LocalAddr(), Sources: []netip.Addr{netip.MustParseAddr("127.0.0.1")},
		Sockets: 2, Window: 2, Timeout: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if err := g.Run(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("run took %v after a 200ms context", d)
	}
	if c := g.Counters(); c.Answered != 0 || c.Lost == 0 || c.Sent < c.Lost {
		t.Errorf("%+v: want lost solicitations and no answers", c)
	}
}

func TestConfigChecks(t *testing.T) {
	srv := netip.MustParseAddrPort("192.0.2.10:3544")
	src := []netip.Addr{netip.MustParseAddr("192.0.2.30")}
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no server", Config{Sources: src}},
		{"IPv6 server", Config{Server: netip.MustParseAddrPort("[2001:db8::1]:3544"), Sources: src}},
		{"no sources", Config{Server: srv}},
		{"wildcard source", Config{Server: srv, Sources: []netip.Addr{netip.IPv4Unspecified()}}},
		{"too many sockets", Config{Server: srv, Sources: src, Sockets: MaxSockets + 1}},
		{"window too large", Config{Server: srv, Sources: src, Window: MaxWindow + 1}},
		{"paced window too large", Config{Server: srv, Sources: src, Window: MaxPacedWindow + 1, Rate: 1000}},
		{"negative window", Config{Server: srv, Sources: src, Window: -1}},
		{"tiny timeout", Config{Server: srv, Sources: src, Timeout: time.Microsecond}},
		{"negative rate", Config{Server: srv, Sources: src, Rate: -1}},
		{"absurd rate", Config{Server: srv, Sources: src, Rate: MaxRate * 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := Open(tt.cfg); err == nil {
				t.Error("Open accepted it")
			}
		})
	}
}

func TestTake(t *testing.T) {
	g := &Generator{}
	g.budget.Store(5)
	for _, tt := range []struct{ ask, want int }{{2, 2}, {2, 2}, {4, 1}, {3, 0}, {0, 0}} {
		if got := g.take(tt.ask); got != tt.want {
			t.Errorf("take(%d) = %d, want %d", tt.ask, got, tt.want)
		}
	}
}

// TestPaced checks the open-loop mode: every solicitation answered, none
// deferred, and the budget spread over the run at the rate (not sent at
// once, as the closed loop would).
func TestPaced(t *testing.T) {
	const sent, rate = 1000, 10_000.0
	r := startResponder(t, func(_ int, rs []byte, from netip.AddrPort, srv netip.Addr) ([][]byte, bool) {
		return [][]byte{ra(rs, from, srv)}, false
	})
	g, err := Open(Config{
		Server:  r.conn.LocalAddr(),
		Sources: []netip.Addr{netip.MustParseAddr("127.0.0.1")},
		Sockets: 3, Window: MaxPacedWindow, Timeout: time.Second, Rate: rate,
		MaxSent: sent, MaxDuration: 20 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := g.Run(context.Background()); err != nil {
		t.Fatal(err)
	}
	// The pacer cannot have sent the budget faster than the rate allows.
	if d, least := time.Since(start), time.Duration(float64(sent)/rate*float64(time.Second)); d < least {
		t.Errorf("%d solicitations at %v/s took %v, less than %v", sent, rate, d, least)
	}
	c := g.Counters()
	if c.Sent != sent || c.Answered != sent || c.Deferred != 0 || c.Invalid != 0 {
		t.Errorf("%+v: want %d sent and answered, none deferred", c, sent)
	}
	per := make([]uint64, len(g.flows))
	for i, f := range g.flows {
		per[i] = f.sent.Load()
	}
	// Round-robin, but the tick that spends the budget may end before
	// reaching every socket: allow a tick's worth after a slow wake-up.
	for _, n := range per {
		if n < sent/3-sent/20 || n > sent/3+sent/20 {
			t.Errorf("per-socket counts %v: want the load spread evenly", per)
			break
		}
	}
}
