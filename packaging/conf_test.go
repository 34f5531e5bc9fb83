// SPDX-License-Identifier: MIT

package packaging

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/miredo-go/miredo/pkg/conf"
	"github.com/miredo-go/miredo/pkg/proto"
)

// TestSampleConfigs reads each packaged sample configuration as its role
// does: it must parse without a warning, say it is for its role, and still
// parse without a warning with every commented-out directive put back, so
// the defaults and examples it shows are ones the daemon accepts.
func TestSampleConfigs(t *testing.T) {
	samples := []struct {
		file   string
		schema conf.Schema
		mode   conf.Mode
	}{
		{"miredo.conf", conf.ClientSchema, conf.ModeClient},
		{"miredo-relay.conf", conf.RelaySchema, conf.ModeCone},
		{"miredo-server.conf", conf.ServerSchema, conf.ModeClient},
	}
	commented := regexp.MustCompile(`^#([A-Za-z0-9]+)\s+\S+$`)
	opts := conf.Options{IsGlobalUnicast: proto.IsGlobalUnicastIPv4} // no DNS: literals only
	for _, s := range samples {
		t.Run(s.file, func(t *testing.T) {
			path := filepath.Join("conf", s.file)
			f, warns, err := conf.ParseFile(path, s.schema, opts)
			if err != nil || len(warns) > 0 {
				t.Fatalf("as shipped: %v %v", err, warns)
			}
			if f.RelayType != s.mode {
				t.Errorf("RelayType %v, want %v", f.RelayType, s.mode)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			var all strings.Builder
			seen := map[conf.Directive]bool{}
			sc := bufio.NewScanner(strings.NewReader(string(b)))
			for sc.Scan() {
				line := sc.Text()
				if m := commented.FindStringSubmatch(line); m != nil {
					d, ok := conf.ParseDirective(m[1])
					if !ok {
						t.Errorf("%q: not a directive", line)
						continue
					}
					seen[d] = true
					line = line[1:]
				} else if d, ok := conf.ParseDirective(strings.Fields(line + " #")[0]); ok {
					seen[d] = true
				}
				all.WriteString(line + "\n")
			}
			if _, warns, err := conf.Parse(strings.NewReader(all.String()), path+" (all uncommented)", s.schema, opts); err != nil || len(warns) > 0 {
				t.Errorf("with every directive uncommented: %v %v\n%s", err, warns, all.String())
			}
			for _, d := range s.schema.Directives() {
				if !seen[d] {
					t.Errorf("%v, which the role reads, is not shown", d)
				}
			}
		})
	}
}
