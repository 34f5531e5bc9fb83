// SPDX-License-Identifier: MIT

package main

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/miredo-go/miredo/internal/bench/loadgen"
)

// shape is who loads the server: how many client sockets, on how many
// source addresses. One socket is one Teredo client to the server, and the
// kernel spreads the clients over a server's SO_REUSEPORT sockets by their
// address and port.
type shape struct {
	sockets, sources int
}

func (s shape) String() string { return fmt.Sprintf("%d×%d", s.sockets, s.sources) }

// defaultShapes are issue 14's: few and many client sockets (1, 16, 64,
// 256), from one source address and from many.
const defaultShapes = "1x1,16x1,16x16,64x1,64x64,256x1,256x64"

// maxSources bounds a shape's addresses: the lab's pub host gets them from
// 192.0.2.100 up.
const maxSources = 64

// parseShapes reads "SOCKETSxADDRESSES,..." (× works for x).
func parseShapes(list string) ([]shape, error) {
	var out []shape
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(strings.ReplaceAll(f, "×", "x"))
		a, b, ok := strings.Cut(f, "x")
		n, err1 := strconv.Atoi(a)
		m, err2 := strconv.Atoi(b)
		switch {
		case !ok || err1 != nil || err2 != nil:
			return nil, usagef("-shapes: %q: want SOCKETSxADDRESSES, e.g. 64x1", f)
		case n < 1 || n > loadgen.MaxSockets:
			return nil, usagef("-shapes: %q: 1 to %d sockets", f, loadgen.MaxSockets)
		case m < 1 || m > min(n, maxSources):
			return nil, usagef("-shapes: %q: 1 to %d addresses, no more than sockets", f, maxSources)
		}
		out = append(out, shape{n, m})
	}
	return out, nil
}

// load is how a shape is driven: closed-loop to saturation (pct 0), or
// paced at pct % of the reference server's saturated rate in the same round.
type load struct{ pct int }

func (l load) String() string {
	if l.pct == 0 {
		return "saturation"
	}
	return fmt.Sprintf("%d %% of Miredo's peak", l.pct)
}

// short is the load's name in tables.
func (l load) short() string {
	if l.pct == 0 {
		return "sat"
	}
	return fmt.Sprintf("%d%%", l.pct)
}

const defaultLoads = "sat,25,50"

// parseLoads reads "sat,25,50": saturation, and paced loads in percent.
// Saturation is always measured first (the paced rates come from it).
func parseLoads(list string) ([]load, error) {
	out := []load{{0}}
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(f), "%"))
		if f == "sat" {
			continue
		}
		p, err := strconv.Atoi(f)
		if err != nil || p < 1 || p > 100 {
			return nil, usagef("-loads: %q: want sat or a percentage 1-100", f)
		}
		out = append(out, load{p})
	}
	return out, nil
}

// window is the closed-loop window per socket for a shape when -window is
// 0: about 512 solicitations in flight in all, which saturates either
// server without overflowing Miredo's default socket buffer.
func window(s shape, set int) int {
	if set > 0 {
		return set
	}
	return min(max(512/s.sockets, 1), loadgen.MaxWindow)
}

// pacedWindow is the window per socket of a paced load: 8192 slots in all,
// from 64 to 1024 per socket, so that a few sockets at a high rate do not
// defer solicitations after the pacer was held up.
func pacedWindow(s shape) int {
	return min(max(8192/s.sockets, loadgen.MaxWindow), loadgen.MaxPacedWindow)
}
