// SPDX-License-Identifier: MIT

package main

import (
	"testing"

	"github.com/miredo-go/miredo/packaging/man"
	"github.com/miredo-go/miredo/pkg/conf"
)

// TestManPages: miredo-relay(8) defines every flag the relay accepts, with its
// default, and miredo.conf.5 every directive it reads, so the pages cannot
// fall behind the code.
func TestManPages(t *testing.T) {
	man.CheckOptions(t, appWith(run), "miredo-relay.8")
	man.CheckDirectives(t, "relay", conf.RelaySchema, "miredo.conf.5")
}
