// SPDX-License-Identifier: MIT

package client

import (
	"crypto/rand"
	"errors"
	"net"
	"net/netip"
	"time"

	"github.com/miredo-go/miredo/pkg/proto"
	"github.com/miredo-go/miredo/pkg/udpio"
)

// intervalRun runs the refresh interval determination (interval.go) for
// the maintenance goroutine, which owns it: the secondary port, open while
// a procedure runs, and the procedure for the current Teredo address.
type intervalRun struct {
	c     *Client
	probe *intervalProbe
	forAt netip.Addr // the address the running (or last) procedure is for
	conn  udpio.PacketConn
	in    chan datagram // what the secondary port receives
	timer *time.Timer
	tc    <-chan time.Time // timer's channel while a procedure is timed
	out   []udpio.Message
}

func newIntervalRun(c *Client) *intervalRun {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return &intervalRun{c: c, in: make(chan datagram, 8), timer: t}
}

// follow starts the procedure at the client's first qualification, carries
// a running one over to a new address, and pauses it (closing the
// secondary port) while the client is not qualified. A concluded
// procedure is not run again: the NAT is the same.
func (r *intervalRun) follow(st Status, m *Machine) {
	switch {
	case r.c.cfg.FixedRefresh || r.probe != nil && !r.probe.running():
		// The operator chose the interval, or it is determined.
	case st.Phase != PhaseQualified:
		r.close()
	case st.Addr != r.forAt:
		r.forAt = st.Addr
		if r.conn == nil {
			if err := r.open(); err != nil {
				r.c.log.Warn("refresh interval not determined: no secondary port", "err", err)
				return
			}
		}
		var a intervalActions
		if r.probe == nil {
			r.probe = newIntervalProbe(time.Now(), st.Addr, st.Server, proto.PrefixOf(st.Addr), r.c.cfg.Refresh,
				func(b []byte) { rand.Read(b) }, r.c.log, &a)
		} else {
			r.probe.rebase(time.Now(), st.Addr, st.Server, &a)
		}
		r.do(&a, m)
	}
}

// open opens the secondary port beside the service port.
func (r *intervalRun) open() error {
	conn, err := udpio.Listen(netip.AddrPortFrom(r.c.cfg.BindAddress, 0), udpio.Options{})
	if err != nil {
		return err
	}
	r.conn = conn
	go func() {
		msgs := make([]udpio.Message, 4)
		for i := range msgs {
			msgs[i].Buf = make([]byte, udpBufSize)
		}
		for {
			n, err := conn.ReadBatch(msgs)
			if err != nil {
				return // closed (other errors end the procedure by its timers)
			}
			for _, m := range msgs[:n] {
				select {
				case r.in <- datagram{b: append([]byte(nil), m.Buf[:m.N]...), from: m.Addr, at: time.Now()}:
				default: // the procedure needs one datagram at a time
				}
			}
		}
	}()
	return nil
}

// close stops the procedure's timer and closes the secondary port; the
// procedure itself is kept, to go on at the next qualification.
func (r *intervalRun) close() {
	r.forAt = netip.Addr{}
	r.timer.Stop()
	r.tc = nil
	if r.conn != nil {
		r.conn.Close()
		r.conn = nil
	}
}

// stop ends the procedure for good.
func (r *intervalRun) stop() { r.close() }

// receive hands the procedure a datagram of the secondary port.
func (r *intervalRun) receive(d datagram, m *Machine) {
	if r.probe == nil || !r.probe.running() {
		return
	}
	var a intervalActions
	r.probe.Receive(d.at, d.b, d.from, &a)
	r.do(&a, m)
}

// tick runs the procedure's timers.
func (r *intervalRun) tick(m *Machine) {
	if r.probe == nil || !r.probe.running() {
		return
	}
	var a intervalActions
	r.probe.Tick(time.Now(), &a)
	r.do(&a, m)
}

// do carries out what the procedure asked for, and times the next step.
func (r *intervalRun) do(a *intervalActions, m *Machine) {
	send := func(conn udpio.PacketConn, ds []Datagram) {
		if conn == nil || len(ds) == 0 {
			return
		}
		r.out = r.out[:0]
		for _, d := range ds {
			r.out = append(r.out, udpio.Message{Buf: d.Payload, N: len(d.Payload), Addr: d.To})
		}
		if _, err := conn.WriteBatch(r.out); err != nil && !isClosed(err) {
			r.c.log.Debug("refresh interval probe not sent", "err", err)
		}
	}
	send(r.conn, a.FromSecondary)
	send(r.c.conn, a.FromService)
	if a.Refresh > 0 {
		m.SetRefresh(a.Refresh)
		r.c.refresh.Store(int64(a.Refresh))
	}
	if a.Close {
		r.close()
		return
	}
	if d := r.probe.Deadline(); !d.IsZero() {
		r.timer.Reset(max(time.Until(d), 0))
		r.tc = r.timer.C
	}
}

func isClosed(err error) bool { return errors.Is(err, net.ErrClosed) }
