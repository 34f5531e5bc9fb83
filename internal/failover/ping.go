// SPDX-License-Identifier: MIT

package failover

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/miredo-go/miredo/internal/lab"
)

// Pinger sends ICMPv6 echo requests from a lab host to one address at a
// fixed interval, as ping -i would, and records when each reply came: the
// longest time without a reply is the failover gap a user sees.
type Pinger struct {
	conn     *net.IPConn
	dst      netip.Addr
	id       uint16
	interval time.Duration

	stop chan struct{}
	done sync.WaitGroup

	mu      sync.Mutex
	start   time.Time
	end     time.Time
	sent    int
	arrived []time.Time // by sequence number, zero if no reply
}

// echoHeader is an ICMPv6 echo's header: type, code, checksum (the kernel
// fills it in on raw ICMPv6 sockets), identifier, sequence.
const echoHeader = 8

// ICMPv6 echo types (RFC 4443 §4).
const (
	echoRequest = 128
	echoReply   = 129
)

// StartPing pings dst from host h every interval until Stop, from address
// src (the kernel's choice if invalid).
func StartPing(h *lab.Host, src, dst netip.Addr, interval time.Duration) (*Pinger, error) {
	p := &Pinger{dst: dst, id: uint16(rand.Uint32()), interval: interval, stop: make(chan struct{})}
	err := h.Do(func() error {
		local := &net.IPAddr{IP: net.IPv6unspecified}
		if src.IsValid() {
			local.IP = src.AsSlice()
		}
		c, err := net.ListenIP("ip6:ipv6-icmp", local)
		p.conn = c
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: ping socket: %w", h.Name, err)
	}
	p.start = time.Now()
	p.done.Add(2)
	go p.send()
	go p.receive()
	return p, nil
}

func (p *Pinger) send() {
	defer p.done.Done()
	msg := make([]byte, echoHeader+16)
	msg[0] = echoRequest
	binary.BigEndian.PutUint16(msg[4:], p.id)
	to := &net.IPAddr{IP: p.dst.AsSlice()}
	t := time.NewTicker(p.interval)
	defer t.Stop()
	for {
		p.mu.Lock()
		seq := p.sent
		p.sent++
		p.arrived = append(p.arrived, time.Time{})
		p.mu.Unlock()
		binary.BigEndian.PutUint16(msg[6:], uint16(seq))
		binary.BigEndian.PutUint64(msg[8:], uint64(time.Now().UnixNano()))
		_, _ = p.conn.WriteTo(msg, to) // no route yet, an ICMP error: a lost ping
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
	}
}

func (p *Pinger) receive() {
	defer p.done.Done()
	buf := make([]byte, 1500)
	for {
		n, from, err := p.conn.ReadFromIP(buf)
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil || n < echoHeader || buf[0] != echoReply || binary.BigEndian.Uint16(buf[4:]) != p.id {
			continue
		}
		if a, ok := netip.AddrFromSlice(from.IP); !ok || a != p.dst {
			continue
		}
		now := time.Now()
		seq := int(binary.BigEndian.Uint16(buf[6:]))
		p.mu.Lock()
		// Sequence numbers wrap at 65536 (11 minutes at 10 ms): take the
		// latest request with these low bits.
		for i := len(p.arrived) - 1; i >= 0 && i >= len(p.arrived)-65536; i-- {
			if i&0xffff == seq {
				if p.arrived[i].IsZero() {
					p.arrived[i] = now
				}
				break
			}
		}
		p.mu.Unlock()
	}
}

// LastReply is when the latest reply came (zero before the first).
func (p *Pinger) LastReply() time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	var last time.Time
	for i := len(p.arrived) - 1; i >= 0 && i >= len(p.arrived)-100; i-- {
		if p.arrived[i].After(last) {
			last = p.arrived[i]
		}
	}
	return last
}

// Stop ends the pinging, waits a last interval for replies in flight, and
// returns what was seen.
func (p *Pinger) Stop() Series {
	close(p.stop)
	end := time.Now()
	time.Sleep(p.interval * 5) // replies to the last requests
	p.conn.Close()
	p.done.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.end = end
	return Series{Start: p.start, End: p.end, Interval: p.interval, Arrived: append([]time.Time(nil), p.arrived...)}
}

// Series is what a Pinger saw: when the reply to each request arrived.
type Series struct {
	Start, End time.Time
	Interval   time.Duration
	// Arrived holds, by sequence number, when the reply came (zero: lost).
	Arrived []time.Time
}

// Lost counts requests with no reply, leaving out the last few whose
// replies could not have come before Stop.
func (s Series) Lost() int {
	n := 0
	for _, a := range s.Arrived[:max(0, len(s.Arrived)-1)] {
		if a.IsZero() {
			n++
		}
	}
	return n
}

// Gap is the longest time without a reply, counted from the start, and
// when it began: with pings every Interval, a healthy path shows about
// Interval.
func (s Series) Gap() (gap time.Duration, from time.Time) {
	prev := s.Start
	for _, a := range s.Arrived {
		if a.IsZero() {
			continue
		}
		if a.Sub(prev) > gap {
			gap, from = a.Sub(prev), prev
		}
		if a.After(prev) {
			prev = a
		}
	}
	if s.End.Sub(prev) > gap {
		gap, from = s.End.Sub(prev), prev
	}
	return gap, from
}

// Answered reports whether any request was answered.
func (s Series) Answered() bool {
	for _, a := range s.Arrived {
		if !a.IsZero() {
			return true
		}
	}
	return false
}

// RecoveredAfter is the first reply at or after t, for how soon after an
// event traffic flowed again; ok is false when none came.
func (s Series) RecoveredAfter(t time.Time) (at time.Time, ok bool) {
	for _, a := range s.Arrived {
		if !a.IsZero() && !a.Before(t) && (at.IsZero() || a.Before(at)) {
			at = a
		}
	}
	return at, !at.IsZero()
}
