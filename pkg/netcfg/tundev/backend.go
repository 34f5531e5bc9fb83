// SPDX-License-Identifier: MIT

package tundev

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
)

// Backend names a way to open the tunnel interface. All give the same
// Device; they differ in how many packets move per system call.
type Backend string

const (
	// BackendOffload is our own TUN opener with a virtio-net header and
	// TSO/USO and checksum offloads: one read(2) returns a TCP (or UDP)
	// super-segment of up to 64 KiB that Read cuts into MTU-sized packets,
	// and Write hands in-order TCP segments of one flow to the kernel as
	// one super-segment in one writev(2). The default.
	BackendOffload Backend = "offload"
	// BackendBatch is our own opener without offloads: one packet per
	// read(2), but a Read drains up to BatchSize waiting packets before it
	// returns instead of going back to the poller each time.
	BackendBatch Backend = "batch"
	// BackendWater is songgao/water: one packet per Read. The kill switch.
	BackendWater Backend = "water"
)

// DefaultBackend is what an empty Options.Backend means.
const DefaultBackend = BackendOffload

// Backends lists every backend, default first (for flag help).
func Backends() []Backend { return []Backend{BackendOffload, BackendBatch, BackendWater} }

// ErrUnknownBackend: a backend name that is not one of Backends().
var ErrUnknownBackend = errors.New("unknown tunnel backend")

// ParseBackend reads a backend name as a flag gives it; "" is the default.
func ParseBackend(s string) (Backend, error) {
	if s == "" {
		return DefaultBackend, nil
	}
	for _, b := range Backends() {
		if string(b) == s {
			return b, nil
		}
	}
	names := make([]string, 0, 3)
	for _, b := range Backends() {
		names = append(names, string(b))
	}
	return "", fmt.Errorf("netcfg: %w %q (have %s)", ErrUnknownBackend, s, strings.Join(names, ", "))
}

// Options choose how Open opens the interface.
type Options struct {
	// Backend is BackendOffload, BackendBatch or BackendWater; "" means
	// DefaultBackend.
	Backend Backend
	// Queues is how many queues to open (IFF_MULTI_QUEUE when more than
	// one): Open returns one Device per queue, which can be read and
	// written in parallel; the kernel spreads the packets it sends into
	// the interface over the queues by flow. 0 means 1. Not with water.
	Queues int
}

// MaxQueues bounds Options.Queues; the kernel allows 256
// (MAX_TAP_QUEUES), and more than the cores to read them is waste.
const MaxQueues = 64

// ErrQueues: Options.Queues out of range or unsupported by the backend.
var ErrQueues = errors.New("invalid number of tunnel queues")

func (o Options) check() (Options, error) {
	b, err := ParseBackend(string(o.Backend))
	if err != nil {
		return o, err
	}
	o.Backend = b
	if o.Queues == 0 {
		o.Queues = 1
	}
	switch {
	case o.Queues < 1 || o.Queues > MaxQueues:
		return o, fmt.Errorf("netcfg: %w: %d (1-%d)", ErrQueues, o.Queues, MaxQueues)
	case o.Queues > 1 && o.Backend == BackendWater:
		return o, fmt.Errorf("netcfg: %w: the water backend opens one queue", ErrQueues)
	}
	return o, nil
}

// OffloadStats count what a Device's offload path did. Backends without
// offloads count nothing.
type OffloadStats struct {
	SuperRead   uint64 // super-segments read from the kernel
	SplitOut    uint64 // packets Read cut from them
	RunsWritten uint64 // super-segments written to the kernel
	Coalesced   uint64 // packets Write merged into them
	// UDP super-datagrams written (USO) and the datagrams merged into them.
	UDPRunsWritten uint64
	UDPCoalesced   uint64
	Dropped        uint64 // packets read that could not be delivered (malformed, IPv4 super-segments, larger than the caller's buffer)
}

// OffloadStatser is implemented by Devices that have an offload path.
type OffloadStatser interface {
	OffloadStats() OffloadStats
}

// LogValue prints the counters with stable keys.
func (s OffloadStats) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Uint64("super_read", s.SuperRead),
		slog.Uint64("split_out", s.SplitOut),
		slog.Uint64("runs_written", s.RunsWritten),
		slog.Uint64("coalesced", s.Coalesced),
		slog.Uint64("udp_runs_written", s.UDPRunsWritten),
		slog.Uint64("udp_coalesced", s.UDPCoalesced),
		slog.Uint64("dropped", s.Dropped),
	)
}
