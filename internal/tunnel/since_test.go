// SPDX-License-Identifier: MIT

package tunnel

import "testing"

func TestSince(t *testing.T) {
	tests := []struct{ now, t, want tick }{
		{6, 5, 1},
		{5, 5, 0},
		{5, 6, 0},            // stored by another goroutine after this batch read the clock
		{0, ^tick(299), 300}, // a new entry's "validTicks ago" early in the process
		{10, 0, 10},
	}
	for _, tc := range tests {
		if got := since(tc.now, tc.t); got != tc.want {
			t.Errorf("since(%d, %d) = %d, want %d", tc.now, tc.t, got, tc.want)
		}
	}
}
