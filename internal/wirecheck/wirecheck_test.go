// SPDX-License-Identifier: MIT

package wirecheck

import (
	"net/netip"
	"testing"
)

func TestProblems(t *testing.T) {
	tests := []struct {
		in   map[string]string
		want string
	}{
		{map[string]string{}, ""},
		{map[string]string{"_ws.expert.severity": "2097152,4194304"}, ""},
		{map[string]string{"_ws.expert.severity": "6291456"}, "expert severity 6291456"},
		{map[string]string{"_ws.malformed": "1"}, "malformed 1"},
	}
	for _, tc := range tests {
		if got := Problems(tc.in); got != tc.want {
			t.Errorf("Problems(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestDecodeFlagsMalformed checks the tool can fail: a truncated Teredo
// datagram must be reported.
func TestDecodeFlagsMalformed(t *testing.T) {
	src, dst := netip.MustParseAddrPort("198.51.100.2:40000"), netip.MustParseAddrPort("192.0.2.10:3544")
	// An authentication header announcing a 200-byte client id that is not there.
	res, err := Decode(t.TempDir(), []Datagram{{src, dst, []byte{0, 1, 200, 0, 1, 2, 3}}}, nil, []string{"teredo.auth.idlen"})
	if err == ErrNoTshark {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if Problems(res[0]) == "" {
		t.Errorf("tshark found nothing wrong with a truncated header: %v", res[0])
	}
}
