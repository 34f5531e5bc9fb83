// SPDX-License-Identifier: MIT

package lab

import (
	"strings"
	"testing"
)

// A SOAP request as goupnp and miniupnpc send it: the action element in the
// body, one child per argument.
const addPortMappingSOAP = `<?xml version="1.0"?>
<s:Envelope xmlns:s="http://schemas.xmlsoap.org/soap/envelope/" s:encodingStyle="http://schemas.xmlsoap.org/soap/encoding/">
<s:Body><u:AddPortMapping xmlns:u="urn:schemas-upnp-org:service:WANIPConnection:1">
<NewRemoteHost></NewRemoteHost><NewExternalPort>40000</NewExternalPort><NewProtocol>UDP</NewProtocol>
<NewInternalPort>40000</NewInternalPort><NewInternalClient>10.0.0.2</NewInternalClient><NewEnabled>1</NewEnabled>
<NewPortMappingDescription>TEREDO &amp; co</NewPortMappingDescription><NewLeaseDuration>0</NewLeaseDuration>
</u:AddPortMapping></s:Body></s:Envelope>`

func TestReadSOAPArgs(t *testing.T) {
	args, err := readSOAPArgs(strings.NewReader(addPortMappingSOAP), "AddPortMapping")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"NewRemoteHost": "", "NewExternalPort": "40000", "NewProtocol": "UDP", "NewInternalPort": "40000",
		"NewInternalClient": "10.0.0.2", "NewEnabled": "1", "NewPortMappingDescription": "TEREDO & co", "NewLeaseDuration": "0"}
	if len(args) != len(want) {
		t.Errorf("got %v", args)
	}
	for k, v := range want {
		if args[k] != v {
			t.Errorf("%s = %q, want %q", k, args[k], v)
		}
	}
	for _, bad := range []string{"", "<s:Envelope>", addPortMappingSOAP[:200]} {
		if _, err := readSOAPArgs(strings.NewReader(bad), "AddPortMapping"); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
	if _, err := readSOAPArgs(strings.NewReader(addPortMappingSOAP), "DeletePortMapping"); err == nil {
		t.Error("found an action the body does not hold")
	}
}

func TestMappingKey(t *testing.T) {
	cases := []struct {
		in   map[string]string
		port uint16
		code int
	}{
		{map[string]string{"NewExternalPort": "3544", "NewProtocol": "UDP"}, 3544, 0},
		{map[string]string{"NewExternalPort": "3544", "NewProtocol": "udp"}, 3544, 0},
		{map[string]string{"NewRemoteHost": "192.0.2.40", "NewExternalPort": "3544", "NewProtocol": "UDP"}, 0, upnpRemoteWildcard},
		{map[string]string{"NewExternalPort": "0", "NewProtocol": "UDP"}, 0, upnpWildcardExt},
		{map[string]string{"NewExternalPort": "65536", "NewProtocol": "UDP"}, 0, upnpInvalidArgs},
		{map[string]string{"NewExternalPort": "3544", "NewProtocol": "TCP"}, 0, upnpInvalidArgs},
	}
	for _, tc := range cases {
		port, err := mappingKey(tc.in)
		code := 0
		if ue, ok := err.(*upnpError); ok {
			code = ue.code
		}
		if port != tc.port || code != tc.code {
			t.Errorf("mappingKey(%v) = %d, %v; want %d, code %d", tc.in, port, err, tc.port, tc.code)
		}
	}
}

// Searches are answered for every type the gateway has, and for the first
// version of the version-2 types, in the version asked for (UDA 1.1 §1.3.2).
func TestSearchTargets(t *testing.T) {
	g := &Gateway{uuid: "4c616267-6174-6577-0000-000000000000"}
	for _, tc := range []struct {
		st   string
		want []string
	}{
		{"urn:schemas-upnp-org:device:InternetGatewayDevice:1", []string{"urn:schemas-upnp-org:device:InternetGatewayDevice:1"}},
		{urnIGD2, []string{urnIGD2}},
		{urnIPConn1, []string{urnIPConn1}},
		{urnIPConn2, []string{urnIPConn2}},
		{"urn:schemas-upnp-org:device:WANConnectionDevice:1", []string{"urn:schemas-upnp-org:device:WANConnectionDevice:1"}},
		{"upnp:rootdevice", []string{"upnp:rootdevice"}},
		{"uuid:" + g.udn(2), []string{"uuid:" + g.udn(2)}},
		{"urn:schemas-upnp-org:service:WANPPPConnection:1", nil},
		{"urn:schemas-upnp-org:device:InternetGatewayDevice:3", nil},
	} {
		var got []string
		for _, a := range g.searchTargets(tc.st) {
			got = append(got, a.target)
		}
		if strings.Join(got, " ") != strings.Join(tc.want, " ") {
			t.Errorf("search %s answered with %v, want %v", tc.st, got, tc.want)
		}
	}
	if n := len(g.searchTargets("ssdp:all")); n != 10 {
		t.Errorf("ssdp:all answered %d times, want 10", n)
	}
}

// FuzzReadSOAPArgs: a SOAP body from the LAN never panics the gateway, and
// what it reads it reads again.
func FuzzReadSOAPArgs(f *testing.F) {
	f.Add([]byte(addPortMappingSOAP))
	f.Add([]byte(`<a><AddPortMapping><x>1</x><y/></AddPortMapping></a>`))
	f.Add([]byte(`<AddPortMapping><x><z>1</z></x></AddPortMapping>`))
	f.Fuzz(func(t *testing.T, b []byte) {
		args, err := readSOAPArgs(strings.NewReader(string(b)), "AddPortMapping")
		if err != nil {
			return
		}
		again, err := readSOAPArgs(strings.NewReader(string(b)), "AddPortMapping")
		if err != nil || len(again) != len(args) {
			t.Fatalf("second read differs: %v, %v", again, err)
		}
	})
}
