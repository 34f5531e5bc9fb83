// SPDX-License-Identifier: MIT

package daemon

import (
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/miredo-go/miredo/pkg/conf"
	"github.com/miredo-go/miredo/pkg/proto"
)

// Merge applies the rule all three daemons follow when they combine the
// command line with Miredo's configuration file: a flag given on the
// command line wins over the file, and the file wins over the flag's
// default. Each directive the command line replaced is remembered, so the
// daemon names it in a warning instead of silently running with a value the
// file does not show.
type Merge struct {
	file *conf.File
	c    *cli.Context
	// Overridden lists the directives the command line replaced, in the
	// order the daemon merged them.
	Overridden []Override
}

// Override is a directive of the configuration file that a command-line
// flag replaced.
type Override struct {
	File      string
	Line      int
	Directive conf.Directive
	Value     string // the file's value, as written
	Flag      string // "--cone", or "a server argument"
	FlagValue string // "" for a boolean flag
}

// String reads "file:line: RelayType client ignored: --cone given".
func (o Override) String() string {
	given := o.Flag
	if o.FlagValue != "" {
		given += " " + o.FlagValue
	}
	return fmt.Sprintf("%s:%d: %s %s ignored: %s given", o.File, o.Line, o.Directive, o.Value, given)
}

// NewMerge merges c's flags over f.
func NewMerge(c *cli.Context, f *conf.File) *Merge { return &Merge{file: f, c: c} }

// Given reports whether the command line gives flag, in which case its value
// replaces directive d (0 when the flag has no directive). canonical is the
// flag's value in the form conf.File.Text uses for d; the file's value is
// recorded as overridden when the file set d to something else.
func (m *Merge) Given(flag string, d conf.Directive, canonical string) bool {
	if !m.c.IsSet(flag) {
		return false
	}
	value := canonical
	if _, isBool := flagOf(m.c, flag).(*cli.BoolFlag); isBool {
		value = ""
	}
	m.Replaced(d, "--"+flag, value, canonical)
	return true
}

// Bind merges --bind-address and --bind-port, the flags of the roles with
// one UDP socket (client and relay), over BindAddress and BindPort into
// addr and port; a bad value is added to bad.
func (m *Merge) Bind(addr *netip.Addr, port *uint16, bad *Problems) {
	if a := m.c.String("bind-address"); a != "" {
		v, err := netip.ParseAddr(a)
		if err != nil {
			bad.Add(fmt.Errorf("--bind-address %q: %w", a, err))
		} else {
			*addr = v
			m.Given("bind-address", conf.BindAddress, v.String())
		}
	}
	if m.c.IsSet("bind-port") {
		if p := m.c.Uint("bind-port"); p > 65535 {
			bad.Add(fmt.Errorf("--bind-port %d: out of range", p))
		} else {
			*port = uint16(p)
			m.Given("bind-port", conf.BindPort, strconv.Itoa(int(p)))
		}
	}
}

// Replaced records that what (a flag or an argument, with value) replaced d,
// when the file set d to something other than canonical.
func (m *Merge) Replaced(d conf.Directive, what, value, canonical string) {
	if d == 0 || !m.file.IsSet(d) || m.file.Text(d) == canonical {
		return
	}
	m.Overridden = append(m.Overridden, Override{File: m.file.Name, Line: m.file.Line(d), Directive: d,
		Value: m.file.Raw(d), Flag: what, FlagValue: value})
}

// Strings is Overridden as "file:line: ... ignored: ... given" lines.
func (m *Merge) Strings() []string {
	var s []string
	for _, o := range m.Overridden {
		s = append(s, o.String())
	}
	return s
}

// Loaded is a daemon's configuration file, what parsing it warned of, and
// the merge of the command line over it.
type Loaded struct {
	File     *conf.File
	Warnings []conf.Warning
	*Merge
}

// Load reads the configuration file the --config flag names (its default
// path when present) with a role's schema, ready for the command line to be
// merged over it.
// Under --check-config host names are not looked up.
func Load(c *cli.Context, schema conf.Schema) (Loaded, error) {
	lookup := conf.NetLookup(c.Context, nil)
	if c.Bool(CheckConfigFlag.Name) {
		lookup = placeholderLookup()
	}
	f, warns, err := LoadConfig(c.String("config"), c.IsSet("config"), schema,
		conf.Options{LookupIPv4: lookup, IsGlobalUnicast: proto.IsGlobalUnicastIPv4})
	if err != nil {
		return Loaded{}, err
	}
	return Loaded{File: f, Warnings: warns, Merge: NewMerge(c, f)}, nil
}

// LogLevel is the level to log at: --log-level when given, else the file's
// LogLevel, else info.
func (l Loaded) LogLevel(c *cli.Context) (slog.Level, error) {
	s := c.String(LogLevelFlag.Name)
	if !l.Given(LogLevelFlag.Name, conf.LogLevel, strings.ToLower(s)) && l.File.IsSet(conf.LogLevel) {
		s = l.File.LogLevel
	}
	return ParseLogLevel(s)
}

// OpenLog builds the daemon's logger (stderr, and syslog when --syslog or
// the file's SyslogFacility asks) and logs, one warning each, what the file
// was warned of and the directives the command line replaced. The function
// returned closes what it opened.
func (l Loaded) OpenLog(c *cli.Context, level slog.Leveler) (*slog.Logger, func(), error) {
	log, closeLog, err := NewDaemonLogger(LogOptions{
		Program: c.App.Name, Level: level, Stderr: c.App.ErrWriter,
		Syslog: c.Bool("syslog") || l.File.IsSet(conf.SyslogFacility), Facility: l.File.SyslogFacility,
	})
	if err != nil {
		return nil, nil, err
	}
	LogWarnings(log, l.Warnings)
	for _, o := range l.Overridden {
		log.Warn("configuration directive overridden by the command line", "override", o.String())
	}
	return log, closeLog, nil
}

// flagOf finds the app's flag called name.
func flagOf(c *cli.Context, name string) cli.Flag {
	for _, f := range c.App.Flags {
		for _, n := range f.Names() {
			if n == name {
				return f
			}
		}
	}
	return nil
}
