// SPDX-License-Identifier: MIT

package conf_test

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/miredo-go/miredo/pkg/conf"
)

// fakeLookup resolves a few names without DNS.
func fakeLookup(host string) (netip.Addr, error) {
	addrs := map[string]string{
		"teredo.example.net": "192.0.2.1",
		"bind.example":       "198.51.100.7",
		"private.example":    "10.1.2.3",
		"v6.example":         "2001:db8::1",
		"mapped.example":     "::ffff:203.0.113.9",
	}
	if a, ok := addrs[host]; ok {
		return netip.MustParseAddr(a), nil
	}
	return netip.Addr{}, errors.New("no such host")
}

var testOpts = conf.Options{LookupIPv4: fakeLookup}

type parseCase struct {
	name   string
	schema conf.Schema
	opts   *conf.Options // nil: testOpts
	in     string
	want   string   // File.Format() on success
	warns  []string // Warning.String() each
	err    string   // error text; "" for success
}

func runParseCases(t *testing.T, cases []parseCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := testOpts
			if tc.opts != nil {
				opts = *tc.opts
			}
			f, warns, err := conf.Parse(strings.NewReader(tc.in), "t.conf", tc.schema, opts)
			var gotWarns []string
			for _, w := range warns {
				gotWarns = append(gotWarns, w.String())
			}
			if strings.Join(gotWarns, "\n") != strings.Join(tc.warns, "\n") {
				t.Errorf("warnings:\n got %q\nwant %q", gotWarns, tc.warns)
			}
			if tc.err != "" {
				if err == nil {
					t.Fatalf("no error, want %q; file:\n%s", tc.err, f.Format())
				}
				if err.Error() != tc.err {
					t.Errorf("error:\n got %q\nwant %q", err.Error(), tc.err)
				}
				if f != nil {
					t.Errorf("File not nil on error")
				}
				return
			}
			if err != nil {
				t.Fatalf("error: %v", err)
			}
			if got := f.Format(); got != tc.want {
				t.Errorf("Format:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}

func TestParseSyntax(t *testing.T) {
	long := func(n int, prefix string) string { return prefix + strings.Repeat("x", n-len(prefix)) }
	runParseCases(t, []parseCase{
		{name: "empty", schema: conf.ClientSchema, in: "", want: ""},
		{name: "only newlines", schema: conf.ClientSchema, in: "\n\n\n", want: ""},
		{
			name:   "comments and blanks",
			schema: conf.ClientSchema,
			in:     "#! /usr/sbin/miredo -f -c\n# comment\n\n   \n\t# indented\n#ServerAddress x\n",
			want:   "",
		},
		{
			name:   "names ignore case",
			schema: conf.ClientSchema,
			in:     "interfacename teredo\nBINDPORT 3545\nsErVeRaDdReSs teredo.example.net\nrelaytype CLIENT\n",
			want:   "RelayType client\nServerAddress teredo.example.net\nInterfaceName teredo\nBindPort 3545\n",
		},
		{
			name:   "CRLF and other C whitespace",
			schema: conf.ClientSchema,
			in:     "InterfaceName teredo\r\n\vBindPort\f\t3545 \r\n\r\n",
			want:   "InterfaceName teredo\nBindPort 3545\n",
		},
		{
			name:   "last line without newline",
			schema: conf.ClientSchema,
			in:     "BindPort 1\nInterfaceName teredo",
			want:   "InterfaceName teredo\nBindPort 1\n",
		},
		{
			name:   "single token",
			schema: conf.ClientSchema,
			in:     "# x\nInterfaceName\n  Foo  \n",
			warns: []string{
				`t.conf:2: ignoring line: "InterfaceName" has no value`,
				`t.conf:3: ignoring line: "Foo" has no value`,
			},
		},
		{
			name:   "value that is a comment",
			schema: conf.ClientSchema,
			in:     "InterfaceName #teredo\n",
			warns:  []string{`t.conf:1: ignoring line: "InterfaceName" has no value`},
		},
		{
			name:   "text after the value",
			schema: conf.ClientSchema,
			in:     "InterfaceName teredo junk  more \t\n",
			want:   "InterfaceName teredo\n",
			warns:  []string{`t.conf:1: InterfaceName: ignoring text after the value: "junk  more"`},
		},
		{
			name:   "comment after the value",
			schema: conf.ClientSchema,
			in:     "InterfaceName teredo # the tunnel\nBindPort 3545\t#firewall\n",
			want:   "InterfaceName teredo\nBindPort 3545\n",
		},
		{
			name:   "hash inside tokens is no comment",
			schema: conf.ClientSchema,
			in:     "InterfaceName te#redo\n",
			want:   "InterfaceName te#redo\n",
		},
		{
			name:   "line of MaxLineLength bytes is read",
			schema: conf.ClientSchema,
			in:     "BindPort 7" + strings.Repeat(" ", conf.MaxLineLength-len("BindPort 7")) + "\n",
			want:   "BindPort 7\n",
		},
		{
			name:   "line of MaxLineLength bytes with CR is too long",
			schema: conf.ClientSchema,
			in:     "BindPort 7" + strings.Repeat(" ", conf.MaxLineLength-len("BindPort 7")) + "\r\nInterfaceName a\n",
			want:   "InterfaceName a\n",
			warns:  []string{`t.conf:1: skipped overly long line (over 1054 bytes)`},
		},
		{
			name:   "overly long lines are skipped, lines still counted",
			schema: conf.ClientSchema,
			in: long(conf.MaxLineLength+1, "# ") + "\n" +
				"BindPort 7" + strings.Repeat(" ", 5000) + "\n" +
				long(10000, "Foo ") + "\n" +
				"Bogus 1\n" +
				long(conf.MaxLineLength+1, "InterfaceName "),
			warns: []string{
				`t.conf:1: skipped overly long line (over 1054 bytes)`,
				`t.conf:2: skipped overly long line (over 1054 bytes)`,
				`t.conf:3: skipped overly long line (over 1054 bytes)`,
				`t.conf:5: skipped overly long line (over 1054 bytes)`,
			},
			err: `t.conf:4: unknown directive "Bogus"`,
		},
		{
			name:   "last line without newline at the limit",
			schema: conf.ClientSchema,
			in:     "BindPort 7" + strings.Repeat(" ", conf.MaxLineLength-len("BindPort 7")),
			want:   "BindPort 7\n",
		},
		{
			name:   "UTF-8 byte order mark",
			schema: conf.ClientSchema,
			in:     "\ufeffInterfaceName teredo\n\ufeffBindPort 1\n",
			warns:  []string{`t.conf:1: ignoring the UTF-8 byte order mark`},
			err:    `t.conf:2: unknown directive "\ufeffBindPort"`,
		},
		{
			name:   "UTF-8 byte order mark before a comment",
			schema: conf.ClientSchema,
			in:     "\ufeff# miredo.conf\r\nInterfaceName teredo\r\n",
			want:   "InterfaceName teredo\n",
			warns:  []string{`t.conf:1: ignoring the UTF-8 byte order mark`},
		},
		{
			name:   "NUL byte",
			schema: conf.ClientSchema,
			in:     "BindPort 7\x00\n# a\x00b\nInterfaceName x\n",
			want:   "InterfaceName x\n",
			warns: []string{
				`t.conf:1: skipped line holding a NUL byte`,
				`t.conf:2: skipped line holding a NUL byte`,
			},
		},
		{
			name:   "unknown directive",
			schema: conf.ClientSchema,
			in:     "InterfaceName teredo\nServerAdress teredo.example.net\n",
			err:    `t.conf:2: unknown directive "ServerAdress"`,
		},
		{
			name:   "unknown directive with Unicode case folding",
			schema: conf.ClientSchema,
			in:     "ServerAddreſſ teredo.example.net\n",
			err:    `t.conf:1: unknown directive "ServerAddreſſ"`,
		},
		{
			name:   "unknown directive of another program",
			schema: conf.ServerSchema,
			in:     "LocalPort 3544\n",
			err:    `t.conf:1: unknown directive "LocalPort"`,
		},
		{
			name:   "superfluous directives are warnings and not parsed",
			schema: conf.ClientSchema,
			in:     "ServerAddress teredo.example.net\nPrefix 2001::\nInterfaceMTU abc\nServerBindAddress 10.0.0.1\n",
			want:   "ServerAddress teredo.example.net\n",
			warns: []string{
				`t.conf:2: superfluous directive Prefix: not used by this program`,
				`t.conf:3: superfluous directive InterfaceMTU: not used by this program`,
				`t.conf:4: superfluous directive ServerBindAddress: not used by this program`,
			},
		},
		{
			name:   "relay does not use ServerAddress",
			schema: conf.RelaySchema,
			in:     "RelayType cone\nServerAddress teredo.example.net\n",
			want:   "RelayType cone\n",
			warns:  []string{`t.conf:2: superfluous directive ServerAddress: not used by this program`},
		},
		{
			name:   "server does not use RelayType or BindPort",
			schema: conf.ServerSchema,
			in:     "ServerBindAddress 192.0.2.221\nRelayType cone\nBindPort 1\n",
			want:   "ServerBindAddress 192.0.2.221\n",
			warns: []string{
				`t.conf:2: superfluous directive RelayType: not used by this program`,
				`t.conf:3: superfluous directive BindPort: not used by this program`,
			},
		},
		{
			name:   "duplicate: first value wins",
			schema: conf.ClientSchema,
			in:     "BindPort 1\nbindport 2\nBINDPORT nonsense\n",
			want:   "BindPort 1\n",
			warns: []string{
				`t.conf:2: superfluous directive BindPort: already set at line 1; the first value is used`,
				`t.conf:3: superfluous directive BindPort: already set at line 1; the first value is used`,
			},
		},
		{
			name:   "duplicate after a bad first value",
			schema: conf.ClientSchema,
			in:     "BindPort x\nBindPort 2\n",
			err:    `t.conf:1: BindPort "x": not a number`,
		},
		{
			name:   "errors are collected",
			schema: conf.ClientSchema,
			in:     "Foo 1\nBindPort 70000\n# ok\nInterfaceName a/b\nSyslogFacility local9 extra\n",
			warns:  []string{`t.conf:5: SyslogFacility: ignoring text after the value: "extra"`},
			err: `t.conf:1: unknown directive "Foo"` + "\n" +
				`t.conf:2: BindPort "70000": out of range 0-65535` + "\n" +
				`t.conf:4: InterfaceName "a/b": interface names cannot contain '/'` + "\n" +
				`t.conf:5: SyslogFacility "local9": want auth, authpriv, cron, daemon, ftp, kern, local0 to local7, lpr, mail, news, syslog, user or uucp`,
		},
		{
			name:   "long values are cut in messages",
			schema: conf.ClientSchema,
			in:     "InterfaceName " + strings.Repeat("n", 100) + "\n",
			err:    `t.conf:1: InterfaceName "` + strings.Repeat("n", 64) + `"...: interface names are 1 to 15 bytes long`,
		},
	})
}

func TestParseLimits(t *testing.T) {
	in := strings.Repeat("Foo 1\n", conf.MaxErrors+5)
	_, _, err := conf.Parse(strings.NewReader(in), "t.conf", conf.ClientSchema, testOpts)
	var errs conf.Errors
	if !errors.As(err, &errs) {
		t.Fatalf("error %T %v, want conf.Errors", err, err)
	}
	if len(errs) != conf.MaxErrors+1 {
		t.Fatalf("%d errors, want %d", len(errs), conf.MaxErrors+1)
	}
	if got, want := errs[len(errs)-1].Error(), fmt.Sprintf("t.conf:%d: too many errors", conf.MaxErrors+1); got != want {
		t.Errorf("last error %q, want %q", got, want)
	}
	if !errors.Is(err, conf.ErrTooManyErrors) || !errors.Is(err, conf.ErrUnknownDirective) {
		t.Errorf("errors.Is fails through Errors: %v", err)
	}

	// Exactly MaxErrors errors are all reported, with no "too many".
	in = strings.Repeat("Foo 1\n", conf.MaxErrors) + "# end\n\n"
	_, _, err = conf.Parse(strings.NewReader(in), "t.conf", conf.ClientSchema, testOpts)
	if !errors.As(err, &errs) || len(errs) != conf.MaxErrors || errors.Is(err, conf.ErrTooManyErrors) {
		t.Errorf("%d errors (too many: %v), want %d", len(errs), errors.Is(err, conf.ErrTooManyErrors), conf.MaxErrors)
	}

	in = strings.Repeat("x\n", conf.MaxWarnings+50)
	_, warns, err := conf.Parse(strings.NewReader(in), "t.conf", conf.ClientSchema, testOpts)
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != conf.MaxWarnings+1 {
		t.Fatalf("%d warnings, want %d", len(warns), conf.MaxWarnings+1)
	}
	if got, want := warns[len(warns)-1].String(), fmt.Sprintf("t.conf:%d: too many warnings; the rest are not shown", conf.MaxWarnings+1); got != want {
		t.Errorf("last warning %q, want %q", got, want)
	}
}

func TestParseValues(t *testing.T) {
	allowAll := conf.Options{LookupIPv4: fakeLookup, IsGlobalUnicast: func(netip.Addr) bool { return true }}
	noLookup := conf.Options{}
	cl, re, sv := conf.ClientSchema, conf.RelaySchema, conf.ServerSchema
	ok := func(s conf.Schema, in, want string, warns ...string) parseCase {
		return parseCase{name: in, schema: s, in: in + "\n", want: want + "\n", warns: warns}
	}
	bad := func(s conf.Schema, in, err string) parseCase {
		return parseCase{name: in, schema: s, in: in + "\n", err: "t.conf:1: " + err}
	}
	legacy := func(d, v, a string) string {
		return fmt.Sprintf("t.conf:1: %s %q: read as %s (legacy inet_aton form); write it as %s", d, v, a, a)
	}
	cases := []parseCase{
		// RelayType
		ok(cl, "RelayType client", "RelayType client"),
		ok(cl, "RelayType autoclient", "RelayType client"),
		ok(re, "RelayType CONE", "RelayType cone"),
		ok(re, "RelayType relay", "RelayType cone"),
		ok(re, "RelayType Restricted", "RelayType restricted"),
		bad(re, "RelayType server", `RelayType "server": want client, autoclient, cone, relay or restricted`),

		// ServerAddress, ServerAddress2: kept as text
		ok(cl, "ServerAddress teredo.example.net", "ServerAddress teredo.example.net"),
		ok(cl, "ServerAddress unresolvable.example.org.", "ServerAddress unresolvable.example.org."),
		ok(cl, "ServerAddress under_score-1.example", "ServerAddress under_score-1.example"),
		ok(cl, "ServerAddress 192.0.2.1", "ServerAddress 192.0.2.1"),
		ok(cl, "ServerAddress 192.0.2", "ServerAddress 192.0.0.2", legacy("ServerAddress", "192.0.2", "192.0.0.2")),
		ok(cl, "ServerAddress2 teredo2.example.net", "ServerAddress2 teredo2.example.net"),
		ok(cl, "ServerAddress ::FFFF:192.0.2.1", "ServerAddress 192.0.2.1", `t.conf:1: ServerAddress "::FFFF:192.0.2.1": read as 192.0.2.1 (IPv4-mapped IPv6 form); write it as 192.0.2.1`),
		bad(cl, "ServerAddress 2001:db8::1", `ServerAddress "2001:db8::1": not an IPv4 address or host name (Teredo servers are reached over IPv4)`),
		bad(cl, "ServerAddress 192.0.2.300", `ServerAddress "192.0.2.300": not a valid IPv4 address`),
		bad(cl, "ServerAddress 1.2.3.4.5", `ServerAddress "1.2.3.4.5": not a valid IPv4 address`),
		bad(cl, "ServerAddress host!.example", `ServerAddress "host!.example": not an IPv4 address or host name`),
		bad(cl, "ServerAddress a..b", `ServerAddress "a..b": not an IPv4 address or host name`),
		bad(cl, "ServerAddress "+strings.Repeat("a", 64)+".example", `ServerAddress "`+strings.Repeat("a", 64)+`"...: not an IPv4 address or host name`),
		bad(cl, "ServerAddress2 .", `ServerAddress2 ".": not an IPv4 address or host name`),

		// Prefix
		ok(re, "Prefix 2001:0::", "Prefix 2001::"),
		ok(sv, "Prefix 2001:db8::", "Prefix 2001:db8::"),
		ok(re, "Prefix 3ffe:831f::", "Prefix 3ffe:831f::"),
		ok(re, "Prefix 2001:db8:1::1", "Prefix 2001:db8::", `t.conf:1: Prefix "2001:db8:1::1": only the first 32 bits are used: 2001:db8::/32`),
		ok(re, "Prefix ::ffff:192.0.2.1", "Prefix ::", `t.conf:1: Prefix "::ffff:192.0.2.1": only the first 32 bits are used: ::/32`),
		bad(re, "Prefix ff02::", `Prefix "ff02::": multicast (ff00::/8) cannot be a Teredo prefix`),
		bad(sv, "Prefix FF0E:1::", `Prefix "FF0E:1::": multicast (ff00::/8) cannot be a Teredo prefix`),
		bad(re, "Prefix 2001::/32", `Prefix "2001::/32": write the address without a prefix length; its first 32 bits are used`),
		bad(re, "Prefix 192.0.2.1", `Prefix "192.0.2.1": not an IPv6 address`),
		bad(re, "Prefix teredo.example.net", `Prefix "teredo.example.net": not an IPv6 address`),
		bad(re, "Prefix fe80::1%eth0", `Prefix "fe80::1%eth0": an IPv6 prefix takes no zone`),

		// LogLevel, RateLimit: ours
		ok(cl, "LogLevel debug", "LogLevel debug"),
		ok(re, "LogLevel WARN", "LogLevel warn"),
		ok(sv, "LogLevel error", "LogLevel error"),
		bad(sv, "LogLevel loud", `LogLevel "loud": want debug, info, warn or error`),
		ok(sv, "RateLimit 0", "RateLimit 0"),
		ok(sv, "RateLimit 20000", "RateLimit 20000"),
		bad(sv, "RateLimit -1", `RateLimit "-1": out of range 0-2147483648`),
		bad(sv, "RateLimit 4294967296", `RateLimit "4294967296": out of range 0-2147483648`),

		// InterfaceMTU: strtoul(…, 0), 1280-65535
		ok(re, "InterfaceMTU 1280", "InterfaceMTU 1280"),
		ok(sv, "InterfaceMTU 1500", "InterfaceMTU 1500"),
		ok(re, "InterfaceMTU 0x5dc", "InterfaceMTU 1500"),
		ok(re, "InterfaceMTU 0X5DC", "InterfaceMTU 1500"),
		ok(re, "InterfaceMTU 02734", "InterfaceMTU 1500"),
		ok(re, "InterfaceMTU +1500", "InterfaceMTU 1500"),
		ok(re, "InterfaceMTU 65535", "InterfaceMTU 65535"),
		bad(re, "InterfaceMTU 1279", `InterfaceMTU "1279": out of range 1280-65535`),
		bad(sv, "InterfaceMTU 0", `InterfaceMTU "0": out of range 1280-65535`),
		bad(re, "InterfaceMTU 65536", `InterfaceMTU "65536": out of range 1280-65535`),
		bad(re, "InterfaceMTU -1500", `InterfaceMTU "-1500": out of range 1280-65535`),
		bad(re, "InterfaceMTU 99999999999999999999999", `InterfaceMTU "99999999999999999999999": out of range 1280-65535`),
		bad(re, "InterfaceMTU 1500bytes", `InterfaceMTU "1500bytes": not a number`),
		bad(re, "InterfaceMTU 1.5e3", `InterfaceMTU "1.5e3": not a number`),

		// BindPort: 0-65535
		ok(cl, "BindPort 0", "BindPort 0"),
		ok(cl, "BindPort -0", "BindPort 0"),
		ok(re, "BindPort 3545", "BindPort 3545"),
		ok(cl, "BindPort 0xdda", "BindPort 3546"),
		ok(cl, "BindPort 07731", "BindPort 4057"),
		ok(cl, "BindPort 65535", "BindPort 65535"),
		bad(cl, "BindPort 65536", `BindPort "65536": out of range 0-65535`),
		bad(cl, "BindPort -1", `BindPort "-1": out of range 0-65535`),
		bad(cl, "BindPort 08", `BindPort "08": not a number`),
		bad(cl, "BindPort 0x", `BindPort "0x": not a number`),
		bad(cl, "BindPort +", `BindPort "+": not a number`),
		bad(cl, "BindPort --1", `BindPort "--1": not a number`),
		bad(cl, "BindPort teredo", `BindPort "teredo": not a number`),

		// InterfaceName: Linux's dev_valid_name
		ok(cl, "InterfaceName teredo", "InterfaceName teredo"),
		ok(re, "InterfaceName teredo%d", "InterfaceName teredo%d"),
		ok(cl, "InterfaceName abcdefghijklmno", "InterfaceName abcdefghijklmno"),
		ok(cl, "InterfaceName tér", "InterfaceName tér"),
		ok(cl, "InterfaceName ...", "InterfaceName ..."),
		bad(cl, "InterfaceName abcdefghijklmnop", `InterfaceName "abcdefghijklmnop": interface names are 1 to 15 bytes long`),
		bad(cl, "InterfaceName .", `InterfaceName ".": not a valid interface name`),
		bad(cl, "InterfaceName ..", `InterfaceName "..": not a valid interface name`),
		bad(cl, "InterfaceName a:1", `InterfaceName "a:1": interface names cannot contain ':'`),
		bad(cl, "InterfaceName a%s", `InterfaceName "a%s": '%' may appear only once, as "%d"`),
		bad(cl, "InterfaceName a%d%d", `InterfaceName "a%d%d": '%' may appear only once, as "%d"`),
		bad(cl, "InterfaceName a%", `InterfaceName "a%": '%' may appear only once, as "%d"`),

		// SyslogFacility
		ok(sv, "SyslogFacility LOCAL3", "SyslogFacility local3"),
		ok(cl, "SyslogFacility AuthPriv", "SyslogFacility authpriv"),
		bad(cl, "SyslogFacility LOG_DAEMON", `SyslogFacility "LOG_DAEMON": want auth, authpriv, cron, daemon, ftp, kern, local0 to local7, lpr, mail, news, syslog, user or uucp`),
		bad(re, "SyslogFacility local8", `SyslogFacility "local8": want auth, authpriv, cron, daemon, ftp, kern, local0 to local7, lpr, mail, news, syslog, user or uucp`),

		// BindAddress: IPv4 literal or a host name resolved now
		ok(cl, "BindAddress 0.0.0.0", "BindAddress 0.0.0.0"),
		ok(re, "BindAddress 192.0.2.100", "BindAddress 192.0.2.100"),
		ok(cl, "BindAddress 10.1", "BindAddress 10.0.0.1", legacy("BindAddress", "10.1", "10.0.0.1")),
		ok(cl, "BindAddress 0x7f.1", "BindAddress 127.0.0.1", legacy("BindAddress", "0x7f.1", "127.0.0.1")),
		ok(cl, "BindAddress 017.0.0.1", "BindAddress 15.0.0.1", legacy("BindAddress", "017.0.0.1", "15.0.0.1")),
		ok(cl, "BindAddress 3221226084", "BindAddress 192.0.2.100", legacy("BindAddress", "3221226084", "192.0.2.100")),
		ok(cl, "BindAddress 192.0.0x264", "BindAddress 192.0.2.100", legacy("BindAddress", "192.0.0x264", "192.0.2.100")),
		ok(cl, "BindAddress bind.example", "BindAddress bind.example"),
		ok(cl, "BindAddress mapped.example", "BindAddress mapped.example"),
		bad(cl, "BindAddress nohost.example", `BindAddress "nohost.example": cannot resolve host name: no such host`),
		bad(cl, "BindAddress v6.example", `BindAddress "v6.example": cannot resolve host name: lookup returned 2001:db8::1, not an IPv4 address`),
		bad(cl, "BindAddress 2001:db8::1", `BindAddress "2001:db8::1": not an IPv4 address`),
		ok(cl, "BindAddress ::ffff:192.0.2.1", "BindAddress 192.0.2.1", `t.conf:1: BindAddress "::ffff:192.0.2.1": read as 192.0.2.1 (IPv4-mapped IPv6 form); write it as 192.0.2.1`),
		bad(cl, "BindAddress ::ffff:192.0.2.1%eth0", `BindAddress "::ffff:192.0.2.1%eth0": not an IPv4 address`),
		bad(sv, "ServerBindAddress ::ffff:10.0.0.1", `ServerBindAddress "::ffff:10.0.0.1": not a global unicast IPv4 address`),
		bad(cl, "BindAddress 192.0.2.256", `BindAddress "192.0.2.256": not a valid IPv4 address`),
		bad(cl, "BindAddress 1.2.65536", `BindAddress "1.2.65536": not a valid IPv4 address`),
		bad(cl, "BindAddress 4294967296", `BindAddress "4294967296": not a valid IPv4 address`),
		bad(cl, "BindAddress 192.0.2.1%eth0", `BindAddress "192.0.2.1%eth0": not an IPv4 address or host name`),
		{name: "no lookup", schema: cl, opts: &noLookup, in: "BindAddress bind.example\n",
			err: `t.conf:1: BindAddress "bind.example": cannot resolve host name: no host name lookup configured`},

		// ServerBindAddress, ServerBindAddress2: global unicast IPv4
		ok(sv, "ServerBindAddress 192.0.2.221", "ServerBindAddress 192.0.2.221"),
		ok(sv, "ServerBindAddress2 203.0.113.5", "ServerBindAddress2 203.0.113.5"),
		ok(sv, "ServerBindAddress teredo.example.net", "ServerBindAddress teredo.example.net"),
		ok(sv, "ServerBindAddress 240.0.0.1", "ServerBindAddress 240.0.0.1"),
		bad(sv, "ServerBindAddress 10.0.0.1", `ServerBindAddress "10.0.0.1": not a global unicast IPv4 address`),
		bad(sv, "ServerBindAddress2 192.168.1.1", `ServerBindAddress2 "192.168.1.1": not a global unicast IPv4 address`),
		bad(sv, "ServerBindAddress 0.0.0.0", `ServerBindAddress "0.0.0.0": not a global unicast IPv4 address`),
		bad(sv, "ServerBindAddress 255.255.255.255", `ServerBindAddress "255.255.255.255": not a global unicast IPv4 address`),
		bad(sv, "ServerBindAddress 127.1", `ServerBindAddress "127.1": not a global unicast IPv4 address`),
		bad(sv, "ServerBindAddress private.example", `ServerBindAddress "private.example": not a global unicast IPv4 address (resolved to 10.1.2.3)`),
		bad(sv, "ServerBindAddress2 nohost.example", `ServerBindAddress2 "nohost.example": cannot resolve host name: no such host`),
		{name: "caller's global test", schema: sv, opts: &allowAll, in: "ServerBindAddress 10.0.0.1\n", want: "ServerBindAddress 10.0.0.1\n"},
	}
	runParseCases(t, cases)
}

// TestGlobalUnicastDefault checks the built-in list against the one the
// brief for pkg/proto gives, at each range's edges.
func TestGlobalUnicastDefault(t *testing.T) {
	notGlobal := []string{
		"0.0.0.0", "0.255.255.255", "10.0.0.0", "10.255.255.255", "127.0.0.1",
		"169.254.0.1", "169.254.255.255", "172.16.0.0", "172.31.255.255",
		"192.168.0.1", "192.88.99.1", "224.0.0.1", "239.255.255.255", "255.255.255.255",
	}
	global := []string{
		"1.0.0.0", "9.255.255.255", "11.0.0.0", "126.255.255.255", "128.0.0.0",
		"169.253.255.255", "169.255.0.0", "172.15.255.255", "172.32.0.0",
		"192.167.255.255", "192.169.0.0", "192.88.98.255", "192.88.100.0",
		"223.255.255.255", "240.0.0.0", "255.255.255.254",
		"192.0.2.1", "198.51.100.1", "203.0.113.1", // documentation ranges count as global
	}
	check := func(addr string, want bool) {
		_, _, err := conf.Parse(strings.NewReader("ServerBindAddress "+addr+"\n"), "t", conf.ServerSchema, conf.Options{})
		if got := err == nil; got != want {
			t.Errorf("%s: global = %v, want %v (err %v)", addr, got, want, err)
		}
		if err != nil && !errors.Is(err, conf.ErrNotGlobal) {
			t.Errorf("%s: error %v is not ErrNotGlobal", addr, err)
		}
	}
	for _, a := range notGlobal {
		check(a, false)
	}
	for _, a := range global {
		check(a, true)
	}
}
