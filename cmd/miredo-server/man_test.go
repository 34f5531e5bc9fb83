// SPDX-License-Identifier: MIT

package main

import (
	"testing"

	"github.com/miredo-go/miredo/packaging/man"
	"github.com/miredo-go/miredo/pkg/conf"
)

// TestManPages: miredo-server(8) defines every flag the server accepts, with its
// default, and miredo-server.conf.5 every directive it reads, so the pages cannot
// fall behind the code.
func TestManPages(t *testing.T) {
	man.CheckOptions(t, appWith(run), "miredo-server.8")
	man.CheckDirectives(t, "server", conf.ServerSchema, "miredo-server.conf.5")
}
