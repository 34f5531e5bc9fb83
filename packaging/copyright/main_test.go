// SPDX-License-Identifier: MIT

package main

import (
	"os"
	"slices"
	"strings"
	"testing"
)

// TestClassifyModules names the licences of modules this project links,
// read from the module cache as the generator reads them.
func TestClassifyModules(t *testing.T) {
	want := map[string]string{
		"github.com/urfave/cli/v2@v2.27.7":          "MIT",
		"github.com/vishvananda/netlink@v1.3.1":     "Apache-2.0",
		"golang.org/x/sys@v0.50.0":                  "BSD-3-Clause",
		"github.com/russross/blackfriday/v2@v2.1.0": "BSD-2-Clause",
	}
	var mods []string
	for m := range want {
		mods = append(mods, m)
	}
	dirs, err := moduleDirs(mods)
	if err != nil {
		t.Skipf("module cache: %v", err)
	}
	for m, name := range want {
		text, err := licenseText(dirs[m])
		if err != nil {
			t.Fatal(err)
		}
		if got, err := classify(text); got != name || err != nil {
			t.Errorf("%s: %q, %v; want %s", m, got, err, name)
		}
		if len(holders(text)) == 0 {
			t.Errorf("%s: no copyright holder found", m)
		}
	}
}

func TestClassifyUnknown(t *testing.T) {
	if name, err := classify([]byte("All rights reserved. Do not copy.")); err == nil {
		t.Errorf("an unknown licence was named %q", name)
	}
}

func TestHolders(t *testing.T) {
	text := []byte("MIT License\n\nCopyright (c) 2014 A. Person\n> Copyright © 2011 B\n" +
		"      Copyright [yyyy] [name of copyright owner]\n   Copyright 2014 Docker, Inc.\ncopyright notice\n")
	if got, want := holders(text), []string{"2014 A. Person", "2011 B", "2014 Docker, Inc."}; !slices.Equal(got, want) {
		t.Errorf("holders %q, want %q", got, want)
	}
}

// TestRun writes the file for this test binary, which links only the
// standard library: this project's licence and Go's.
func TestRun(t *testing.T) {
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := run(&b, "../../LICENSE", []string{self}); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n",
		"\nFiles: *\nCopyright: The miredo-go authors\nLicense: MIT\n MIT License\n .\n Permission is hereby granted",
		"\nFiles: go/*\nCopyright: ",
		"License: BSD-3-Clause\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no %q in:\n%s", want, out)
		}
	}
	for i, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, " ") && strings.TrimSpace(line) == "" {
			t.Errorf("line %d: an empty continuation line (want \" .\")", i+1)
		}
	}
}
