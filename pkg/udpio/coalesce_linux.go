// SPDX-License-Identifier: MIT

//go:build linux

package udpio

import (
	"runtime"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// coalescer decides when a blocking ReadEach sleeps before it reads, so
// that the datagrams arriving meanwhile are read and answered as one batch:
// one timer wake-up and two batch calls for the lot, instead of a wake-up,
// a read and a send per datagram. Below saturation that per-wake-up cost
// is a third of a server's CPU per answer (issue 14).
//
// While the loop waits for datagrams, it probes now and then: after the
// gap's last wait, one sleep of the longest length. A sleep that gathered
// two or more keeps it sleeping, each sleep sized from the last one's
// count to gather about coalesceTarget, never longer than the longest,
// and halves the gap; one that gathered fewer ends it (after one more try
// at the longest length if the sleep was shorter), and the next probe
// comes twice as many waits later (up to maxCoalesceGap), so an idle or
// lightly used loop pays next to nothing. A loop sleeps only after a
// batch that came back short: a full one, or a single read, does not say
// the queue is empty.
type coalescer struct {
	longest int64 // Options.Coalesce, ns; 0: off
	sleepNs int64 // the next sleep, ns
	active  bool  // sleeping after each batch that emptied the queue
	pending bool  // the next read follows a sleep, or a full batch: no wait
	gap     int   // waits between probes
	left    int   // waits until the next probe
	slept   bool  // the pending read follows a sleep
	ts      unix.Timespec
}

const (
	// coalesceTarget is how many datagrams a sleep aims to gather: past
	// that, the wake-up costs each of them a sixteenth or less.
	coalesceTarget = 16
	// minCoalesce is the shortest sleep asked for: the kernel's default
	// timer slack adds up to 50 µs to every sleep, so a 20 µs one already
	// lasts about 70 µs, and shorter ones would gain little.
	minCoalesce    = 20 * time.Microsecond
	maxCoalesceGap = 1024
)

func (k *coalescer) init(longest time.Duration) {
	k.longest, k.gap = longest.Nanoseconds(), 1
}

// on says Options.Coalesce is set.
func (k *coalescer) on() bool { return k.longest > 0 }

// woke records a blocking wait's return: time for a probe? While the loop
// coalesces, a wait (after a sleep that found nothing, or after a batch
// that ended at the end of the queue) keeps the sleep it has sized.
func (k *coalescer) woke() {
	if k.active {
		return
	}
	if k.left--; k.left <= 0 {
		k.active, k.sleepNs = true, k.longest
	}
}

// got records the n datagrams of a read that followed a sleep or a full
// batch, and sizes the next sleep from what the last one gathered. It
// says whether the read followed a sleep.
func (k *coalescer) got(n int) bool {
	if !k.slept {
		return false
	}
	k.slept = false
	if n < 2 {
		k.missed()
		return true
	}
	k.gap = max(k.gap/2, 1)
	k.sleepNs = min(max(k.sleepNs*coalesceTarget/int64(n), minCoalesce.Nanoseconds()), k.longest)
	return true
}

// missed ends coalescing after a sleep that gathered fewer than two: at
// its longest length, or it tries that first.
func (k *coalescer) missed() {
	if k.sleepNs < k.longest {
		k.sleepNs = k.longest
		return
	}
	k.active = false
	k.gap = min(2*k.gap, maxCoalesceGap)
	k.left = k.gap
}

// sleep waits, holding the P if raw (as the blocking waits do). A signal
// interrupts it; the runtime's preemption signal is one, so it yields
// then, and sleeps what is left: a sleep is never shorter than asked, so
// what it gathers measures the rate (the runtime's own signals, every
// 10 ms to a loop that holds its P, would otherwise read as misses and
// end the coalescing).
func (k *coalescer) sleep(raw bool) {
	k.slept = true
	k.ts = unix.NsecToTimespec(k.sleepNs)
	for {
		var e syscall.Errno
		// The kernel reads the request before it writes what is left
		// into the same Timespec.
		if raw {
			_, _, e = unix.RawSyscall(unix.SYS_NANOSLEEP, uintptr(unsafe.Pointer(&k.ts)), uintptr(unsafe.Pointer(&k.ts)), 0)
		} else {
			_, _, e = unix.Syscall(unix.SYS_NANOSLEEP, uintptr(unsafe.Pointer(&k.ts)), uintptr(unsafe.Pointer(&k.ts)), 0)
		}
		if e != unix.EINTR {
			return
		}
		runtime.Gosched()
	}
}
