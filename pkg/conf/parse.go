// SPDX-License-Identifier: MIT

package conf

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
)

// Limits.
const (
	// MaxLineLength is the longest line, in bytes without its newline, that
	// Parse reads. Miredo reads lines with fgets into a 1056-byte buffer: 1055
	// bytes, the last of which must be the newline. Longer lines are skipped
	// with a warning by both, so a file means the same to each.
	MaxLineLength = 1054
	// MaxErrors is how many errors Parse collects before it gives up.
	MaxErrors = 20
	// MaxWarnings is how many warnings Parse returns; one more says the rest
	// were dropped.
	MaxWarnings = 100
)

// Options are what Parse needs from its caller.
type Options struct {
	// LookupIPv4 resolves a host name given for BindAddress,
	// ServerBindAddress or ServerBindAddress2 to one IPv4 address, as
	// Miredo does at start. Nil refuses host names there. NetLookup builds
	// one from a net.Resolver; tests pass a map.
	LookupIPv4 func(host string) (netip.Addr, error)
	// IsGlobalUnicast checks ServerBindAddress and ServerBindAddress2.
	// Nil uses RFC 4380's list as Miredo applies it (not global: 0/8, 10/8,
	// 127/8, 169.254/16, 172.16/12, 192.168/16, 192.88.99/24, 224/4,
	// 255.255.255.255); the server passes proto.IsGlobalUnicastIPv4 so
	// the list lives in one place.
	IsGlobalUnicast func(netip.Addr) bool
}

// NetLookup returns a LookupIPv4 that asks r (net.DefaultResolver when nil)
// for the host's IPv4 addresses and takes the first, as Miredo takes the
// first getaddrinfo result. ctx bounds every lookup.
func NetLookup(ctx context.Context, r *net.Resolver) func(string) (netip.Addr, error) {
	if r == nil {
		r = net.DefaultResolver
	}
	return func(host string) (netip.Addr, error) {
		addrs, err := r.LookupNetIP(ctx, "ip4", host)
		if err != nil {
			return netip.Addr{}, err
		}
		if len(addrs) == 0 {
			return netip.Addr{}, fmt.Errorf("no IPv4 address for %s", host)
		}
		return addrs[0].Unmap(), nil // LookupNetIP returns IPv4 as ::ffff:a.b.c.d
	}
}

// ParseFile opens and parses the file at path; see Parse.
func ParseFile(path string, schema Schema, opts Options) (*File, []Warning, error) {
	fd, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer fd.Close()
	return Parse(fd, path, schema, opts)
}

// Parse reads a configuration file from r; filename names it in messages.
// Directives outside schema draw a warning and are not parsed, as in Miredo.
//
// On success it returns the File and the warnings. On failure it returns a
// nil File, the warnings so far, and [Errors] listing every fault (up to
// [MaxErrors], then one more saying so), each an [*Error] carrying its line.
// A read error from r is returned as an [*Error] at the line being read.
func Parse(r io.Reader, filename string, schema Schema, opts Options) (*File, []Warning, error) {
	p := &parser{
		f:      newFile(filename),
		schema: schema,
		opts:   opts,
		lines:  lineReader{br: bufio.NewReader(r)},
	}
	if p.opts.IsGlobalUnicast == nil {
		p.opts.IsGlobalUnicast = isGlobalUnicastIPv4
	}
	for !p.full {
		line, long, err := p.lines.next()
		if err == io.EOF {
			break
		}
		if err != nil {
			p.fail(&Error{File: filename, Line: p.lines.n, Err: fmt.Errorf("read: %w", err)})
			break
		}
		if long {
			p.warn(0, "skipped overly long line (over "+strconv.Itoa(MaxLineLength)+" bytes)")
			continue
		}
		if p.lines.n == 1 && len(line) >= len(utf8BOM) && string(line[:len(utf8BOM)]) == utf8BOM {
			p.warn(0, "ignoring the UTF-8 byte order mark")
			line = line[len(utf8BOM):]
		}
		p.line(line)
	}
	if len(p.errs) > 0 {
		return nil, p.warns, p.errs
	}
	return p.f, p.warns, nil
}

