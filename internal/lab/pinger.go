// SPDX-License-Identifier: MIT

package lab

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"regexp"
	"strconv"
	"sync"
	"time"
)

// Pinger is a ping(8) running in a host, for fault tests: it records when
// each reply came, so a test can ask when traffic resumed after a fault or
// how long the longest gap was.
type Pinger struct {
	cmd     *exec.Cmd
	mu      sync.Mutex
	replies []time.Time
	sent    int
	done    chan struct{}
}

// replyRE matches a reply line of ping -D: "[1733540000.123456] 64 bytes
// from ...: icmp_seq=12 ...".
var replyRE = regexp.MustCompile(`^\[(\d+)\.(\d+)\] \d+ bytes from .*icmp_seq=(\d+)`)

// StartPinger pings dst from h every interval until ctx ends or Stop.
func (h *Host) StartPinger(ctx context.Context, dst netip.Addr, interval time.Duration) (*Pinger, error) {
	cmd := h.Command(ctx, "ping", "-D", "-n", "-i", strconv.FormatFloat(interval.Seconds(), 'f', 3, 64), "-W", "1", dst.String())
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: ping %v: %w", h.Name, dst, err)
	}
	p := &Pinger{cmd: cmd, done: make(chan struct{})}
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			m := replyRE.FindStringSubmatch(sc.Text())
			if m == nil {
				continue
			}
			sec, _ := strconv.ParseInt(m[1], 10, 64)
			usec, _ := strconv.ParseInt((m[2] + "000000")[:6], 10, 64)
			seq, _ := strconv.Atoi(m[3])
			p.mu.Lock()
			p.replies = append(p.replies, time.Unix(sec, usec*1000))
			p.sent = max(p.sent, seq)
			p.mu.Unlock()
		}
	}()
	return p, nil
}

// Stop ends the ping.
func (p *Pinger) Stop() {
	p.cmd.Process.Kill()
	p.cmd.Wait()
	<-p.done
}

// FirstReplyAfter is when the first reply after t came, or the zero time.
func (p *Pinger) FirstReplyAfter(t time.Time) time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, r := range p.replies {
		if r.After(t) {
			return r
		}
	}
	return time.Time{}
}

// WaitReplyAfter waits until a reply later than t has come, or ctx ends;
// it returns the reply's time.
func (p *Pinger) WaitReplyAfter(ctx context.Context, t time.Time) (time.Time, error) {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if r := p.FirstReplyAfter(t); !r.IsZero() {
			return r, nil
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("no ping reply after %v: %w", t.Format(time.TimeOnly), ctx.Err())
		case <-p.done:
			return time.Time{}, fmt.Errorf("ping ended")
		case <-tick.C:
		}
	}
}

// LongestGap is the longest time between two replies in [from, to], the
// edges included as if replies had come then.
func (p *Pinger) LongestGap(from, to time.Time) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	last, gap := from, time.Duration(0)
	for _, r := range p.replies {
		if r.Before(from) || r.After(to) {
			continue
		}
		gap = max(gap, r.Sub(last))
		last = r
	}
	return max(gap, to.Sub(last))
}

// Counts returns how many echo requests went out and how many replies
// came.
func (p *Pinger) Counts() (sent, received int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sent, len(p.replies)
}
