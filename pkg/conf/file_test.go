// SPDX-License-Identifier: MIT

package conf_test

import (
	"context"
	"errors"
	"io/fs"
	"log/syslog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/miredo-go/miredo/pkg/conf"
)

func TestDefaults(t *testing.T) {
	f, warns, err := conf.Parse(strings.NewReader(""), "empty.conf", conf.ClientSchema, testOpts)
	if err != nil || len(warns) != 0 {
		t.Fatalf("Parse: %v, %v", warns, err)
	}
	want := conf.File{
		Name:           "empty.conf",
		RelayType:      conf.ModeClient,
		Prefix:         netip.MustParsePrefix("2001::/32"),
		InterfaceMTU:   1280,
		BindAddress:    netip.MustParseAddr("0.0.0.0"),
		SyslogFacility: conf.FacilityDaemon,
	}
	if !sameValues(f, &want) {
		t.Errorf("defaults:\n got %+v\nwant %+v", *f, want)
	}
	for d := conf.RelayType; d <= conf.ServerBindAddress2; d++ {
		if f.IsSet(d) || f.Line(d) != 0 || f.Raw(d) != "" {
			t.Errorf("%v reported set in an empty file", d)
		}
	}
	if conf.DefaultPrefix() != netip.MustParsePrefix("2001::/32") {
		t.Errorf("DefaultPrefix = %v", conf.DefaultPrefix())
	}
}

// sameValues compares the directive values of two Files, not where they
// came from.
func sameValues(a, b *conf.File) bool {
	return a.RelayType == b.RelayType &&
		a.ServerAddress == b.ServerAddress &&
		a.ServerAddress2 == b.ServerAddress2 &&
		a.Prefix == b.Prefix &&
		a.InterfaceMTU == b.InterfaceMTU &&
		a.InterfaceName == b.InterfaceName &&
		a.BindAddress == b.BindAddress &&
		a.BindPort == b.BindPort &&
		a.SyslogFacility == b.SyslogFacility &&
		a.ServerBindAddress == b.ServerBindAddress &&
		a.ServerBindAddress2 == b.ServerBindAddress2
}

func TestTypedValues(t *testing.T) {
	in := "# relay\n" +
		"RelayType restricted\n" +
		"Prefix 2001:db8:ffff::1\n" +
		"InterfaceMTU 0x5dc\n" +
		"InterfaceName teredo\n" +
		"BindAddress bind.example\n" +
		"BindPort 3545\n" +
		"SyslogFacility LOCAL7\n" +
		"ServerAddress teredo.example.net\n"
	f, warns, err := conf.Parse(strings.NewReader(in), "relay.conf", conf.RelaySchema, testOpts)
	if err != nil {
		t.Fatal(err)
	}
	want := conf.File{
		RelayType:      conf.ModeRestricted,
		Prefix:         netip.MustParsePrefix("2001:db8::/32"),
		InterfaceMTU:   1500,
		InterfaceName:  "teredo",
		BindAddress:    netip.MustParseAddr("198.51.100.7"),
		BindPort:       3545,
		SyslogFacility: conf.FacilityLocal7,
	}
	if !sameValues(f, &want) {
		t.Errorf("values:\n got %+v\nwant %+v", *f, want)
	}
	if f.Name != "relay.conf" {
		t.Errorf("Name = %q", f.Name)
	}
	if !f.IsSet(conf.BindPort) || f.Line(conf.BindPort) != 7 || f.Raw(conf.InterfaceMTU) != "0x5dc" || f.Raw(conf.BindAddress) != "bind.example" {
		t.Errorf("IsSet/Line/Raw: %v %d %q %q", f.IsSet(conf.BindPort), f.Line(conf.BindPort), f.Raw(conf.InterfaceMTU), f.Raw(conf.BindAddress))
	}
	// ServerAddress is not in the relay schema: warned about, not set.
	if f.IsSet(conf.ServerAddress) || f.ServerAddress != "" {
		t.Errorf("ServerAddress set in relay mode: %q", f.ServerAddress)
	}
	if len(warns) != 2 || warns[0].Directive != conf.Prefix || warns[0].Line != 3 ||
		warns[1].Directive != conf.ServerAddress || warns[1].Line != 9 || warns[1].File != "relay.conf" {
		t.Errorf("warnings: %+v", warns)
	}
}

