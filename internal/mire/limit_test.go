// SPDX-License-Identifier: MIT

package mire

import "testing"

// TestLimiter: a burst of rate replies, then rate a second, fractions of a
// token kept, never more than the burst after a pause.
func TestLimiter(t *testing.T) {
	l := newLimiter(10)
	count := func(now int64, tries int) int {
		n := 0
		for range tries {
			if l.allow(now) {
				n++
			}
		}
		return n
	}
	if n := count(0, 25); n != 10 {
		t.Fatalf("burst: %d allowed, want 10", n)
	}
	if n := count(50, 5); n != 0 {
		t.Errorf("%d tokens after 50 ms at 10/s", n)
	}
	if n := count(100, 5); n != 1 {
		t.Errorf("%d tokens after 100 ms at 10/s, want 1", n)
	}
	if n := count(60_000, 100); n != 10 {
		t.Errorf("after a long pause: %d allowed, want the burst of 10", n)
	}
	// At 100/s, two replies asked every 15 ms (133 a second) for 1.5 s
	// get 150 through, not the 100 that dropping each refill's fraction
	// of a token would give.
	l = newLimiter(100)
	count(0, 100) // empty the bucket
	got := 0
	for now := int64(15); now <= 1500; now += 15 {
		got += count(now, 2)
	}
	if got != 150 {
		t.Errorf("%d replies in 1.5 s at 100/s, want 150", got)
	}
}
