// SPDX-License-Identifier: MIT

package daemon

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/urfave/cli/v2"
)

// CheckConfigFlag makes a daemon read its configuration as it would at
// start, report, and exit: no DNS, no privileges, no interface touched.
var CheckConfigFlag = &cli.BoolFlag{Name: "check-config",
	Usage: "read the configuration as the daemon would (no DNS lookups, no privileges, no interface touched), print \"ok\" or every problem found, and exit"}

// Problems collects what is wrong with a configuration, so that an operator
// sees every problem at once rather than one per attempt to start.
type Problems []error

// Add records err, if any.
func (p *Problems) Add(err error) {
	if err != nil {
		*p = append(*p, err)
	}
}

// Err is nil when nothing was found, otherwise a UsageError listing every
// problem, one per line.
func (p Problems) Err() error {
	if len(p) == 0 {
		return nil
	}
	return &UsageError{Err: errors.Join(p...)}
}

// ReportCheck ends a --check-config run: with err (the configuration's
// problems) it returns err for Main to print line by line with exit
// status 2; otherwise it prints the warnings and overrides a start would
// log to stderr, "ok" to stdout, and returns nil.
func ReportCheck(c *cli.Context, l Loaded, err error) error {
	if err != nil {
		return err
	}
	for _, w := range l.Warnings {
		fmt.Fprintf(c.App.ErrWriter, "warning: %s\n", w)
	}
	if l.Merge != nil {
		for _, o := range l.Overridden {
			fmt.Fprintf(c.App.ErrWriter, "warning: %s\n", o)
		}
	}
	fmt.Fprintln(c.App.Writer, "ok")
	return nil
}

// placeholderLookup stands in for DNS under --check-config: a host name
// with valid syntax (the parser checks it first) gets an address of its
// own from TEST-NET-1, so that the checks that follow (global unicast, the
// secondary differing from the primary) still run; whether the name
// resolves is only known at start.
func placeholderLookup() func(string) (netip.Addr, error) {
	seen := map[string]netip.Addr{}
	return func(host string) (netip.Addr, error) {
		if a, ok := seen[host]; ok {
			return a, nil
		}
		if len(seen) >= 100 {
			return netip.Addr{}, errors.New("too many host names")
		}
		a := netip.AddrFrom4([4]byte{192, 0, 2, byte(1 + 2*len(seen))})
		seen[host] = a
		return a, nil
	}
}
