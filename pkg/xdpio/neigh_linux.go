// SPDX-License-Identifier: MIT

package xdpio

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// hop is what a Conn knows about sending to one destination.
type hop struct {
	mac [6]byte
	// kernel is set when frames to this destination must go through the
	// kernel: the route leaves by another interface, is not unicast, or
	// has no usable neighbour entry yet.
	kernel bool
	// retry marks a kernel entry that may soon change (no neighbour entry
	// yet, a failed lookup): it lives retryTTL, not the full ttl.
	retry   bool
	expires int64 // unix nanoseconds; after it the entry counts as missing
}

// retryTTL is how soon a destination whose next hop was not resolvable is
// looked up again: long enough for the kernel's ARP exchange triggered by
// the datagram it sent meanwhile, short enough that the data path moves to
// the ring soon after.
const retryTTL = 100 * time.Millisecond

// hopCache maps IPv4 destinations to next-hop MAC addresses, filled by a
// resolver goroutine from the kernel's routing and neighbour tables
// (netlink RTM_GETROUTE with our address as source, then the interface's
// neighbour table). The data path only reads it: a destination that is
// missing or expired goes through the kernel socket, and is queued for
// resolution without waiting, so a flood of new destinations costs the data
// path nothing more than the socket path would. Going through the kernel
// also keeps the kernel's neighbour entry fresh: the kernel confirms a stale
// entry (ARP) when it sends, which it never would for frames we send past
// it; entries live ttl, so the kernel sends to each destination we talk to
// at least once per ttl.
//
// The cache holds at most max entries; inserting into a full cache first
// drops expired entries and then, if none, arbitrary ones.
type hopCache struct {
	mu      sync.Mutex
	hops    map[uint32]hop
	pending map[uint32]netip.Addr // queued for resolution: dst -> source to route from
	max     int
	ttl     time.Duration

	wake chan struct{} // one token: pending is not empty
	done chan struct{}
	wg   sync.WaitGroup

	nl      *netlink.Handle
	ifindex int
	// resolved counts resolver runs, for tests that wait for one.
	resolved uint64
}

// maxPending bounds the resolver's queue: past it new destinations still
// go through the kernel and are retried on their next datagram.
const maxPending = 1024

func newHopCache(nl *netlink.Handle, ifindex, max int, ttl time.Duration) *hopCache {
	c := &hopCache{
		hops:    make(map[uint32]hop, min(max, 4096)),
		pending: make(map[uint32]netip.Addr),
		max:     max,
		ttl:     ttl,
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		nl:      nl,
		ifindex: ifindex,
	}
	c.wg.Add(1)
	go c.run()
	return c
}

// close stops the resolver and waits for it.
func (c *hopCache) close() {
	close(c.done)
	c.wg.Wait()
}

func key(a netip.Addr) uint32 {
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// lookupLocked returns the MAC to send to dst at time now (unix ns), or
// ok=false when the datagram must go through the kernel; in that case a
// missing or expired entry is queued for resolution from src. c.mu is held.
func (c *hopCache) lookupLocked(dst, src netip.Addr, now int64) (mac [6]byte, ok bool) {
	k := key(dst)
	h, found := c.hops[k]
	if found && now < h.expires {
		return h.mac, !h.kernel
	}
	if _, queued := c.pending[k]; !queued && len(c.pending) < maxPending {
		c.pending[k] = src
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
	return mac, false
}

// run resolves queued destinations until close.
func (c *hopCache) run() {
	defer c.wg.Done()
	var work []struct {
		dst, src netip.Addr
	}
	for {
		select {
		case <-c.done:
			return
		case <-c.wake:
		}
		c.mu.Lock()
		work = work[:0]
		for k, src := range c.pending {
			work = append(work, struct{ dst, src netip.Addr }{addrOf(k), src})
		}
		c.mu.Unlock()
		// One neighbour dump serves the whole batch.
		neigh := c.neighbours()
		results := make(map[uint32]hop, len(work))
		for _, w := range work {
			results[key(w.dst)] = c.resolve(w.dst, w.src, neigh)
		}
		now := time.Now().UnixNano()
		c.mu.Lock()
		for k, h := range results {
			h.expires = now + int64(c.ttl)
			if h.retry {
				h.expires = now + int64(min(c.ttl, retryTTL))
			}
			c.insertLocked(k, h, now)
			delete(c.pending, k)
		}
		c.resolved++
		c.mu.Unlock()
	}
}

func addrOf(k uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(k >> 24), byte(k >> 16), byte(k >> 8), byte(k)})
}

// insertLocked stores h, making room first if the cache is full.
func (c *hopCache) insertLocked(k uint32, h hop, now int64) {
	if _, ok := c.hops[k]; !ok && len(c.hops) >= c.max {
		for old, e := range c.hops {
			if e.expires <= now {
				delete(c.hops, old)
			}
		}
		for old := range c.hops {
			if len(c.hops) < c.max {
				break
			}
			delete(c.hops, old)
		}
	}
	c.hops[k] = h
}

// neighbours returns the usable IPv4 neighbour entries of the interface:
// those with a link-layer address the kernel itself would send to (it
// confirms STALE, DELAY and PROBE entries as it uses them; we count on the
// cache's ttl to send through the kernel often enough for that).
func (c *hopCache) neighbours() map[netip.Addr][6]byte {
	list, err := c.nl.NeighList(c.ifindex, netlink.FAMILY_V4)
	out := make(map[netip.Addr][6]byte, len(list))
	if err != nil {
		return out
	}
	const usable = unix.NUD_REACHABLE | unix.NUD_STALE | unix.NUD_DELAY | unix.NUD_PROBE | unix.NUD_PERMANENT | unix.NUD_NOARP
	for _, n := range list {
		ip, ok := netip.AddrFromSlice(n.IP)
		if !ok || n.State&usable == 0 || len(n.HardwareAddr) != 6 {
			continue
		}
		out[ip.Unmap()] = [6]byte(n.HardwareAddr)
	}
	return out
}

// resolve finds the next hop of dst from src: the route's gateway, or dst
// itself on a connected network, and its MAC from neigh. A route through
// another interface, or a destination that is not unicast, goes through the
// kernel; so does a next hop without a usable neighbour entry (until the
// kernel's own send has resolved it).
func (c *hopCache) resolve(dst, src netip.Addr, neigh map[netip.Addr][6]byte) hop {
	routes, err := c.nl.RouteGetWithOptions(net.IP(dst.AsSlice()), &netlink.RouteGetOptions{SrcAddr: net.IP(src.AsSlice())})
	if err != nil || len(routes) == 0 {
		return hop{kernel: true, retry: true}
	}
	r := routes[0]
	if r.LinkIndex != c.ifindex || (r.Type != 0 && r.Type != unix.RTN_UNICAST) {
		return hop{kernel: true}
	}
	next := dst
	if gw, ok := netip.AddrFromSlice(r.Gw); ok && gw.Unmap().IsValid() && !gw.Unmap().IsUnspecified() {
		next = gw.Unmap()
	}
	mac, ok := neigh[next]
	if !ok {
		return hop{kernel: true, retry: true}
	}
	return hop{mac: mac}
}
