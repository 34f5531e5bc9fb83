// SPDX-License-Identifier: MIT

package ratelimit

import "testing"

func TestBucket(t *testing.T) {
	takes := func(b *Bucket, now int64, rate uint32, n int) int {
		got := 0
		for range n {
			if b.Take(now, rate) {
				got++
			}
		}
		return got
	}
	for _, tc := range []struct {
		name string
		b    Bucket
		rate uint32
		at   []int64 // times of the rounds
		n    int     // takes per round
		want int     // tokens got in all
	}{
		{"full bucket: its burst", Full(10, 0), 10, []int64{0}, 25, 10},
		{"zero bucket fills from time 0", Bucket{}, 10, []int64{0, 500}, 25, 5},
		{"a token per 100 ms at 10/s", Full(10, 0), 10, []int64{0, 50, 100, 199, 200}, 25, 12},
		{"a long pause gives the burst, no more", Full(10, 0), 10, []int64{0, 1 << 40}, 25, 20},
		{"time going back gives nothing", Full(10, 1000), 10, []int64{1000, 0}, 25, 10},
		{"rate 0: nothing after the burst", Full(0, 0), 0, []int64{0, 5000}, 5, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := 0
			for _, now := range tc.at {
				got += takes(&tc.b, now, tc.rate, tc.n)
			}
			if got != tc.want {
				t.Errorf("got %d tokens, want %d", got, tc.want)
			}
		})
	}
}
