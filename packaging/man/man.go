// SPDX-License-Identifier: MIT

// Package man holds the manual pages (the roff sources beside this file,
// installed by `make install` and the packages) and reads them back for
// the tests that keep them in step with the code: every flag a binary
// accepts must be an item of its page (CheckOptions, called from each
// cmd/miredo-* package's tests), and every directive a role reads an item
// of its configuration page (CheckDirectives).
//
// The pages follow two conventions for that: an option is a .TP item whose
// tag names it in bold (\fB\-c\fR, \fB\-\-config\fR), and a directive is a
// .TP item of the DIRECTIVES section whose tag starts with its bold name.
// An item with a default says "Default:" in its paragraph; a directive's
// paragraph also says "Read by:" with the roles that use it.
package man

import (
	"embed"
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/urfave/cli/v2"

	"github.com/miredo-go/miredo/pkg/conf"
)

//go:embed *.5 *.8
var sources embed.FS

// Names lists the pages, as file names ("miredo.conf.5").
func Names() []string {
	names, _ := fs.Glob(sources, "*.[58]") // the pattern is valid
	return names
}

// Source returns a page's roff source.
func Source(name string) ([]byte, error) { return sources.ReadFile(name) }

// Item is one .TP item of a page: its tag line as written, and its
// paragraph as plain text.
type Item struct {
	Section string
	Tag     string
	Body    string
}

// Items lists a page's .TP items in order. A tag is the line after .TP; the
// paragraph runs to the next item or paragraph macro.
func Items(src []byte) []Item {
	var (
		items   []Item
		section string
		cur     *Item
		body    []string
	)
	flush := func() {
		if cur != nil {
			cur.Body = Plain(strings.Join(body, " "))
			items = append(items, *cur)
		}
		cur, body = nil, nil
	}
	lines := strings.Split(string(src), "\n")
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		macro, args, _ := strings.Cut(line, " ")
		switch macro {
		case ".SH", ".SS":
			flush()
			if macro == ".SH" {
				section = strings.Trim(args, `"`)
			}
		case ".TP":
			flush()
			if i+1 < len(lines) {
				i++
				cur = &Item{Section: section, Tag: lines[i]}
			}
		case ".PP", ".P", ".LP", ".IP", ".RS", ".RE":
			flush()
		default:
			if cur != nil && !strings.HasPrefix(line, `.\"`) {
				body = append(body, line)
			}
		}
	}
	flush()
	return items
}

// bold matches a bold word in a tag: \fB...\fR (or \fP).
var bold = regexp.MustCompile(`\\fB(.*?)\\f[RP]`)

// Options maps each option a page defines ("--config", "-c") to its item.
func Options(src []byte) map[string]Item {
	opts := map[string]Item{}
	for _, it := range Items(src) {
		for _, m := range bold.FindAllStringSubmatch(it.Tag, -1) {
			if name := Plain(m[1]); strings.HasPrefix(name, "-") {
				opts[name] = it
			}
		}
	}
	return opts
}

// Directives maps each directive of a page's DIRECTIVES section to its item.
func Directives(src []byte) map[string]Item {
	ds := map[string]Item{}
	for _, it := range Items(src) {
		if it.Section != "DIRECTIVES" {
			continue
		}
		m := bold.FindStringSubmatch(it.Tag)
		if m == nil || !strings.HasPrefix(it.Tag, m[0]) {
			continue
		}
		if name := Plain(m[1]); !strings.HasPrefix(name, "-") {
			ds[name] = it
		}
	}
	return ds
}

// plainEscapes are the roff escapes the pages use, as plain text.
var plainEscapes = strings.NewReplacer(
	`\fB`, "", `\fI`, "", `\fR`, "", `\fP`, "",
	`\-`, "-", `\&`, "", `\~`, " ", `\(dq`, `"`, `\(bu`, "*", `\(em`, "--", `\e`, `\`,
)

// roffMacro matches a font macro at the start of a line (.B, .BR, .RI ...).
var roffMacro = regexp.MustCompile(`(^|\s)\.(B|I|BR|RB|BI|IB|IR|RI)\s`)

// Plain turns roff text into roughly what a reader sees: escapes resolved,
// font macros and the quotes around their arguments removed, white space
// collapsed. It is for comparing text, not for display.
func Plain(s string) string {
	s = roffMacro.ReplaceAllString(s, " ")
	s = plainEscapes.Replace(s)
	s = strings.ReplaceAll(s, `"`, "")
	return strings.Join(strings.Fields(s), " ")
}