// utf8BOM starts files some Windows editors save. Miredo would read it as
// part of the first directive's name and ignore that line as unknown.
const utf8BOM = "\ufeff"

type parser struct {
	f       *File
	schema  Schema
	opts    Options
	lines   lineReader
	warns   []Warning
	dropped bool // warnings beyond MaxWarnings were dropped
	errs    Errors
	full    bool // MaxErrors reached: stop reading
}

// fail records e, or, past MaxErrors, that there were too many.
func (p *parser) fail(e *Error) {
	if len(p.errs) >= MaxErrors {
		p.errs = append(p.errs, &Error{File: e.File, Line: e.Line, Err: ErrTooManyErrors})
		p.full = true
		return
	}
	p.errs = append(p.errs, e)
}

// line handles one line, as Miredo's sscanf(" %31s %1023s") splits it.
func (p *parser) line(line []byte) {
	if bytes.IndexByte(line, 0) >= 0 {
		p.warn(0, "skipped line holding a NUL byte")
		return
	}
	nameTok, rest := token(line)
	if len(nameTok) == 0 || nameTok[0] == '#' {
		return // blank or comment
	}
	name := string(nameTok)
	valueTok, rest := token(rest)
	if len(valueTok) == 0 || valueTok[0] == '#' {
		p.warn(0, "ignoring line: "+quote(name)+" has no value")
		return
	}
	value := string(valueTok)
	d, ok := ParseDirective(name)
	if !ok {
		p.fail(&Error{File: p.f.Name, Line: p.lines.n, Err: fmt.Errorf("%w %s", ErrUnknownDirective, quote(name))})
		return
	}
	if !p.schema.Has(d) {
		p.warn(d, "superfluous directive "+d.String()+": not used by this program")
		return
	}
	if first := p.f.set[d].line; first != 0 {
		p.warn(d, "superfluous directive "+d.String()+": already set at line "+strconv.Itoa(first)+"; the first value is used")
		return
	}
	if extra, _ := token(rest); len(extra) > 0 && extra[0] != '#' {
		p.warn(d, d.String()+": ignoring text after the value: "+quote(string(bytes.Trim(rest, cSpace))))
	}
	text, warn, err := p.value(d, value)
	if err != nil {
		p.fail(&Error{File: p.f.Name, Line: p.lines.n, Directive: d, Value: value, Err: err})
		return
	}
	if warn != "" {
		p.warn(d, d.String()+" "+quote(value)+": "+warn)
	}
	p.f.set[d] = setting{line: p.lines.n, raw: value, text: text}
}