func TestErrorTypes(t *testing.T) {
	in := "BindPort 1\nBogus 2\nInterfaceName a/b\n"
	_, _, err := conf.Parse(strings.NewReader(in), "x.conf", conf.ClientSchema, testOpts)
	var errs conf.Errors
	if !errors.As(err, &errs) || len(errs) != 2 {
		t.Fatalf("error %T %v: want 2 conf.Errors", err, err)
	}
	var first *conf.Error
	if !errors.As(err, &first) || first.File != "x.conf" || first.Line != 2 || first.Directive != 0 || !errors.Is(first, conf.ErrUnknownDirective) {
		t.Errorf("first error: %+v", first)
	}
	if e := errs[1]; e.Line != 3 || e.Directive != conf.InterfaceName || e.Value != "a/b" {
		t.Errorf("second error: %+v", e)
	}

	// A lookup failure wraps both ErrLookup and the lookup's own error.
	cause := errors.New("resolver on fire")
	opts := conf.Options{LookupIPv4: func(string) (netip.Addr, error) { return netip.Addr{}, cause }}
	_, _, err = conf.Parse(strings.NewReader("BindAddress a.example\n"), "x.conf", conf.ClientSchema, opts)
	if !errors.Is(err, conf.ErrLookup) || !errors.Is(err, cause) {
		t.Errorf("lookup error %v does not wrap ErrLookup and its cause", err)
	}
}

func TestErrorAt(t *testing.T) {
	f, _, err := conf.Parse(strings.NewReader("\nServerBindAddress 9.255.255.255\n"), "s.conf", conf.ServerSchema, conf.Options{})
	if err != nil {
		t.Fatal(err)
	}
	// The role derives the secondary address (primary + 1) and finds it is
	// not global: the message points at the primary's line.
	e := f.ErrorAt(conf.ServerBindAddress, errors.New("secondary address 10.0.0.0 (primary + 1) is not global unicast"))
	if got, want := e.Error(), `s.conf:2: ServerBindAddress "9.255.255.255": secondary address 10.0.0.0 (primary + 1) is not global unicast`; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	e = f.ErrorAt(conf.ServerAddress, errors.New("not set"))
	if got, want := e.Error(), `s.conf: ServerAddress: not set`; got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func TestSamples(t *testing.T) {
	cases := []struct {
		file   string
		schema conf.Schema
		want   string
	}{
		{"client-sample.conf", conf.ClientSchema, "ServerAddress teredo.example.net\nInterfaceName teredo\n"},
		{"client-debian.conf", conf.ClientSchema, "ServerAddress teredo.example.net\nInterfaceName teredo\n"},
		{"relay-sample.conf", conf.RelaySchema, "RelayType cone\nPrefix 2001::\nInterfaceMTU 1280\nInterfaceName teredo\n" +
			"BindAddress 198.51.100.20\nBindPort 3545\nSyslogFacility local3\n"},
		{"server-sample.conf", conf.ServerSchema, "ServerBindAddress 192.0.2.221\n"},
	}
	for _, tc := range cases {
		t.Run(tc.file, func(t *testing.T) {
			f, warns, err := conf.ParseFile(filepath.Join("testdata", tc.file), tc.schema, testOpts)
			if err != nil || len(warns) != 0 {
				t.Fatalf("warnings %v, error %v", warns, err)
			}
			if got := f.Format(); got != tc.want {
				t.Errorf("got\n%s\nwant\n%s", got, tc.want)
			}
		})
	}
}

// TestInstalledFiles reads the configuration files Debian's miredo and
// miredo-server install, when this machine has them: the drop-in promise is
// about exactly these files.
func TestInstalledFiles(t *testing.T) {
	files := []struct {
		path   string
		schema conf.Schema
	}{
		{"/etc/miredo.conf", conf.ClientSchema},
		{"/etc/miredo-server.conf", conf.ServerSchema},
		{"/etc/miredo/miredo.conf", conf.ClientSchema},
		{"/etc/miredo/miredo-server.conf", conf.ServerSchema},
		{"/usr/share/doc/miredo/examples/miredo.conf", conf.ClientSchema},
		{"/usr/share/doc/miredo-server/examples/miredo-server.conf", conf.ServerSchema},
	}
	for _, tc := range files {
		t.Run(tc.path, func(t *testing.T) {
			if _, err := os.Stat(tc.path); errors.Is(err, fs.ErrNotExist) {
				t.Skipf("%s is not installed (Debian packages miredo, miredo-server)", tc.path)
			}
			// Any host name the operator put in resolves, without DNS.
			opts := conf.Options{LookupIPv4: func(string) (netip.Addr, error) { return netip.MustParseAddr("192.0.2.1"), nil }}
			f, warns, err := conf.ParseFile(tc.path, tc.schema, opts)
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range warns {
				t.Errorf("warning: %s", w)
			}
			// Whatever the operator edited, the result re-reads the same.
			g, _, err := conf.Parse(strings.NewReader(f.Format()), "formatted", tc.schema, opts)
			if err != nil || !sameValues(f, g) {
				t.Errorf("Format does not round-trip: %v\n%s", err, f.Format())
			}
			t.Logf("%s:\n%s", tc.path, f.Format())
		})
	}
}

func TestParseFileMissing(t *testing.T) {
	_, _, err := conf.ParseFile(filepath.Join(t.TempDir(), "none.conf"), conf.ClientSchema, testOpts)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error %v, want fs.ErrNotExist", err)
	}
}

