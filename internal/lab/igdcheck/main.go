// SPDX-License-Identifier: MIT

// Command igdcheck drives a UPnP Internet Gateway Device with
// github.com/huin/goupnp, the UPnP library the Teredo client is to use, so
// that the lab's gateway is held to it as well as to Debian's upnpc. Lab e2e
// tests run it inside a LAN namespace (ip netns exec), where all its
// sockets belong:
//
//	igdcheck -service 2 add 10.0.0.2 40000 0   discover, map UDP 40000 for RFC 6081's "TEREDO", read it back
//	igdcheck -service 1 -url URL delete 40000   delete it, and see it gone
//
// It prints one "key value" line per result and exits 1 on any error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/huin/goupnp/dcps/internetgateway2"
)

// wanIPConnection is what WANIPConnection1 and WANIPConnection2 clients
// have in common for port mappings.
type wanIPConnection interface {
	GetExternalIPAddressCtx(ctx context.Context) (string, error)
	AddPortMappingCtx(ctx context.Context, remoteHost string, externalPort uint16, protocol string,
		internalPort uint16, internalClient string, enabled bool, description string, lease uint32) error
	GetSpecificPortMappingEntryCtx(ctx context.Context, remoteHost string, externalPort uint16, protocol string) (
		internalPort uint16, internalClient string, enabled bool, description string, lease uint32, err error)
	DeletePortMappingCtx(ctx context.Context, remoteHost string, externalPort uint16, protocol string) error
}

func main() {
	service := flag.Int("service", 2, "WANIPConnection version to use: 1 or 2")
	loc := flag.String("url", "", "device description URL (skips SSDP discovery)")
	flag.Parse()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := run(ctx, *service, *loc, flag.Args()); err != nil {
		fmt.Println("error", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, service int, loc string, args []string) error {
	c, where, err := connect(ctx, service, loc)
	if err != nil {
		return err
	}
	fmt.Println("location", where)
	ext, err := c.GetExternalIPAddressCtx(ctx)
	if err != nil {
		return fmt.Errorf("GetExternalIPAddress: %w", err)
	}
	fmt.Println("external", ext)
	if len(args) < 2 {
		return errors.New("usage: add CLIENT PORT LEASE | delete PORT")
	}
	switch args[0] {
	case "add":
		if len(args) != 4 {
			return errors.New("usage: add CLIENT PORT LEASE")
		}
		port, err := parsePort(args[2])
		if err != nil {
			return err
		}
		lease, err := strconv.ParseUint(args[3], 10, 32)
		if err != nil {
			return err
		}
		// The call RFC 6081 §5.3.3 makes.
		if err := c.AddPortMappingCtx(ctx, "", port, "UDP", port, args[1], true, "TEREDO", uint32(lease)); err != nil {
			return fmt.Errorf("AddPortMapping: %w", err)
		}
		return printEntry(ctx, c, port)
	case "delete":
		port, err := parsePort(args[1])
		if err != nil {
			return err
		}
		if err := c.DeletePortMappingCtx(ctx, "", port, "UDP"); err != nil {
			return fmt.Errorf("DeletePortMapping: %w", err)
		}
		fmt.Println("deleted", port)
		if err := printEntry(ctx, c, port); err != nil {
			fmt.Println("gone", err)
			return nil
		}
		return errors.New("the mapping is still there after DeletePortMapping")
	}
	return fmt.Errorf("unknown command %q", args[0])
}

func printEntry(ctx context.Context, c wanIPConnection, port uint16) error {
	iport, client, enabled, desc, lease, err := c.GetSpecificPortMappingEntryCtx(ctx, "", port, "UDP")
	if err != nil {
		return fmt.Errorf("GetSpecificPortMappingEntry: %w", err)
	}
	fmt.Printf("entry %s:%d enabled=%v description=%s lease=%d\n", client, iport, enabled, desc, lease)
	return nil
}

func parsePort(s string) (uint16, error) {
	p, err := strconv.ParseUint(s, 10, 16)
	if err != nil || p == 0 {
		return 0, fmt.Errorf("bad port %q", s)
	}
	return uint16(p), nil
}

// connect finds the gateway's WANIPConnection service of the asked version,
// by SSDP discovery or from its description URL.
func connect(ctx context.Context, service int, loc string) (wanIPConnection, string, error) {
	var u *url.URL
	if loc != "" {
		var err error
		if u, err = url.Parse(loc); err != nil {
			return nil, "", err
		}
	}
	switch service {
	case 1:
		var cs []*internetgateway2.WANIPConnection1
		var err error
		if u != nil {
			cs, err = internetgateway2.NewWANIPConnection1ClientsByURLCtx(ctx, u)
		} else {
			cs, _, err = internetgateway2.NewWANIPConnection1ClientsCtx(ctx)
		}
		if err != nil || len(cs) == 0 {
			return nil, "", fmt.Errorf("no WANIPConnection:1 found (%v)", err)
		}
		return cs[0], cs[0].Location.String(), nil
	case 2:
		var cs []*internetgateway2.WANIPConnection2
		var err error
		if u != nil {
			cs, err = internetgateway2.NewWANIPConnection2ClientsByURLCtx(ctx, u)
		} else {
			cs, _, err = internetgateway2.NewWANIPConnection2ClientsCtx(ctx)
		}
		if err != nil || len(cs) == 0 {
			return nil, "", fmt.Errorf("no WANIPConnection:2 found (%v)", err)
		}
		return cs[0], cs[0].Location.String(), nil
	}
	return nil, "", fmt.Errorf("service version %d: want 1 or 2", service)
}
