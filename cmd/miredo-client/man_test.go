// SPDX-License-Identifier: MIT

package main

import (
	"testing"

	"github.com/miredo-go/miredo/packaging/man"
	"github.com/miredo-go/miredo/pkg/conf"
)

// TestManPages: miredo-client(8) defines every flag the client accepts, with its
// default, and miredo.conf.5 every directive it reads, so the pages cannot
// fall behind the code.
func TestManPages(t *testing.T) {
	man.CheckOptions(t, appWith(run), "miredo-client.8")
	man.CheckDirectives(t, "client", conf.ClientSchema, "miredo.conf.5")
}
