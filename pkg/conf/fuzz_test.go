// SPDX-License-Identifier: MIT

package conf_test

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/miredo-go/miredo/pkg/conf"
)

// fuzzLookup is deterministic and exercises the three outcomes of a lookup:
// failure, a global address and a private one.
func fuzzLookup(host string) (netip.Addr, error) {
	switch len(host) % 3 {
	case 0:
		return netip.Addr{}, errors.New("no such host")
	case 1:
		return netip.AddrFrom4([4]byte{192, 0, 2, byte(len(host))}), nil
	}
	return netip.AddrFrom4([4]byte{10, 0, 0, byte(len(host))}), nil
}

var fuzzSchemas = []conf.Schema{
	conf.ClientSchema, conf.RelaySchema, conf.ServerSchema,
	conf.ClientSchema | conf.RelaySchema | conf.ServerSchema,
}

// FuzzParse checks that Parse never panics, that every error and warning
// points at a line of the input, and that a parsed file formats to text that
// parses back, cleanly, to the same values.
func FuzzParse(f *testing.F) {
	seeds, _ := filepath.Glob(filepath.Join("testdata", "*.conf"))
	for _, p := range seeds {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		for i := range fuzzSchemas {
			f.Add(b, uint8(i))
		}
	}
	for i, s := range []string{
		"RelayType cone\nPrefix 2001:db8:1::1\nInterfaceMTU 0x5dc\nBindAddress 10.1\nBindPort -0\n",
		"ServerBindAddress abc.example\nServerBindAddress2 ::ffff:192.0.2.9\nPrefix ff02::\n",
		"ServerAddress 192.0.2\nServerAddress2 x.example.\nInterfaceName teredo%d junk\n",
		"bindport 1\nBINDPORT 2\nFoo\nFoo bar\n#! x\n\x00\nSyslogFacility LOCAL3 # c\r\n",
		"InterfaceName " + strings.Repeat("y", 1100) + "\nBindPort 1",
	} {
		f.Add([]byte(s), uint8(i))
	}
	f.Fuzz(func(t *testing.T, data []byte, sel uint8) {
		schema := fuzzSchemas[int(sel)%len(fuzzSchemas)]
		opts := conf.Options{LookupIPv4: fuzzLookup}
		lines := bytes.Count(data, []byte{'\n'})
		if len(data) > 0 && data[len(data)-1] != '\n' {
			lines++
		}
		file, warns, err := conf.Parse(bytes.NewReader(data), "f.conf", schema, opts)
		for _, w := range warns {
			if w.Line < 1 || w.Line > lines || !strings.HasPrefix(w.String(), "f.conf:"+strconv.Itoa(w.Line)+": ") {
				t.Errorf("warning outside the input's %d lines: %q", lines, w)
			}
		}
		if err != nil {
			if file != nil {
				t.Errorf("File returned with an error")
			}
			var errs conf.Errors
			if !errors.As(err, &errs) || len(errs) == 0 || len(errs) > conf.MaxErrors+1 {
				t.Fatalf("error %T %v: want 1 to %d conf.Errors", err, err, conf.MaxErrors+1)
			}
			for _, e := range errs {
				msg := e.Error()
				if e.Line < 1 || e.Line > lines || !strings.HasPrefix(msg, "f.conf:"+strconv.Itoa(e.Line)+": ") {
					t.Errorf("error outside the input's %d lines: %q", lines, msg)
				}
				if strings.ContainsAny(msg, "\n\r") {
					t.Errorf("error spans lines: %q", msg)
				}
			}
			return
		}
		text := file.Format()
		again, warns2, err := conf.Parse(strings.NewReader(text), "formatted", schema, opts)
		if err != nil {
			t.Fatalf("Format output does not parse: %v\n%s", err, text)
		}
		if len(warns2) != 0 {
			t.Errorf("Format output draws warnings %v\n%s", warns2, text)
		}
		if !sameValues(file, again) {
			t.Errorf("round trip changed values:\n%+v\n%+v\n%s", *file, *again, text)
		}
		if again.Format() != text {
			t.Errorf("Format is not stable:\n%s\n%s", text, again.Format())
		}
		for d := conf.RelayType; d <= conf.ServerBindAddress2; d++ {
			if file.IsSet(d) != again.IsSet(d) || (file.IsSet(d) && !schema.Has(d)) {
				t.Errorf("%v: set %v, after round trip %v, in schema %v", d, file.IsSet(d), again.IsSet(d), schema.Has(d))
			}
		}
	})
}
