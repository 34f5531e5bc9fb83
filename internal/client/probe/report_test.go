// SPDX-License-Identifier: MIT

package probe

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// TestReport: the text says per server whether it works, each exchange,
// the address and the NAT with its evidence; the JSON reads back into the
// same report, durations in milliseconds.
func TestReport(t *testing.T) {
	ap := netip.MustParseAddrPort
	primary := Exchange{Kind: KindPrimary, To: ap("192.0.2.10:3544"), Sent: 1, Answered: true, From: ap("192.0.2.10:3544"),
		Mapping: ap("198.51.100.2:40000"), RTT: Millis(1500 * time.Microsecond), Waited: Millis(1600 * time.Microsecond)}
	cone := Exchange{Kind: KindCone, To: ap("192.0.2.10:3544"), Sent: 2, Waited: Millis(500 * time.Millisecond)}
	second := primary
	second.Kind, second.To, second.From = KindSecondary, ap("192.0.2.11:3544"), ap("192.0.2.11:3544")
	works := Result{Server: "teredo.example.net", Primary: netip.MustParseAddr("192.0.2.10"), Secondary: netip.MustParseAddr("192.0.2.11"),
		Local: ap("10.0.0.2:40000"), Works: true, Mapping: primary.Mapping, Address: netip.MustParseAddr("2001:0:c000:20a:0:63bf:39cc:9bfd"),
		Prefix: netip.MustParseAddr("2001::"), MTU: 1280, Exchanges: []Exchange{primary, cone, second},
		NAT: Classify(ap("10.0.0.2:40000"), primary, cone, second)}
	silent := Result{Server: "192.0.2.40", Primary: netip.MustParseAddr("192.0.2.40"), Secondary: netip.MustParseAddr("192.0.2.41"),
		Error: "no valid answer", Exchanges: []Exchange{{Kind: KindPrimary, To: ap("192.0.2.40:3544"), Sent: 3, Waited: Millis(time.Second)}}}
	r := NewReport([]Result{works, silent})
	if r.Working != 1 {
		t.Fatalf("working %d", r.Working)
	}
	var text bytes.Buffer
	if err := r.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"teredo.example.net: works (primary 192.0.2.10, secondary 192.0.2.11, from 10.0.0.2:40000)",
		"answered from 192.0.2.10:3544 in 1.5ms (1 sent), mapped 198.51.100.2:40000",
		"no answer in 500ms (2 sent)",
		"Teredo address 2001:0:c000:20a:0:63bf:39cc:9bfd",
		"NAT: restricted, port-preserving",
		"cannot tell address-restricted from port-restricted",
		"192.0.2.40: does not work: no valid answer",
		"1 of 2 servers work",
	} {
		if !strings.Contains(text.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, text.String())
		}
	}
	var js bytes.Buffer
	if err := r.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"rtt_ms": 1.500`, `"teredo_address": "2001:0:c000:20a:0:63bf:39cc:9bfd"`, `"type": "restricted"`, `"working": 1`} {
		if !strings.Contains(js.String(), want) {
			t.Errorf("JSON lacks %s:\n%s", want, js.String())
		}
	}
	if strings.Contains(js.String(), `"mapped": ""`) {
		t.Errorf("empty fields in the JSON:\n%s", js.String())
	}
	var back Report
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if back.Servers[0].Exchanges[0].RTT != primary.RTT || back.Servers[0].NAT.Type != NATRestricted || back.Servers[1].Works {
		t.Errorf("read back: %+v", back)
	}
}
