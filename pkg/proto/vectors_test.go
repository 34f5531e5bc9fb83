// SPDX-License-Identifier: MIT

package proto

import (
	"path/filepath"
	"testing"

	"github.com/miredo-go/miredo/internal/pcapfile"
)

// captures are real Teredo traffic (see testdata/VECTORS.txt): Miredo 1.2.6
// in a namespace lab, and a Windows client with Microsoft's server.
var captures = []string{"server.pcap", "client-wan.pcap", "relay.pcap", "windows-client.pcap"}

// notTeredo lists the ports of the other UDP traffic the Windows capture
// holds: DNS, DHCP and NetBIOS.
var notTeredo = map[uint16]bool{53: true, 67: true, 68: true, 137: true, 138: true}

func loadDatagrams(t testing.TB, name string) []pcapfile.Datagram {
	t.Helper()
	out, err := pcapfile.ReadUDP4File(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// frame returns the datagram of frame n (1-based, as tshark numbers them).
func frame(t testing.TB, name string, n int) pcapfile.Datagram {
	t.Helper()
	for _, d := range loadDatagrams(t, name) {
		if d.Frame == n {
			return d
		}
	}
	t.Fatalf("%s: no UDP frame %d", name, n)
	return pcapfile.Datagram{}
}

// TestCapturesParse feeds every Teredo datagram of the captures to
// ParseEnvelope and rebuilds it from the parsed parts, which must give back
// the same bytes.
func TestCapturesParse(t *testing.T) {
	for _, name := range captures {
		t.Run(name, func(t *testing.T) {
			ds := loadDatagrams(t, name)
			teredo := 0
			for _, d := range ds {
				if notTeredo[d.Src.Port()] || notTeredo[d.Dst.Port()] {
					continue
				}
				teredo++
				var e Envelope
				if err := ParseEnvelope(d.Payload, &e); err != nil {
					t.Errorf("frame %d (%v -> %v): %v", d.Frame, d.Src, d.Dst, err)
					continue
				}
				if got := rebuild(t, &e); string(got) != string(d.Payload) {
					t.Errorf("frame %d: rebuilt %x, want %x", d.Frame, got, d.Payload)
				}
				if e.IPv6.NextHeader() == ProtoICMPv6 {
					if _, err := ParseICMPv6(e.IPv6); err != nil {
						t.Errorf("frame %d: ICMPv6: %v", d.Frame, err)
					}
				}
			}
			if teredo == 0 {
				t.Fatal("no Teredo datagrams found")
			}
		})
	}
}

// rebuild encodes a parsed envelope again with the package's builders.
func rebuild(t testing.TB, e *Envelope) []byte {
	t.Helper()
	var b []byte
	if e.HasAuth {
		var err error
		if b, err = AppendAuth(b, e.Auth); err != nil {
			t.Fatal(err)
		}
	}
	if e.HasOrigin {
		b = AppendOrigin(b, e.Origin)
	}
	b = append(b, e.IPv6...)
	return append(b, e.Trailer...)
}
