// SPDX-License-Identifier: MIT

package pcapfile

import (
	"bytes"
	"net/netip"
	"os"
	"testing"
)

func TestReadMiredoCapture(t *testing.T) {
	f, err := os.Open("../../pkg/proto/testdata/server.pcap")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	lt, recs, err := Read(f)
	if err != nil {
		t.Fatal(err)
	}
	if lt != LinkEthernet || len(recs) != 9 {
		t.Fatalf("link type %d, %d frames; want 1, 9", lt, len(recs))
	}
	d, err := UDP4(lt, recs[0])
	if err != nil {
		t.Fatal(err)
	}
	want := netip.MustParseAddrPort("192.0.2.10:3544")
	if d.Dst != want || d.Src != netip.MustParseAddrPort("198.51.100.2:35171") || len(d.Payload) != 61 {
		t.Errorf("frame 1 = %v -> %v, %d bytes; want 198.51.100.2:35171 -> %v, 61 bytes", d.Src, d.Dst, len(d.Payload), want)
	}
}

func TestWriteReadRoundTrip(t *testing.T) {
	src := netip.MustParseAddrPort("198.51.100.2:40000")
	dst := netip.MustParseAddrPort("192.0.2.10:3544")
	var buf bytes.Buffer
	w, err := NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	payload := []byte("teredo")
	if err := w.WritePacket(AppendUDP4(nil, src, dst, payload)); err != nil {
		t.Fatal(err)
	}
	lt, recs, err := Read(&buf)
	if err != nil || lt != LinkRaw || len(recs) != 1 {
		t.Fatalf("Read = %d, %d frames, %v", lt, len(recs), err)
	}
	d, err := UDP4(lt, recs[0])
	if err != nil {
		t.Fatal(err)
	}
	if d.Src != src || d.Dst != dst || !bytes.Equal(d.Payload, payload) {
		t.Errorf("got %v -> %v %q", d.Src, d.Dst, d.Payload)
	}
}

func TestReadRejectsGarbage(t *testing.T) {
	header := append([]byte{0xd4, 0xc3, 0xb2, 0xa1}, make([]byte, 20)...)
	tests := []struct {
		name string
		in   []byte
		ok   bool
	}{
		{"empty", nil, false},
		{"text", []byte("not a pcap file at all, no"), false},
		{"header only", header, true},
		{"truncated record", append(append([]byte{}, header...), 1, 2, 3), false},
		{"huge record", append(append([]byte{}, header...), 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10, 0, 0, 0, 0x10), false},
	}
	for _, tc := range tests {
		_, _, err := Read(bytes.NewReader(tc.in))
		if (err == nil) != tc.ok {
			t.Errorf("%s: Read error = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

// FuzzRead: any input either fails cleanly or yields frames whose UDP
// extraction never panics.
func FuzzRead(f *testing.F) {
	for _, name := range []string{"server.pcap", "windows-client.pcap"} {
		b, err := os.ReadFile("../../pkg/proto/testdata/" + name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b[:min(len(b), 600)])
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		lt, recs, err := Read(bytes.NewReader(b))
		if err != nil {
			return
		}
		for _, r := range recs {
			if d, err := UDP4(lt, r); err == nil && len(d.Payload) > len(r.Data) {
				t.Fatalf("payload longer than the frame")
			}
		}
	})
}

// TestReadUDP4File: the datagrams of a file, frame numbers kept; a file cut
// in the middle of a record (a capture still being written) is an error.
func TestReadUDP4File(t *testing.T) {
	const path = "../../pkg/proto/testdata/server.pcap"
	ds, err := ReadUDP4File(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(ds) != 9 || ds[0].Frame != 1 || ds[8].Frame != 9 {
		t.Fatalf("%d datagrams, frames %d..%d", len(ds), ds[0].Frame, ds[len(ds)-1].Frame)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	cut := t.TempDir() + "/cut.pcap"
	if err := os.WriteFile(cut, b[:len(b)-3], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadUDP4File(cut); err == nil {
		t.Error("a cut file read without error")
	}
	if _, err := ReadUDP4File(t.TempDir() + "/none.pcap"); err == nil {
		t.Error("a missing file read without error")
	}
}
