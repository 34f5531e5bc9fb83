// SPDX-License-Identifier: MIT

package probe

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// Report is what `miredo-client probe --json` prints.
type Report struct {
	Servers []Result `json:"servers"`
	// Working counts the servers a client could qualify with.
	Working int `json:"working"`
}

// NewReport gathers results.
func NewReport(rs []Result) Report {
	r := Report{Servers: rs}
	for _, s := range rs {
		if s.Works {
			r.Working++
		}
	}
	return r
}

// WriteJSON writes the report as indented JSON.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes the report for a reader: per server, whether it works,
// each exchange, what a client would get and the NAT with its evidence.
func (r Report) WriteText(w io.Writer) error {
	var b strings.Builder
	for _, s := range r.Servers {
		if s.Works {
			fmt.Fprintf(&b, "%s: works", s.Server)
		} else {
			fmt.Fprintf(&b, "%s: does not work: %s", s.Server, s.Error)
		}
		if s.Primary.IsValid() {
			fmt.Fprintf(&b, " (primary %v, secondary %v, from %v)", s.Primary, s.Secondary, s.Local)
		}
		b.WriteString("\n")
		for _, x := range s.Exchanges {
			fmt.Fprintf(&b, "  %-10s %-21v ", x.Kind, x.To)
			if x.Answered {
				fmt.Fprintf(&b, "answered from %v in %v (%d sent), mapped %v\n", x.From, x.RTT, x.Sent, x.Mapping)
			} else {
				fmt.Fprintf(&b, "no answer in %v (%d sent)\n", x.Waited, x.Sent)
			}
			for _, why := range x.Refused {
				fmt.Fprintf(&b, "  %-10s refused: %s\n", "", why)
			}
		}
		if s.Works {
			fmt.Fprintf(&b, "  Teredo address %v (random flag bits shown as 0), prefix %v, MTU %d\n", s.Address, s.Prefix, s.MTU)
		}
		if n := s.NAT; n != nil {
			pp := ""
			if n.PortPreserving != nil && *n.PortPreserving {
				pp = ", port-preserving"
			} else if n.PortPreserving != nil {
				pp = ", not port-preserving"
			}
			fmt.Fprintf(&b, "  NAT: %s%s (mapping %s, filtering %s)\n", n.Type, pp, n.Mapping, n.Filtering)
			for _, e := range n.Evidence {
				fmt.Fprintf(&b, "    - %s\n", e)
			}
			for _, c := range n.CannotTell {
				fmt.Fprintf(&b, "    cannot tell %s\n", c)
			}
		}
	}
	fmt.Fprintf(&b, "%d of %d servers work\n", r.Working, len(r.Servers))
	_, err := io.WriteString(w, b.String())
	return err
}
