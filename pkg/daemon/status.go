// SPDX-License-Identifier: MIT

package daemon

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/urfave/cli/v2"

	"github.com/miredo-go/miredo/pkg/control"
)

// ControlSocketFlag is a daemon's control socket flag; its status command
// takes the same one.
func ControlSocketFlag(role string) *cli.StringFlag {
	return &cli.StringFlag{Name: "control-socket", Value: control.DefaultPath(role),
		Usage: "control socket that the status command asks (\"\" for none)"}
}

// MetricsListenFlag turns on the Prometheus endpoint.
var MetricsListenFlag = &cli.StringFlag{Name: "metrics-listen",
	Usage: "serve Prometheus metrics on `host:port` at /metrics (off by default)"}

// Report is a role's status as the status command prints it.
type Report interface{ WriteText(w io.Writer) }

// StatusCommand is "<binary> status": it asks the running daemon over its
// control socket and prints what it says, as a readable summary (decoded
// into R) or, with --json, as it came. withPeers adds --peers, for the roles
// that keep a peer table.
func StatusCommand[R Report](role string, withPeers bool) *cli.Command {
	flags := []cli.Flag{
		ControlSocketFlag(role),
		&cli.BoolFlag{Name: "json", Usage: "print the daemon's answer as one JSON object"},
	}
	if withPeers {
		flags = append(flags, &cli.BoolFlag{Name: "peers", Usage: "list the peers, not only their number"})
	}
	return &cli.Command{
		Name:  "status",
		Usage: "show the running daemon's state and counters",
		Flags: flags,
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return Usagef("status takes no arguments")
			}
			raw, err := control.Query(c.Context, c.String("control-socket"),
				control.Request{Command: control.CommandStatus, Peers: c.Bool("peers")})
			if err != nil {
				return err
			}
			if c.Bool("json") {
				_, err = fmt.Fprintln(c.App.Writer, string(raw))
				return err
			}
			var r R
			if err := json.Unmarshal(raw, &r); err != nil {
				return fmt.Errorf("the daemon's answer: %w", err)
			}
			r.WriteText(c.App.Writer)
			return nil
		},
	}
}
