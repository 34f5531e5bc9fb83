// SPDX-License-Identifier: MIT

package tundev

// Device is a layer-3 tunnel interface that moves whole IPv6 packets, several
// per call where the backend can.
//
// Buffer ownership: the caller owns every buffer it passes. A Device never
// keeps a reference to bufs (or to any bufs[i]) after the call returns, so
// the caller may reuse them at once. Packet data lives at bufs[i][offset:];
// the offset bytes in front are headroom that belongs to the Device during
// the call: a backend may write its own header there (a virtio-net header,
// for instance), so callers must reserve them and must not expect their
// contents to survive a call.
//
// Concurrency: one Read and one Write may run at the same time. Close may be
// called at any time, from any goroutine; it unblocks a pending Read. After
// Close, Read, Write and MTU return an error for which
// errors.Is(err, net.ErrClosed) is true, which is how read loops tell a
// shutdown from a failure.
type Device interface {
	// Read blocks until at least one packet is available, then reads up to
	// min(len(bufs), BatchSize()) packets. Packet i goes to bufs[i][offset:]
	// and its length to sizes[i]; len(sizes) must be at least len(bufs).
	// It returns the number of packets read. Each bufs[i][offset:] should
	// hold MTU() bytes: a longer packet may be truncated or dropped,
	// depending on the backend.
	Read(bufs [][]byte, sizes []int, offset int) (n int, err error)

	// Write writes each packet bufs[i][offset:] in order and returns the
	// number written. It stops at the first packet that fails, so on error
	// the packets bufs[n:] were not written and bufs[n] is the one that
	// failed.
	Write(bufs [][]byte, offset int) (n int, err error)

	// BatchSize is the largest number of packets one Read returns; callers
	// size their bufs with it. It does not change over the Device's life.
	BatchSize() int

	// MTU reports the interface's current MTU as the kernel sees it.
	MTU() (int, error)

	// Name is the interface name the kernel gave the device.
	Name() string

	// Close releases the device; a non-persistent interface disappears with
	// it, together with its addresses and routes. Close is idempotent: calls
	// after the first return nil.
	Close() error
}
