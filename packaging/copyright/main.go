// SPDX-License-Identifier: MIT

// Command copyright writes the Debian copyright file of a package
// (/usr/share/doc/PACKAGE/copyright, machine-readable format 1.0) from the
// binaries it ships. The binaries are statically linked Go programs, so
// besides this project's MIT licence they carry the Go standard library and
// every module they were built with: the file lists each, with its
// copyright lines and licence, read from the build information in the
// binaries and the licence files in the module cache. A module whose
// licence it does not recognise stops the build, so a new dependency's
// licence is looked at before it ships.
//
//	go run ./packaging/copyright -license LICENSE bin/miredo-client > copyright
package main

import (
	"bytes"
	"debug/buildinfo"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

func main() {
	license := flag.String("license", "LICENSE", "this project's licence file (MIT)")
	flag.Parse()
	if err := run(os.Stdout, *license, flag.Args()); err != nil {
		fmt.Fprintln(os.Stderr, "copyright:", err)
		os.Exit(1)
	}
}

func run(w io.Writer, license string, binaries []string) error {
	if len(binaries) == 0 {
		return errors.New("no binaries given")
	}
	own, err := os.ReadFile(license)
	if err != nil {
		return err
	}
	mods, goVersion, err := modules(binaries)
	if err != nil {
		return err
	}
	dirs, err := moduleDirs(mods)
	if err != nil {
		return err
	}
	goroot, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		return fmt.Errorf("go env GOROOT: %w", err)
	}
	parts := []part{{Files: "*", Text: own}}
	std, err := os.ReadFile(filepath.Join(strings.TrimSpace(string(goroot)), "LICENSE"))
	if err != nil {
		return fmt.Errorf("the Go licence: %w", err)
	}
	parts = append(parts, part{Files: "go/*", Comment: "The Go standard library and runtime (" + goVersion + "), linked into every binary.", Text: std})
	for _, m := range mods {
		text, err := licenseText(dirs[m])
		if err != nil {
			return fmt.Errorf("%s: %w", m, err)
		}
		parts = append(parts, part{Files: modPath(m) + "/*", Comment: "Go module " + m + ", linked into the binaries.", Text: text})
	}
	return write(w, parts)
}

// modules returns the modules (path@version) the binaries were built
// with, sorted, and the Go version that built them.
func modules(binaries []string) ([]string, string, error) {
	seen := map[string]bool{}
	goVersion := ""
	for _, b := range binaries {
		info, err := buildinfo.ReadFile(b)
		if err != nil {
			return nil, "", err
		}
		goVersion = info.GoVersion
		for _, d := range info.Deps {
			if d.Replace != nil {
				d = d.Replace
			}
			seen[d.Path+"@"+d.Version] = true
		}
	}
	var mods []string
	for m := range seen {
		mods = append(mods, m)
	}
	slices.Sort(mods)
	return mods, goVersion, nil
}

func modPath(m string) string { p, _, _ := strings.Cut(m, "@"); return p }