// value parses v for d into p.f and returns its canonical text.
func (p *parser) value(d Directive, v string) (text, warn string, err error) {
	f := p.f
	switch d {
	case RelayType:
		m, ok := ParseMode(v)
		if !ok {
			return "", "", errors.New("want client, autoclient, cone, relay or restricted")
		}
		f.RelayType = m
		return m.String(), "", nil
	case ServerAddress, ServerAddress2:
		text, warn, err = parseServerName(v)
		if err != nil {
			return "", "", err
		}
		if d == ServerAddress {
			f.ServerAddress = text
		} else {
			f.ServerAddress2 = text
		}
		return text, warn, nil
	case Prefix:
		pfx, warn, err := parsePrefix(v)
		if err != nil {
			return "", "", err
		}
		f.Prefix = pfx
		return pfx.Addr().String(), warn, nil
	case InterfaceMTU:
		n, err := parseUint(v, DefaultMTU, 65535)
		if err != nil {
			return "", "", err
		}
		f.InterfaceMTU = uint16(n)
		return strconv.FormatUint(n, 10), "", nil
	case BindPort:
		n, err := parseUint(v, 0, 65535)
		if err != nil {
			return "", "", err
		}
		f.BindPort = uint16(n)
		return strconv.FormatUint(n, 10), "", nil
	case InterfaceName:
		if err := CheckInterfaceName(v); err != nil {
			return "", "", err
		}
		f.InterfaceName = v
		return v, "", nil
	case SyslogFacility:
		fac, ok := ParseFacility(v)
		if !ok {
			return "", "", errors.New("want auth, authpriv, cron, daemon, ftp, kern, local0 to local7, lpr, mail, news, syslog, user or uucp")
		}
		f.SyslogFacility = fac
		return fac.String(), "", nil
	case BindAddress:
		a, text, warn, err := parseIPv4(v, p.opts.LookupIPv4)
		if err != nil {
			return "", "", err
		}
		f.BindAddress = a
		return text, warn, nil
	case LogLevel:
		switch l := lowerString(v); l {
		case "debug", "info", "warn", "error":
			f.LogLevel = l
			return l, "", nil
		}
		return "", "", errors.New("want debug, info, warn or error")
	case RateLimit:
		n, err := parseUint(v, 0, 1<<31)
		if err != nil {
			return "", "", err
		}
		f.RateLimit = uint32(n)
		return strconv.FormatUint(n, 10), "", nil
	case ServerBindAddress, ServerBindAddress2:
		a, text, warn, err := parseIPv4(v, p.opts.LookupIPv4)
		if err != nil {
			return "", "", err
		}
		if !p.opts.IsGlobalUnicast(a) {
			if text != a.String() {
				return "", "", fmt.Errorf("%w (resolved to %v)", ErrNotGlobal, a)
			}
			return "", "", ErrNotGlobal
		}
		if d == ServerBindAddress {
			f.ServerBindAddress = a
		} else {
			f.ServerBindAddress2 = a
		}
		return text, warn, nil
	}
	return "", "", fmt.Errorf("no parser for %v", d) // unreachable: every directive has a case
}

func (p *parser) warn(d Directive, msg string) {
	if len(p.warns) >= MaxWarnings {
		if !p.dropped {
			p.dropped = true
			p.warns = append(p.warns, Warning{File: p.f.Name, Line: p.lines.n, Msg: "too many warnings; the rest are not shown"})
		}
		return
	}
	p.warns = append(p.warns, Warning{File: p.f.Name, Line: p.lines.n, Directive: d, Msg: msg})
}

// cSpace is C's isspace set in the C locale, which scanf's %s stops at.
const cSpace = " \t\n\v\f\r"

func isSpace(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\v', '\f', '\r':
		return true
	}
	return false
}

// token returns the first whitespace-separated token of s and what follows
// it.
func token(s []byte) (tok, rest []byte) {
	i := 0
	for i < len(s) && isSpace(s[i]) {
		i++
	}
	j := i
	for j < len(s) && !isSpace(s[j]) {
		j++
	}
	return s[i:j], s[j:]
}

// lineReader reads lines, counting them, without holding more than
// MaxLineLength bytes of an overly long one.
type lineReader struct {
	br  *bufio.Reader
	n   int // lines read so far; the current line's number after next
	buf []byte
}

// next returns the next line without its newline, or long if it exceeds
// MaxLineLength (its bytes are dropped). It returns io.EOF after the last
// line; a last line without a newline is still a line.
func (lr *lineReader) next() (line []byte, long bool, err error) {
	lr.buf = lr.buf[:0]
	got := false // whether this line has any byte, newline included
	for {
		chunk, err := lr.br.ReadSlice('\n')
		got = got || len(chunk) > 0
		if !long {
			if len(lr.buf)+len(chunk) > MaxLineLength+1 {
				long, lr.buf = true, lr.buf[:0]
			} else {
				lr.buf = append(lr.buf, chunk...)
			}
		}
		switch {
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case err == nil || (err == io.EOF && got):
			lr.n++
			line = bytes.TrimSuffix(lr.buf, []byte{'\n'})
			if long || len(line) > MaxLineLength {
				return nil, true, nil
			}
			return line, false, nil
		case err == io.EOF:
			return nil, false, io.EOF
		default:
			lr.n++
			return nil, false, err
		}
	}
}

// lowerString folds ASCII upper case, as directive names are folded.
func lowerString(s string) string {
	b := []byte(s)
	for i, c := range b {
		b[i] = lowerASCII(c)
	}
	return string(b)
}
