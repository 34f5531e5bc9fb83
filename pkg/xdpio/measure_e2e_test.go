// SPDX-License-Identifier: MIT

//go:build e2e && linux

package xdpio

// A micro-measure, not a test: datagrams per second echoed by a child process
// in the lab server's namespace, through xdpio or through a plain udpio
// socket per address, with the CPU time the child and the whole machine
// spent per datagram. Run it alone:
//
//	CGO_ENABLED=0 go test -tags e2e -run '^$' -bench Echo -benchtime 3s ./pkg/xdpio

import (
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miredo-go/miredo/internal/lab"
	"github.com/miredo-go/miredo/pkg/udpio"
	"golang.org/x/sys/unix"
)

// runEchoChild echoes through xdpio ("echo-xdp") or udpio ("echo-udpio")
// until stdin closes, then reports its CPU time in TXFrames (ns).
func runEchoChild(mode string, addrs []netip.Addr) int {
	var loops []func()
	var closers []func() error
	var g *Group
	switch mode {
	case "echo-xdp":
		var err error
		g, err = Attach(Config{Interface: os.Getenv(childIfEnv), Addrs: addrs})
		if err != nil {
			report(childReport{Stage: "attached", Err: err.Error()})
			return 0
		}
		for _, c := range g.Conns() {
			loops = append(loops, func() { serveEcho(c, 2048) })
		}
	case "echo-udpio":
		for _, a := range addrs {
			c, err := udpio.Listen(netip.AddrPortFrom(a, DefaultPort), udpio.Options{RecvBuffer: 4 << 20, SendBuffer: 4 << 20})
			if err != nil {
				report(childReport{Stage: "attached", Err: err.Error()})
				return 0
			}
			closers = append(closers, c.Close)
			loops = append(loops, func() {
				msgs := make([]udpio.Message, udpio.MaxBatch)
				for i := range msgs {
					msgs[i].Buf = make([]byte, 2048)
				}
				for {
					n, err := c.ReadBatch(msgs)
					if err != nil {
						return
					}
					c.WriteBatch(msgs[:n])
				}
			})
		}
	}
	var wg sync.WaitGroup
	for _, l := range loops {
		wg.Add(1)
		go func() { defer wg.Done(); l() }()
	}
	report(childReport{Stage: "attached", Mode: mode})
	buf := make([]byte, 1)
	for {
		if _, err := os.Stdin.Read(buf); err != nil {
			break
		}
		// Each byte asks for the CPU time so far.
		report(childReport{Stage: "cpu", TXFrames: uint64(cpuTime(unix.RUSAGE_SELF))})
	}
	r := childReport{Stage: "closed"}
	if g != nil {
		for _, c := range g.Conns() {
			st := c.Stats()
			r.ReadCalls += st.ReadCalls
			r.Reads += st.ReadDatagrams
			r.Kicks += st.TXKicks
			r.TXFrames += st.TXFrames
		}
		closers = append(closers, g.Close)
	}
	for _, c := range closers {
		c()
	}
	wg.Wait()
	report(r)
	return 0
}

