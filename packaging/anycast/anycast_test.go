// SPDX-License-Identifier: MIT

package anycast

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestFilesAgree: the names the Go side relies on are the ones the files
// use.
func TestFilesAgree(t *testing.T) {
	relay, err := File(RelayBIRD)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(relay, []byte(`via "`+AnnounceInterface+`"`)) {
		t.Errorf("%s does not announce through %s", RelayBIRD, AnnounceInterface)
	}
	pool, err := File(PoolDNSMasq)
	if err != nil {
		t.Fatal(err)
	}
	if n := bytes.Count(pool, []byte("host-record="+PoolName+",")); n < 2 {
		t.Errorf("%s: %d records for %s, want a pool", PoolDNSMasq, n, PoolName)
	}
}

// TestBIRDParses: both BIRD files, included as the docs say, pass bird -p
// (when BIRD is installed).
func TestBIRDParses(t *testing.T) {
	if _, err := exec.LookPath("bird"); err != nil {
		t.Skip("bird(8) not installed (apt-get install bird2)")
	}
	dir := t.TempDir()
	for _, tc := range []struct{ file, defines string }{
		{RelayBIRD, "define UPSTREAM_ADDR = 2001:db8:1::1;\ndefine UPSTREAM_AS = 65000;\ndefine RELAY_AS = 65001;\n"},
		{UpstreamBIRD, "define RELAY_RANGE = 2001:db8:1::/64;\ndefine RELAY_AS = 65001;\ndefine UPSTREAM_AS = 65000;\n"},
	} {
		abs, err := filepath.Abs(tc.file)
		if err != nil {
			t.Fatal(err)
		}
		main := filepath.Join(dir, "bird-"+tc.file)
		if err := os.WriteFile(main, []byte(tc.defines+"include \""+abs+"\";\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("bird", "-p", "-c", main).CombinedOutput(); err != nil {
			t.Errorf("bird -p %s: %v\n%s", tc.file, err, strings.TrimSpace(string(out)))
		}
	}
}

// TestDNSMasqParses: the pool file passes dnsmasq --test (when dnsmasq is
// installed).
func TestDNSMasqParses(t *testing.T) {
	if _, err := exec.LookPath("dnsmasq"); err != nil {
		t.Skip("dnsmasq(8) not installed (apt-get install dnsmasq-base)")
	}
	if out, err := exec.Command("dnsmasq", "--test", "-C", PoolDNSMasq).CombinedOutput(); err != nil {
		t.Errorf("dnsmasq --test: %v\n%s", err, out)
	}
}
