// SPDX-License-Identifier: MIT

package udpio

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkLoopbackBatch and BenchmarkLoopbackNoBatch push b.N datagrams
// from one socket to another across loopback, so ns/op is the cost of one
// datagram, sending and receiving. Compare the two for what batching buys.
func BenchmarkLoopbackBatch(b *testing.B) { benchLoopback(b, Options{}, Options{}) }
func BenchmarkLoopbackNoBatch(b *testing.B) {
	benchLoopback(b, Options{NoBatch: true}, Options{NoBatch: true})
}

// BenchmarkLoopbackGSO, BenchmarkLoopbackGRO and BenchmarkLoopbackGSOGRO
// are BenchmarkLoopbackBatch with offloads; all datagrams go to one peer,
// the case they are for. On loopback a GSO send is cut up again before a
// socket without GRO, and nothing is coalesced for a GRO socket unless the
// sender used GSO: GSO alone measures the send side's saving, GRO alone the
// cost of copying out of the GRO buffers, and both together the whole
// saving.
func BenchmarkLoopbackGSO(b *testing.B) { benchLoopback(b, Options{GSO: true}, Options{}) }
func BenchmarkLoopbackGRO(b *testing.B) { benchLoopback(b, Options{}, Options{GRO: true}) }
func BenchmarkLoopbackGSOGRO(b *testing.B) {
	benchLoopback(b, Options{GSO: true}, Options{GRO: true})
}

func benchLoopback(b *testing.B, topt, ropt Options) {
	for _, size := range []int{100, 1200} {
		b.Run(fmt.Sprintf("size=%d", size), func(b *testing.B) {
			ropt := ropt
			ropt.RecvBuffer = 4 << 20
			tx, rx := listen(b, topt), listen(b, ropt)
			// Flow control: the sender stays at most window datagrams
			// ahead of the receiver, a window the receive buffer holds
			// (each datagram costs its size plus about 1 KiB of kernel
			// bookkeeping), so loopback never drops and the benchmark
			// measures I/O, not loss.
			window := min(max(rx.Stats().RecvBuffer/(2*(size+1024)), 16), 1024)
			var received atomic.Int64
			progress := make(chan struct{}, 1)
			senderErr := make(chan error, 1)

			out := newMsgs(MaxBatch, size)
			fill(out, size, rx.LocalAddr(), 0)
			in := newMsgs(MaxBatch, 2048)
			b.SetBytes(int64(size))
			b.ResetTimer()

			go func() {
				senderErr <- send(tx, out, b.N, window, &received, progress)
				// If the receiver is still waiting, something was lost:
				// give it a bounded grace period, then unblock it.
				deadline := time.Now().Add(5 * time.Second)
				for received.Load() < int64(b.N) && time.Now().Before(deadline) {
					select {
					case <-progress:
					case <-time.After(100 * time.Millisecond):
					}
				}
				if received.Load() < int64(b.N) {
					rx.Close()
				}
			}()
			for got := 0; got < b.N; {
				n, err := rx.ReadBatch(in)
				if err != nil {
					b.Fatalf("received %d of %d (stats %+v): %v", got, b.N, rx.Stats(), err)
				}
				got += n
				received.Store(int64(got))
				select {
				case progress <- struct{}{}:
				default:
				}
			}
			b.StopTimer()
			if err := <-senderErr; err != nil {
				b.Fatal(err)
			}
			s := rx.Stats()
			b.ReportMetric(float64(s.ReadDatagrams)/float64(s.ReadCalls), "dgrams/read")
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "dgrams/s")
		})
	}
}

// send writes total datagrams from out, never more than window ahead of
// received; progress wakes it when the receiver moves.
func send(tx *Conn, out []Message, total, window int, received *atomic.Int64, progress <-chan struct{}) error {
	stall := time.NewTimer(time.Hour)
	defer stall.Stop()
	for sent := 0; sent < total; {
		room := window - (sent - int(received.Load()))
		if room <= 0 {
			stall.Reset(5 * time.Second)
			select {
			case <-progress:
			case <-stall.C:
				return fmt.Errorf("receiver stalled at %d of %d", received.Load(), total)
			}
			continue
		}
		k := min(room, len(out), total-sent)
		n, err := tx.WriteBatch(out[:k])
		if err != nil {
			return err
		}
		sent += n
	}
	return nil
}

// BenchmarkReadSide measures the receive path alone on datagrams the
// kernel did not coalesce (a plain sender): one goroutine writes 64
// datagrams of 1200 bytes, then reads them, and read-ns/dgram counts only
// the reads. Compare plain with gro for what GRO costs a socket when there
// is nothing to coalesce.
func BenchmarkReadSide(b *testing.B) {
	for _, mode := range []struct {
		name string
		opt  Options
	}{{"plain", Options{}}, {"gro", Options{GRO: true}}} {
		b.Run(mode.name, func(b *testing.B) {
			tx, rx := listen(b, Options{}), listen(b, mode.opt)
			watchdog(b, rx, time.Minute)
			out, in := newMsgs(MaxBatch, 1200), newMsgs(MaxBatch, 2048)
			fill(out, 1200, rx.LocalAddr(), 0)
			var reading time.Duration
			for b.Loop() {
				if _, err := tx.WriteBatch(out); err != nil {
					b.Fatal(err)
				}
				start := time.Now()
				for got := 0; got < len(out); {
					n, err := rx.ReadBatch(in)
					if err != nil {
						b.Fatal(err)
					}
					got += n
				}
				reading += time.Since(start)
			}
			b.ReportMetric(float64(reading.Nanoseconds())/float64(b.N*len(out)), "read-ns/dgram")
		})
	}
}
