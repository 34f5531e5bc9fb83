// SPDX-License-Identifier: MIT

// Command labctl builds, changes and removes the lab's namespace Internet by
// hand, for the demo and for poking at a failing test's topology:
//
//	labctl up --prefix demo --nat1 symmetric
//	ip netns exec demo-client1 ping 192.0.2.40
//	labctl nat --prefix demo nat1 full-cone
//	labctl rebind --prefix demo nat1
//	labctl down --prefix demo
//
// It must run as root; it never touches the root namespace.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/miredo-go/miredo/internal/lab"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := app().RunContext(ctx, os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "labctl:", err)
		os.Exit(1)
	}
}

func app() *cli.App {
	prefix := &cli.StringFlag{Name: "prefix", Value: "lab", Usage: "namespace name prefix (letters and digits)"}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	attach := func(c *cli.Context) (*lab.Lab, error) {
		return lab.Attach(c.Context, lab.Options{Prefix: c.String("prefix"), Logger: logger})
	}
	return &cli.App{
		Name:  "labctl",
		Usage: "a small Internet in network namespaces for Teredo tests",
		Commands: []*cli.Command{
			{
				Name:  "up",
				Usage: "build the lab (replacing one with the same prefix) and print its plan",
				Flags: []cli.Flag{prefix,
					&cli.StringFlag{Name: "nat1", Value: lab.PortRestricted.String(), Usage: "behaviour of nat1"},
					&cli.StringFlag{Name: "nat2", Value: lab.PortRestricted.String(), Usage: "behaviour of nat2"},
				},
				Action: func(c *cli.Context) error {
					m1, err := parseMode(c.String("nat1"))
					if err != nil {
						return err
					}
					m2, err := parseMode(c.String("nat2"))
					if err != nil {
						return err
					}
					l, err := lab.Build(c.Context, lab.Options{Prefix: c.String("prefix"), NAT1: m1, NAT2: m2, Logger: logger})
					if err != nil {
						return err
					}
					printPlan(c.App.Writer, l)
					return nil
				},
			},
			{
				Name:  "show",
				Usage: "print the plan of a running lab",
				Flags: []cli.Flag{prefix},
				Action: func(c *cli.Context) error {
					l, err := attach(c)
					if err != nil {
						return err
					}
					printPlan(c.App.Writer, l)
					return nil
				},
			},
			{
				Name:      "nat",
				Usage:     "switch a NAT box's behaviour",
				ArgsUsage: "nat1|nat2 full-cone|address-restricted|port-restricted|symmetric|symmetric-port-preserving|symmetric-sequential",
				Flags:     []cli.Flag{prefix},
				Action: func(c *cli.Context) error {
					if c.NArg() != 2 {
						return fmt.Errorf("nat: want a NAT box and a mode")
					}
					mode, err := parseMode(c.Args().Get(1))
					if err != nil {
						return err
					}
					l, err := attach(c)
					if err != nil {
						return err
					}
					return l.SetNAT(c.Context, c.Args().Get(0), mode)
				},
			},
			{
				Name:      "rebind",
				Usage:     "move a NAT box to its other WAN address, forgetting every mapping",
				ArgsUsage: "nat1|nat2",
				Flags:     []cli.Flag{prefix},
				Action: func(c *cli.Context) error {
					if c.NArg() != 1 {
						return fmt.Errorf("rebind: want a NAT box")
					}
					l, err := attach(c)
					if err != nil {
						return err
					}
					if err := l.Rebind(c.Context, c.Args().First()); err != nil {
						return err
					}
					fmt.Fprintln(c.App.Writer, l.WAN(c.Args().First()))
					return nil
				},
			},
			{
				Name:  "down",
				Usage: "delete the lab's namespaces and whatever runs in them",
				Flags: []cli.Flag{prefix},
				Action: func(c *cli.Context) error {
					return lab.Remove(c.Context, c.String("prefix"))
				},
			},
		},
	}
}

func printPlan(w io.Writer, l *lab.Lab) {
	for _, h := range l.Hosts() {
		var addrs []string
		for _, a := range h.IPv4s() {
			addrs = append(addrs, a.String())
		}
		if a := h.IPv6(); a.IsValid() {
			addrs = append(addrs, a.String())
		}
		extra := ""
		if h.Name == lab.NAT1 || h.Name == lab.NAT2 {
			extra = fmt.Sprintf("  [%s, translating to %s]", l.NATMode(h.Name), l.WAN(h.Name))
		}
		fmt.Fprintf(w, "%-8s netns %-16s %s%s\n", h.Name, h.Netns, strings.Join(addrs, " "), extra)
	}
}

// parseMode reads a NAT mode, refusing symmetric-upnp: its UPnP gateway
// lives in the process that set the mode, and labctl exits at once.
func parseMode(s string) (lab.NATMode, error) {
	m, err := lab.ParseNATMode(s)
	if err == nil && m == lab.SymmetricUPnP {
		return 0, fmt.Errorf("%s needs its UPnP gateway running in the process that set it: use it from a test or the demo", m)
	}
	return m, err
}
