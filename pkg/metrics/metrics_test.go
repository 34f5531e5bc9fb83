// SPDX-License-Identifier: MIT

package metrics

import (
	"io"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// TestHandler: counters, gauges and drop reasons come out under their
// Prometheus names with the role label, read afresh at each scrape.
func TestHandler(t *testing.T) {
	var delivered atomic.Uint64
	src := func() map[string]any {
		return map[string]any{
			"engine": map[string]any{"delivered": delivered.Load(), "peers": uint64(3), "drop_malformed": uint64(2), "drop_table_full": uint64(1)},
			"io":     map[string]any{"udp_read_errors": uint64(0)},
		}
	}
	h := Handler("relay", src)
	scrape := func() string {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
		b, _ := io.ReadAll(rec.Body)
		return string(b)
	}
	delivered.Store(41)
	scrape()
	delivered.Store(42)
	out := scrape()
	for _, want := range []string{
		`miredo_engine_delivered_total{role="relay"} 42`,
		"# TYPE miredo_engine_delivered_total counter",
		`miredo_engine_peers{role="relay"} 3`,
		"# TYPE miredo_engine_peers gauge",
		`miredo_engine_dropped_total{reason="malformed",role="relay"} 2`,
		`miredo_engine_dropped_total{reason="table_full",role="relay"} 1`,
		`miredo_io_udp_read_errors_total{role="relay"} 0`,
		"go_goroutines ",
		"process_resident_memory_bytes ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("scrape lacks %q", want)
		}
	}
	if t.Failed() {
		t.Log(out)
	}
}
