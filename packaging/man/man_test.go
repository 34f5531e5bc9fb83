// SPDX-License-Identifier: MIT

package man

import (
	"bytes"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/miredo-go/miredo/pkg/conf"
)

// TestPagesRender has groff format each page with every warning on and
// fails on any: a warning is text a reader would see mangled.
func TestPagesRender(t *testing.T) {
	if _, err := exec.LookPath("groff"); err != nil {
		t.Skip("groff not installed (apt-get install groff-base)")
	}
	want := []string{"miredo-client.8", "miredo-relay.8", "miredo-server.8", "miredo-server.conf.5", "miredo.conf.5"}
	if got := Names(); !slices.Equal(got, want) {
		t.Errorf("pages %v, want %v", got, want)
	}
	for _, name := range Names() {
		t.Run(name, func(t *testing.T) {
			src, err := Source(name)
			if err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			cmd := exec.Command("groff", "-ww", "-z", "-man", "-Tutf8")
			cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(src), &stdout, &stderr
			if err := cmd.Run(); err != nil || stderr.Len() > 0 {
				t.Errorf("groff: %v\n%s", err, stderr.Bytes())
			}
		})
	}
}

// TestWhatis has lexgrog, which mandb and lintian use, read each page's
// NAME line: a page it cannot parse is missing from apropos(1).
func TestWhatis(t *testing.T) {
	if _, err := exec.LookPath("lexgrog"); err != nil {
		t.Skip("lexgrog not installed (apt-get install man-db)")
	}
	for _, name := range Names() {
		out, err := exec.Command("lexgrog", name).CombinedOutput()
		if err != nil || !bytes.Contains(out, []byte(`"`+strings.SplitN(name, ".", 2)[0])) {
			t.Errorf("lexgrog %s: %v: %s", name, err, out)
		}
	}
}

func TestParse(t *testing.T) {
	src := []byte(`.TH X 8
.SH OPTIONS
.TP
\fB\-c\fR, \fB\-\-config\fR \fIfile\fR
The file
.RB ( Config ).
Default: /etc/x\-y.conf.
.TP
.I server
A server.
.SH DIRECTIVES
.TP
\fBRelayType\fR \fItype\fR
What it is.
Read by: client, relay.
Default: client.
.PP
Not part of the item.
.TP
\fB\-\-late\fR
Late.
`)
	opts := Options(src)
	var names []string
	for n := range opts {
		names = append(names, n)
	}
	slices.Sort(names)
	if want := []string{"--config", "--late", "-c"}; !slices.Equal(names, want) {
		t.Errorf("options %v, want %v", names, want)
	}
	if got, want := opts["-c"].Body, "The file ( Config ). Default: /etc/x-y.conf."; got != want {
		t.Errorf("body %q, want %q", got, want)
	}
	ds := Directives(src)
	if len(ds) != 1 || ds["RelayType"].Body != "What it is. Read by: client, relay. Default: client." {
		t.Errorf("directives %v", ds)
	}
	if got := readBy(ds["RelayType"]); !slices.Equal(got, []string{"client", "relay"}) {
		t.Errorf("read by %v", got)
	}
}

// TestChecksFail: the checks must catch a page that fell behind, or they
// prove nothing.
func TestChecksFail(t *testing.T) {
	app := &cli.App{Name: "miredo-client", Flags: []cli.Flag{
		&cli.StringFlag{Name: "server"},
		&cli.StringFlag{Name: "not-documented"},
		&cli.StringFlag{Name: "interface", Value: "tun7"}, // the page says teredo
		&cli.BoolFlag{Name: "internal", Hidden: true},
	}}
	rec := &recorder{TB: t}
	CheckOptions(rec, app, "miredo-client.8")
	for _, want := range []string{"accepts --not-documented", "--interface: the default is tun7", "defines --config, which"} {
		if !rec.said(want) {
			t.Errorf("CheckOptions did not say %q; it said %q", want, rec.msgs)
		}
	}
	if rec.said("internal") {
		t.Errorf("a hidden flag was checked: %q", rec.msgs)
	}

	rec = &recorder{TB: t}
	CheckDirectives(rec, "server", conf.SchemaOf(conf.ServerBindAddress, conf.BindPort), "miredo-server.conf.5")
	for _, want := range []string{"reads BindPort, which the page does not define", "Prefix says the server reads it"} {
		if !rec.said(want) {
			t.Errorf("CheckDirectives did not say %q; it said %q", want, rec.msgs)
		}
	}
}

// recorder is a testing.TB that keeps errors instead of failing.
type recorder struct {
	testing.TB
	msgs []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.msgs = append(r.msgs, strings.TrimSpace(fmt.Sprintf(format, args...)))
}
func (r *recorder) said(s string) bool {
	return slices.ContainsFunc(r.msgs, func(m string) bool { return strings.Contains(m, s) })
}