func TestReadError(t *testing.T) {
	r := iotest.DataErrReader(iotest.TimeoutReader(strings.NewReader(strings.Repeat("# comment\n", 1000))))
	_, _, err := conf.Parse(r, "r.conf", conf.ClientSchema, testOpts)
	var e *conf.Error
	if !errors.As(err, &e) || !errors.Is(err, iotest.ErrTimeout) || e.File != "r.conf" || e.Line < 1 {
		t.Fatalf("error %v (%+v), want a conf.Error wrapping iotest.ErrTimeout", err, e)
	}
	if !strings.HasPrefix(err.Error(), "r.conf:") || !strings.Contains(err.Error(), ": read: timeout") {
		t.Errorf("error text %q", err.Error())
	}
}

// TestFacilityValues checks our facility values against log/syslog's, which
// are <syslog.h>'s.
func TestFacilityValues(t *testing.T) {
	want := map[string]syslog.Priority{
		"kern": syslog.LOG_KERN, "user": syslog.LOG_USER, "mail": syslog.LOG_MAIL,
		"daemon": syslog.LOG_DAEMON, "auth": syslog.LOG_AUTH, "syslog": syslog.LOG_SYSLOG,
		"lpr": syslog.LOG_LPR, "news": syslog.LOG_NEWS, "uucp": syslog.LOG_UUCP,
		"cron": syslog.LOG_CRON, "authpriv": syslog.LOG_AUTHPRIV, "ftp": syslog.LOG_FTP,
		"local0": syslog.LOG_LOCAL0, "local1": syslog.LOG_LOCAL1, "local2": syslog.LOG_LOCAL2,
		"local3": syslog.LOG_LOCAL3, "local4": syslog.LOG_LOCAL4, "local5": syslog.LOG_LOCAL5,
		"local6": syslog.LOG_LOCAL6, "local7": syslog.LOG_LOCAL7,
	}
	for name, prio := range want {
		for _, spelling := range []string{name, strings.ToUpper(name)} {
			f, ok := conf.ParseFacility(spelling)
			if !ok || syslog.Priority(f) != prio || f.String() != name {
				t.Errorf("ParseFacility(%q) = %v (%d), %v; want %d", spelling, f, f, ok, prio)
			}
		}
	}
	for _, bad := range []string{"", "local8", "LOG_USER", "daemon ", "security", "mark"} {
		if f, ok := conf.ParseFacility(bad); ok {
			t.Errorf("ParseFacility(%q) = %v, want failure", bad, f)
		}
	}
	if got := conf.Facility(7).String(); got != "Facility(7)" {
		t.Errorf("String of a non-facility: %q", got)
	}
}