// Flag is one option a command line accepts.
type Flag struct {
	Names   []string // "--config", "-c"
	Default string   // the default value as the page must show it, or ""
}

// Flags lists every visible flag of app and of its commands (hidden flags
// are internal, as the client's helper mode), with the help flag that
// urfave/cli adds.
func Flags(app *cli.App) []Flag {
	app.Setup() // adds the help flag, as Run would
	var out []Flag
	add := func(fl []cli.Flag) {
		for _, f := range fl {
			if v, ok := f.(cli.VisibleFlag); ok && !v.IsVisible() {
				continue
			}
			var names []string
			for _, n := range f.Names() {
				if len(n) == 1 {
					names = append(names, "-"+n)
				} else {
					names = append(names, "--"+n)
				}
			}
			out = append(out, Flag{Names: names, Default: defaultOf(f)})
		}
	}
	add(app.Flags)
	var walk func([]*cli.Command)
	walk = func(cmds []*cli.Command) {
		for _, c := range cmds {
			add(c.Flags)
			walk(c.Subcommands)
		}
	}
	walk(app.Commands)
	return out
}

// defaultOf is a flag's default value as text, or "" for none (false,
// zero, empty).
func defaultOf(f cli.Flag) string {
	d, ok := f.(cli.DocGenerationFlag)
	if !ok || !d.TakesValue() {
		return ""
	}
	switch v := d.GetValue(); v {
	case "", "0", "0s":
		return ""
	default:
		return v
	}
}

// CheckOptions fails t unless the page defines exactly the flags app
// accepts, each with its default when it has one.
func CheckOptions(t testing.TB, app *cli.App, page string) {
	t.Helper()
	src, err := Source(page)
	if err != nil {
		t.Fatal(err)
	}
	defined := Options(src)
	accepted := map[string]bool{}
	for _, f := range Flags(app) {
		for _, n := range f.Names {
			accepted[n] = true
			it, ok := defined[n]
			if !ok {
				t.Errorf("%s: %s accepts %s, which the page does not define", page, app.Name, n)
				continue
			}
			if f.Default != "" && !strings.Contains(it.Body, "Default: "+f.Default) {
				t.Errorf("%s: %s: the default is %s; the page says: %s", page, n, f.Default, it.Body)
			}
		}
	}
	for n := range defined {
		if !accepted[n] {
			t.Errorf("%s: the page defines %s, which %s does not accept", page, n, app.Name)
		}
	}
}

// CheckDirectives fails t unless the DIRECTIVES section of page defines
// every directive Miredo knows that schema holds, each saying it is read by
// role and giving its default, and no directive says it is read by role
// that schema does not hold.
func CheckDirectives(t testing.TB, role string, schema conf.Schema, page string) {
	t.Helper()
	src, err := Source(page)
	if err != nil {
		t.Fatal(err)
	}
	defined := Directives(src)
	for _, d := range schema.Directives() {
		it, ok := defined[d.String()]
		if !ok {
			t.Errorf("%s: the %s reads %s, which the page does not define", page, role, d)
			continue
		}
		if !slices.Contains(readBy(it), role) {
			t.Errorf("%s: %s: the %s reads it; the page says: %s", page, d, role, it.Body)
		}
		if !strings.Contains(it.Body, "Default: ") {
			t.Errorf("%s: %s: no default given: %s", page, d, it.Body)
		}
	}
	for name, it := range defined {
		d, ok := conf.ParseDirective(name)
		if !ok || d.String() != name {
			t.Errorf("%s: %s is not a directive (spelled as pkg/conf does)", page, name)
			continue
		}
		if slices.Contains(readBy(it), role) && !schema.Has(d) {
			t.Errorf("%s: %s says the %s reads it, which it does not", page, name, role)
		}
	}
}

// readBy lists the roles a directive's paragraph names after "Read by:".
var readByRE = regexp.MustCompile(`Read by: ([a-z, ]+)\.`)

func readBy(it Item) []string {
	m := readByRE.FindStringSubmatch(it.Body)
	if m == nil {
		return nil
	}
	var roles []string
	for _, r := range strings.Split(m[1], ",") {
		roles = append(roles, strings.TrimSpace(r))
	}
	return roles
}

// String describes an item for messages.
func (it Item) String() string { return fmt.Sprintf("%s: %s", it.Section, Plain(it.Tag)) }