// moduleDirs finds each module in the module cache (downloading it through
// the module proxy if it is missing).
func moduleDirs(mods []string) (map[string]string, error) {
	dirs := map[string]string{}
	if len(mods) == 0 {
		return dirs, nil
	}
	out, err := exec.Command("go", append([]string{"mod", "download", "-json"}, mods...)...).Output()
	if err != nil {
		return nil, fmt.Errorf("go mod download: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(out))
	for dec.More() {
		var m struct{ Path, Version, Dir, Error string }
		if err := dec.Decode(&m); err != nil {
			return nil, err
		}
		if m.Error != "" {
			return nil, fmt.Errorf("%s@%s: %s", m.Path, m.Version, m.Error)
		}
		dirs[m.Path+"@"+m.Version] = m.Dir
	}
	return dirs, nil
}

// licenseText reads a module's licence file.
func licenseText(dir string) ([]byte, error) {
	for _, name := range []string{"LICENSE", "LICENSE.txt", "LICENSE.md", "LICENCE", "COPYING"} {
		if b, err := os.ReadFile(filepath.Join(dir, name)); err == nil {
			return b, nil
		}
	}
	return nil, fmt.Errorf("no licence file in %s", dir)
}

// part is one Files paragraph.
type part struct {
	Files, Comment string
	Text           []byte // the licence file
}

// classify names a licence text by its SPDX identifier.
func classify(text []byte) (string, error) {
	t := strings.Join(strings.Fields(strings.ReplaceAll(string(text), ">", " ")), " ")
	switch {
	case strings.Contains(t, "Apache License") && strings.Contains(t, "Version 2.0"):
		return "Apache-2.0", nil
	case strings.Contains(t, "Permission is hereby granted, free of charge"):
		return "MIT", nil
	case strings.Contains(t, "Redistribution and use in source and binary forms"):
		if strings.Contains(t, "endorse or promote products") {
			return "BSD-3-Clause", nil
		}
		return "BSD-2-Clause", nil
	case strings.Contains(t, "Permission to use, copy, modify, and/or distribute"):
		return "ISC", nil
	case strings.Contains(t, "Mozilla Public License Version 2.0"):
		return "MPL-2.0", nil
	}
	return "", errors.New("licence not recognised: read it, then teach packaging/copyright its name")
}

// copyrightLine matches a copyright notice, but not the Apache licence's
// "Copyright [yyyy] [name of copyright owner]" template.
var copyrightLine = regexp.MustCompile(`^(?:>\s*)?\s*(Copyright\s+(?:\(c\)|©|\d).*)$`)

// holders lists a licence file's copyright notices.
func holders(text []byte) []string {
	var out []string
	for _, line := range strings.Split(string(text), "\n") {
		if m := copyrightLine.FindStringSubmatch(strings.TrimRight(line, " \r")); m != nil && !strings.Contains(m[1], "[") {
			who := strings.TrimSpace(strings.TrimPrefix(m[1], "Copyright"))
			who = strings.TrimSpace(strings.TrimPrefix(strings.TrimPrefix(who, "(c)"), "©"))
			out = append(out, who)
		}
	}
	return out
}

// commonLicenses are the licences Debian ships in /usr/share/common-licenses
// under these names, which a copyright file refers to instead of quoting.
var commonLicenses = map[string]bool{"Apache-2.0": true, "MPL-2.0": true}

func write(w io.Writer, parts []part) error {
	var b strings.Builder
	b.WriteString("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n")
	b.WriteString("Upstream-Name: miredo-go\n")
	b.WriteString("Comment: The programs are statically linked Go binaries: besides miredo-go\n")
	b.WriteString(" itself they hold the Go standard library and the Go modules listed below,\n")
	b.WriteString(" each under its own licence.\n")
	for _, p := range parts {
		name, err := classify(p.Text)
		if err != nil {
			return fmt.Errorf("%s: %w", p.Files, err)
		}
		who := holders(p.Text)
		if len(who) == 0 {
			who = []string{"the authors of " + strings.TrimSuffix(p.Files, "/*")}
		}
		fmt.Fprintf(&b, "\nFiles: %s\nCopyright: %s\n", p.Files, strings.Join(who, "\n "))
		if p.Comment != "" {
			fmt.Fprintf(&b, "Comment: %s\n", p.Comment)
		}
		fmt.Fprintf(&b, "License: %s\n", name)
		if commonLicenses[name] {
			fmt.Fprintf(&b, " On Debian systems, the full text of this licence is in\n /usr/share/common-licenses/%s.\n", name)
			continue
		}
		b.WriteString(indent(licenseBody(p.Text)))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// licenseBody is a licence text without its copyright lines (they are in
// the Copyright field) and the Markdown quoting some files use.
func licenseBody(text []byte) string {
	var lines []string
	for _, line := range strings.Split(string(text), "\n") {
		line = strings.TrimRight(line, " \r")
		if copyrightLine.MatchString(line) {
			continue
		}
		line = strings.TrimPrefix(strings.TrimPrefix(line, ">"), " ")
		if line == "" && len(lines) > 0 && lines[len(lines)-1] == "" {
			continue // a copyright line went from between two blank lines
		}
		lines = append(lines, line)
	}
	return strings.Trim(strings.Join(lines, "\n"), "\n")
}

// indent makes text a continuation of a field: each line after one space,
// empty lines as " .".
func indent(text string) string {
	var b strings.Builder
	for _, line := range strings.Split(text, "\n") {
		if strings.TrimSpace(line) == "" {
			b.WriteString(" .\n")
			continue
		}
		b.WriteString(" " + line + "\n")
	}
	return b.String()
}
