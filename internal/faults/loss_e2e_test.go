// SPDX-License-Identifier: MIT

//go:build e2e

package faults

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/miredo-go/miredo/internal/lab"
)

// lossRules drops pct % of UDP both ways in a NAT box, before translation
// (this kernel has no netem; nftables' numgen does the drawing).
func lossRules(pct int) string {
	return fmt.Sprintf(`table inet loss {
	chain drops {
		type filter hook forward priority -300; policy accept;
		meta l4proto udp counter numgen random mod 100 < %d counter drop
	}
}
`, pct)
}

// TestFaultLoss drops 5 % and then 20 % of UDP each way on the path of a
// client behind a port-restricted NAT: it must still qualify, and a 10 MB
// TCP transfer through the relay to the native host must complete. The
// throughput is reported (with -full, next to Miredo's under the same loss).
func TestFaultLoss(t *testing.T) {
	w := newWorld(t)
	nat := w.l.Host(lab.NAT1)
	// A UDP GSO run crosses the NAT as one packet buffer, and the drop
	// rule draws once per buffer: segment runs where they leave the
	// client and the relay, so that loss falls on datagrams, as on a real
	// path (the daemons still send runs; the kernel cuts them).
	for _, h := range []*lab.Host{w.l.Host(lab.Client1), w.relay} {
		if out, err := h.Run(t.Context(), "ip", "link", "set", "dev", h.Ifname, "gso_max_segs", "1"); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	var tb table
	for _, pct := range []int{5, 20} {
		for _, who := range whos() {
			t.Run(fmt.Sprintf("%d%%/%s", pct, who), func(t *testing.T) {
				ctx, cancel := context.WithTimeout(t.Context(), 20*time.Minute)
				defer cancel()
				h, _, err := w.l.Place(ctx, lab.Placement{Client: lab.Client1, NAT: lab.NAT1, Mode: lab.PortRestricted})
				if err != nil {
					t.Fatal(err)
				}
				if out, err := nat.RunInput(ctx, lossRules(pct), "nft", "-f", "-"); err != nil {
					t.Fatalf("%v: %s", err, out)
				}
				defer nat.Run(context.Background(), "nft", "delete", "table", "inet", "loss")
				start := time.Now()
				c := w.startClient(t, ctx, who, h, fmt.Sprintf("loss%d-%s", pct, who))
				defer c.stop(t)
				qualified := time.Since(start)
				// Under 20 % loss a connectivity test and the relay's
				// bubbles may all be lost, a few times in a row: give the
				// path a minute (the relay's bubbles to a peer stop for
				// 300 s after four, as RFC 4380 §5.2.6 demands, which a
				// later attempt then waits out).
				for deadline := time.Now().Add(6 * time.Minute); ; {
					if err := h.Ping(ctx, w.native.IPv6()); err == nil {
						break
					} else if time.Now().After(deadline) {
						t.Fatalf("no ping through at %d %% loss: %v\n%s", pct, err, c.p.Tail(20))
					}
				}
				defer func() {
					if t.Failed() {
						out, _ := nat.Run(context.Background(), "nft", "list", "table", "inet", "loss")
						t.Logf("%s", out)
					}
				}()
				size := transferSize
				bps, took, err := tcpTransfer(ctx, h, w.native, w.native.IPv6(), size)
				if err != nil {
					t.Fatalf("%d MB over TCP at %d %% loss: %v\n%s", size>>20, pct, err, c.p.Tail(10))
				}
				tb.add("%3d%% loss  %-6s qualified in %6v; %2d MB TCP up in %7v: %7.3f Mbit/s", pct, who,
					qualified.Round(10*time.Millisecond), size>>20, took.Round(10*time.Millisecond), bps/1e6)
			})
		}
	}
	tb.log(t, "UDP lost each way on the client's path")
}

// transferSize is what one TCP transfer carries.
const transferSize = 10 << 20

// tcpTransfer sends 10 MB from from to a listener of to's at dst over TCP
// (the sockets are made in each host's namespace) and returns the rate the
// receiver saw and how long it took, once every byte has arrived intact.
func tcpTransfer(ctx context.Context, from, to *lab.Host, dst netip.Addr, size int) (float64, time.Duration, error) {
	var ln net.Listener
	if err := to.Do(func() (err error) { ln, err = net.Listen("tcp6", "[::]:0"); return err }); err != nil {
		return 0, 0, err
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	got := make(chan error, 1)
	var took time.Duration
	start := time.Now()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- err
			return
		}
		defer c.Close()
		n, sum := 0, byte(0)
		buf := make([]byte, 64<<10)
		for {
			k, err := c.Read(buf)
			for _, b := range buf[:k] {
				sum += b
			}
			n += k
			if err != nil {
				break
			}
		}
		took = time.Since(start)
		if n != size || sum != pattern(size) {
			got <- fmt.Errorf("received %d bytes (sum %d), want %d (sum %d)", n, sum, size, pattern(size))
			return
		}
		got <- nil
	}()
	var c net.Conn
	if err := from.Do(func() (err error) {
		var d net.Dialer
		c, err = d.DialContext(ctx, "tcp6", net.JoinHostPort(dst.String(), fmt.Sprint(port)))
		return err
	}); err != nil {
		return 0, 0, err
	}
	stop := context.AfterFunc(ctx, func() { c.Close(); ln.Close() })
	defer stop()
	buf := make([]byte, size)
	for i := range buf {
		buf[i] = byte(i)
	}
	if _, err := c.Write(buf); err != nil {
		c.Close()
		return 0, 0, err
	}
	c.(*net.TCPConn).CloseWrite()
	err := <-got
	c.Close()
	if err != nil {
		return 0, took, err
	}
	return float64(size*8) / took.Seconds(), took, nil
}

// pattern is the byte sum of the first n bytes of the transfer.
func pattern(n int) byte {
	var s byte
	for i := range n {
		s += byte(i)
	}
	return s
}
