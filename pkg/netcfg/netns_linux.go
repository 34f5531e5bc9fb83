// SPDX-License-Identifier: MIT

package netcfg

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// RunInNetNS runs fn on a fresh OS thread that is switched into the network
// namespace ns, and waits for it. Sockets and TUN devices that fn opens stay
// in ns for their whole life. Goroutines that fn starts do not run in ns.
//
// If the thread cannot be switched back to its original namespace, it is
// left locked so that the Go runtime discards it when the goroutine ends
// instead of reusing a thread in the wrong namespace (the rule
// containernetworking/plugins' pkg/ns follows).
func RunInNetNS(ns netns.NsHandle, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// From here on, every early return leaves the thread locked: the
		// runtime then ends it rather than reuse a thread whose namespace
		// is in doubt.
		orig, err := netns.Get()
		if err != nil {
			errc <- fmt.Errorf("netcfg: get current netns: %w", err)
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			errc <- fmt.Errorf("netcfg: enter netns %s: %w", ns, err)
			return
		}
		fnErr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- errors.Join(fnErr, fmt.Errorf("netcfg: restore netns %s: %w", orig, err))
			return
		}
		runtime.UnlockOSThread()
		errc <- fnErr
	}()
	return <-errc
}