func cpuTime(who int) time.Duration {
	var ru unix.Rusage
	unix.Getrusage(who, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// machineBusy is the CPU time all cores spent outside idle and iowait,
// from /proc/stat.
func machineBusy(b *testing.B) time.Duration {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		b.Fatal(err)
	}
	line, _, _ := strings.Cut(string(data), "\n")
	var busy int64
	for i, f := range strings.Fields(line)[1:] {
		v, _ := strconv.ParseInt(f, 10, 64)
		if i != 3 && i != 4 && i < 8 { // idle, iowait; guest time is in user already
			busy += v
		}
	}
	return time.Duration(busy) * (time.Second / 100) // USER_HZ
}

func BenchmarkEcho(b *testing.B) {
	l := lab.New(b, lab.Options{})
	for _, mode := range []string{"udpio", "xdp"} {
		b.Run(mode, func(b *testing.B) { benchEcho(b, l, "echo-"+mode) })
	}
}

// benchEcho runs b.N round trips from 4 sockets in pub, each keeping 32
// datagrams of 100 bytes in flight, to both server addresses.
func benchEcho(b *testing.B, l *lab.Lab, mode string) {
	_, stdin, reports := startChild(b, l, mode)
	if r := nextReport(b, reports, "attached"); r.Err != "" {
		b.Fatalf("%s: %s", mode, r.Err)
	}
	cpu := func() time.Duration {
		stdin.Write([]byte{0})
		return time.Duration(nextReport(b, reports, "cpu").TXFrames)
	}
	const clients, window = 4, 64
	dsts := serverDsts(l)
	pub := l.Host(lab.Pub)
	// round sends b.N round trips: each client keeps window datagrams in
	// flight with udpio batches, and a watchdog resends the window of a
	// client that made no progress for 100 ms (lost datagrams).
	round := func(total int) (resent int64) {
		var conns []*udpio.Conn
		for range clients {
			var c *udpio.Conn
			err := pub.Do(func() error {
				var err error
				c, err = udpio.Listen(netip.AddrPortFrom(netip.IPv4Unspecified(), 0), udpio.Options{RecvBuffer: 4 << 20})
				return err
			})
			if err != nil {
				b.Fatal(err)
			}
			conns = append(conns, c)
		}
		var done, lost atomic.Int64
		var wg sync.WaitGroup
		stop := make(chan struct{})
		var stopOnce sync.Once
		for _, c := range conns {
			send := make([]udpio.Message, window)
			for i := range send {
				send[i] = udpio.Message{Buf: make([]byte, 100), N: 100, Addr: dsts[i%2]}
			}
			var progress atomic.Int64
			wg.Add(2)
			go func() {
				defer wg.Done()
				recv := make([]udpio.Message, udpio.MaxBatch)
				for i := range recv {
					recv[i].Buf = make([]byte, 2048)
				}
				c.WriteBatch(send)
				for {
					n, err := c.ReadBatch(recv)
					if err != nil {
						return
					}
					progress.Add(int64(n))
					if done.Add(int64(n)) >= int64(total) {
						stopOnce.Do(func() { close(stop) })
						return
					}
					c.WriteBatch(send[:n])
				}
			}()
			go func() {
				defer wg.Done()
				tick := time.NewTicker(100 * time.Millisecond)
				defer tick.Stop()
				last := int64(-1)
				for {
					select {
					case <-stop:
						return
					case <-tick.C:
						if p := progress.Load(); p == last {
							lost.Add(window)
							c.WriteBatch(send)
						} else {
							last = p
						}
					}
				}
			}()
		}
		<-stop
		for _, c := range conns {
			c.Close()
		}
		wg.Wait()
		return lost.Load()
	}
	round(20000) // warm up: next hops, caches
	child0, mach0, start := cpu(), machineBusy(b), time.Now()
	b.ResetTimer()
	resent := round(b.N)
	b.StopTimer()
	elapsed := time.Since(start)
	child, mach := cpu()-child0, machineBusy(b)-mach0
	n := float64(b.N)
	b.ReportMetric(n/elapsed.Seconds(), "dgrams/s")
	b.ReportMetric(float64(child.Nanoseconds())/n, "server-ns/dgram")
	b.ReportMetric(float64(mach.Nanoseconds())/n, "machine-ns/dgram")
	b.ReportMetric(float64(resent)/n, "resent/dgram")
	stdin.Close()
	if r := nextReport(b, reports, "closed"); r.ReadCalls > 0 {
		b.Logf("%s: %d datagrams in %d reads (%.1f per batch), %d through the TX ring in %d kicks",
			mode, r.Reads, r.ReadCalls, float64(r.Reads)/float64(r.ReadCalls), r.TXFrames, r.Kicks)
	}
}
