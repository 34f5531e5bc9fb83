// SPDX-License-Identifier: MIT

// Command demo builds a whole Teredo network in network namespaces with our
// three daemons (server, relay, a client behind a NAT) and a native IPv6
// host, shows the client's Teredo address decoded, pings the native host
// through the relay and back, and removes everything. `make demo` runs it as
// root after building bin/.
//
// Nothing touches the host's own network: every namespace is the lab's, and
// every address is a documentation range.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/miredo-go/miredo/internal/lab"
	"github.com/miredo-go/miredo/pkg/proto"
)

func main() {
	bin := flag.String("bin", "bin", "directory holding miredo-server, miredo-relay and miredo-client")
	natName := flag.String("nat", lab.PortRestricted.String(), "behaviour of the client's NAT: full-cone, address-restricted, port-restricted or symmetric")
	keep := flag.Bool("keep", false, "leave the lab up at the end (remove it with: go run ./internal/lab/labctl down --prefix demo)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Stdout, *bin, *natName, *keep); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, w io.Writer, bin, natName string, keep bool) error {
	if reason := lab.Missing(); reason != "" {
		return errors.New(reason)
	}
	mode, err := lab.ParseNATMode(natName)
	if err != nil {
		return err
	}
	for _, b := range []string{"miredo-server", "miredo-relay", "miredo-client"} {
		if _, err := os.Stat(filepath.Join(bin, b)); err != nil {
			return fmt.Errorf("%w (run make build first)", err)
		}
	}
	bin, _ = filepath.Abs(bin)
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()

	step(w, "building the lab: router, server, relay, native IPv6 host, client behind a %s NAT", mode)
	l, err := lab.Build(ctx, lab.Options{Prefix: "demo", NAT1: mode, NAT2: lab.PortRestricted,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	if !keep {
		defer func() {
			step(w, "removing the lab")
			l.Close()
		}()
	}
	server, relay, client, native := l.Host(lab.Server), l.Host(lab.Relay), l.Host(lab.Client1), l.Host(lab.Native)
	fail := func(err error) error {
		for _, p := range l.Processes() {
			fmt.Fprintf(w, "--- %s log:\n%s\n", p.Name, p.Tail(15))
		}
		return err
	}

	// Miredo's own configuration files, read unchanged by our daemons.
	confs := map[string]string{
		"server.conf": fmt.Sprintf("ServerBindAddress %s\n", server.IPv4()),
		"relay.conf":  fmt.Sprintf("RelayType cone\nInterfaceName teredo\nBindAddress %s\n", relay.IPv4()),
		"client.conf": fmt.Sprintf("RelayType client\nServerAddress %s\nInterfaceName teredo\n", server.IPv4()),
	}
	for name, text := range confs {
		if err := os.WriteFile(filepath.Join(l.LogDir, name), []byte(text), 0o644); err != nil {
			return err
		}
	}
	cfg := func(name string) string { return filepath.Join(l.LogDir, name) }

	step(w, "starting miredo-server on %v and %v", server.IPv4s()[0], server.IPv4s()[1])
	if _, err := l.Start(ctx, server, "miredo-server", filepath.Join(bin, "miredo-server"), "-c", cfg("server.conf")); err != nil {
		return err
	}
	if err := server.WaitUDP(ctx, proto.Port); err != nil {
		return fail(err)
	}
	step(w, "starting miredo-relay on %v, routing 2001::/32 for the native network", relay.IPv4())
	if _, err := l.Start(ctx, relay, "miredo-relay", filepath.Join(bin, "miredo-relay"), "-c", cfg("relay.conf")); err != nil {
		return err
	}
	if err := relay.WaitLink(ctx, "teredo"); err != nil {
		return fail(err)
	}
	step(w, "starting miredo-client on %v, behind NAT %v", client.IPv4(), l.WAN(lab.NAT1))
	start := time.Now()
	cp, err := l.Start(ctx, client, "miredo-client", filepath.Join(bin, "miredo-client"), "-c", cfg("client.conf"))
	if err != nil {
		return err
	}
	addr, err := client.WaitAddr(ctx, "teredo", netip.MustParsePrefix("2001::/32"))
	if err != nil {
		return fail(err)
	}
	if err := client.WaitDefaultRoute(ctx, "teredo"); err != nil {
		return fail(err)
	}
	a, _ := proto.ParseAddress(addr)
	step(w, "the client qualified in %v", time.Since(start).Round(time.Millisecond))
	fmt.Fprintf(w, "    Teredo address  %v\n", addr)
	fmt.Fprintf(w, "    server          %v\n", a.Server)
	fmt.Fprintf(w, "    mapped address  %v (the NAT's public side)\n", a.MappedAddr)
	fmt.Fprintf(w, "    mapped port     %d\n", a.MappedPort)
	fmt.Fprintf(w, "    flags           %#04x (cone %v, RFC 5991 random bits %#04x)\n", a.Flags, a.Cone(), a.Flags&proto.RandomFlagsMask)
	fmt.Fprintf(w, "    NAT type        %s (probed through the secondary server address)\n", waitNATType(ctx, cp))

	step(w, "client -> native host %v, through the relay", native.IPv6())
	if err := pingShow(ctx, w, client, native.IPv6()); err != nil {
		return fail(err)
	}
	step(w, "native host -> client %v", addr)
	if err := pingShow(ctx, w, native, addr); err != nil {
		return fail(err)
	}
	step(w, "done: IPv6 reached a client behind a NAT, and the client reached native IPv6")
	if keep {
		fmt.Fprintf(w, "    the lab stays up; logs in %s; remove it with: go run ./internal/lab/labctl down --prefix demo\n", l.LogDir)
	}
	return nil
}

var natRE = regexp.MustCompile(`msg="NAT behaviour".* nat="?([a-z-]+(?: \([A-Za-z -]+\))?)`)

// waitNATType waits (up to 10 s) for the NAT behaviour the client reports
// in its log once its probe through the secondary address is done.
func waitNATType(ctx context.Context, p *lab.Process) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		if m := natRE.FindAllStringSubmatch(p.Tail(200), -1); m != nil {
			return m[len(m)-1][1]
		}
		select {
		case <-ctx.Done():
			return "(not reported)"
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// pingShow waits until dst answers from h, then shows three pings.
func pingShow(ctx context.Context, w io.Writer, h *lab.Host, dst netip.Addr) error {
	if err := h.Ping(ctx, dst); err != nil {
		return err
	}
	out, err := h.Run(ctx, "ping", "-n", "-c", "3", "-i", "0.3", dst.String())
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		fmt.Fprintf(w, "    %s\n", line)
	}
	return err
}

func step(w io.Writer, format string, args ...any) {
	fmt.Fprintf(w, "==> "+format+"\n", args...)
}
