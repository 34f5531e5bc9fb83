// SPDX-License-Identifier: MIT

package conf_test

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"

	"github.com/miredo-go/miredo/pkg/conf"
)

// A server reads miredo-server.conf, lets a flag override the file, then
// derives what Miredo derives and reports it against the file's line.
func Example() {
	const file = `#! /usr/sbin/miredo-server -f -c
ServerBindAddress 192.0.2.221
InterfaceMTU 1400
BindPort 3545
`
	f, warns, err := conf.Parse(strings.NewReader(file), "/etc/miredo/miredo-server.conf", conf.ServerSchema, conf.Options{})
	for _, w := range warns {
		fmt.Println("warning:", w)
	}
	if err != nil {
		fmt.Println(err)
		return
	}

	mtuFlag := 0 // --mtu not given
	mtu := int(f.InterfaceMTU)
	if mtuFlag != 0 {
		mtu = mtuFlag
	}
	secondary := f.ServerBindAddress2
	if !f.IsSet(conf.ServerBindAddress2) {
		secondary = f.ServerBindAddress.Next() // Windows clients expect primary + 1
	}
	fmt.Println(f.ServerBindAddress, secondary, mtu, f.Prefix, f.SyslogFacility)

	if secondary == netip.MustParseAddr("192.0.2.222") {
		fmt.Println(f.ErrorAt(conf.ServerBindAddress, errors.New("example of a role-level check")))
	}
	// Output:
	// warning: /etc/miredo/miredo-server.conf:4: superfluous directive BindPort: not used by this program
	// 192.0.2.221 192.0.2.222 1400 2001::/32 daemon
	// /etc/miredo/miredo-server.conf:2: ServerBindAddress "192.0.2.221": example of a role-level check
}

// Errors name the file, the line, the directive and the reason; all of a
// file's errors come together.
func ExampleParse_errors() {
	const file = "RelayType cone\nPrefix ff02::\nInterfaceMTU 1200\nPrefx 2001::\n"
	_, _, err := conf.Parse(strings.NewReader(file), "miredo.conf", conf.RelaySchema, conf.Options{})
	fmt.Println(err)
	// Output:
	// miredo.conf:2: Prefix "ff02::": multicast (ff00::/8) cannot be a Teredo prefix
	// miredo.conf:3: InterfaceMTU "1200": out of range 1280-65535
	// miredo.conf:4: unknown directive "Prefx"
}
