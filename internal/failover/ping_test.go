// SPDX-License-Identifier: MIT

package failover

import (
	"testing"
	"time"
)

func TestSeries(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	for _, tc := range []struct {
		name    string
		arrived []time.Time
		end     time.Time
		gap     time.Duration
		from    time.Time
		lost    int
	}{
		{"steady", []time.Time{at(1), at(11), at(21), at(31)}, at(40), 10 * time.Millisecond, at(1), 0},
		{"hole", []time.Time{at(1), at(11), {}, {}, {}, at(51), at(61)}, at(70), 40 * time.Millisecond, at(11), 3},
		// A queued reply arriving late, after a newer one, does not make
		// a gap of its own.
		{"late reply", []time.Time{at(1), at(40), at(21), at(41)}, at(50), 39 * time.Millisecond, at(1), 0},
		{"silent end", []time.Time{at(1), at(11), {}, {}, {}}, at(100), 89 * time.Millisecond, at(11), 2},
		{"silent start", []time.Time{{}, {}, {}, at(35), at(41)}, at(50), 35 * time.Millisecond, t0, 3},
		// The last request's reply may still be on its way: not lost.
		{"last in flight", []time.Time{at(1), at(11), {}}, at(25), 14 * time.Millisecond, at(11), 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := Series{Start: t0, End: tc.end, Interval: 10 * time.Millisecond, Arrived: tc.arrived}
			gap, from := s.Gap()
			if gap != tc.gap || !from.Equal(tc.from) {
				t.Errorf("Gap() = %v from %v, want %v from %v", gap, from.Sub(t0), tc.gap, tc.from.Sub(t0))
			}
			if got := s.Lost(); got != tc.lost {
				t.Errorf("Lost() = %d, want %d", got, tc.lost)
			}
		})
	}
}