func TestNames(t *testing.T) {
	for d := conf.RelayType; d <= conf.ServerBindAddress2; d++ {
		for _, s := range []string{d.String(), strings.ToLower(d.String()), strings.ToUpper(d.String())} {
			if got, ok := conf.ParseDirective(s); !ok || got != d {
				t.Errorf("ParseDirective(%q) = %v, %v", s, got, ok)
			}
		}
	}
	for _, bad := range []string{"", "Relay", "RelayTypes", "Server Address", "İnterfaceName"} {
		if d, ok := conf.ParseDirective(bad); ok {
			t.Errorf("ParseDirective(%q) = %v", bad, d)
		}
	}
	if conf.Directive(0).String() != "Directive(0)" {
		t.Errorf("zero Directive prints %q", conf.Directive(0))
	}
	for _, m := range []conf.Mode{conf.ModeClient, conf.ModeCone, conf.ModeRestricted} {
		if got, ok := conf.ParseMode(m.String()); !ok || got != m {
			t.Errorf("ParseMode(%q) = %v, %v", m, got, ok)
		}
	}
	if _, ok := conf.ParseMode("server"); ok {
		t.Error("ParseMode accepted server")
	}
}

func TestSchema(t *testing.T) {
	want := map[conf.Schema][]conf.Directive{
		conf.ClientSchema: {conf.RelayType, conf.ServerAddress, conf.ServerAddress2, conf.InterfaceName, conf.BindAddress, conf.BindPort, conf.SyslogFacility, conf.LogLevel},
		conf.RelaySchema:  {conf.RelayType, conf.Prefix, conf.InterfaceMTU, conf.InterfaceName, conf.BindAddress, conf.BindPort, conf.SyslogFacility, conf.LogLevel},
		conf.ServerSchema: {conf.Prefix, conf.InterfaceMTU, conf.SyslogFacility, conf.ServerBindAddress, conf.ServerBindAddress2, conf.LogLevel, conf.RateLimit},
	}
	for s, ds := range want {
		if got := s.Directives(); !equalDirectives(got, ds) {
			t.Errorf("schema %#x: %v, want %v", uint32(s), got, ds)
		}
		if conf.SchemaOf(ds...) != s {
			t.Errorf("SchemaOf(%v) = %#x, want %#x", ds, uint32(conf.SchemaOf(ds...)), uint32(s))
		}
	}
	if conf.SchemaOf(0, 200).Has(0) || conf.ClientSchema.Has(0) || conf.ClientSchema.Has(200) {
		t.Error("schemas hold invalid directives")
	}
}

func equalDirectives(a, b []conf.Directive) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestNetLookup reads /etc/hosts through Go's resolver, whose DNS dialer
// is cut off: a test sends no packets.
func TestNetLookup(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	noDNS := &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("no DNS in tests")
	}}
	lookup := conf.NetLookup(ctx, noDNS)
	a, err := lookup("localhost")
	if err != nil {
		t.Skipf("localhost does not resolve here: %v", err)
	}
	if !a.Is4() || !a.IsLoopback() {
		t.Errorf("localhost = %v, want an IPv4 loopback address", a)
	}
}
