// SPDX-License-Identifier: MIT

package main

import (
	"testing"
	"time"
)

func TestLogTime(t *testing.T) {
	log := "time=2026-12-07T02:40:28.110Z level=WARN msg=\"Lost Teredo connectivity: no reply\"\n" +
		"### a line of the lab's\n" +
		"time=2026-12-07T02:40:31.500Z level=INFO msg=\"New Teredo address/MTU\" address=2001::1\n" +
		"time=2026-12-07T02:40:40.000Z level=INFO msg=\"New Teredo address/MTU\" address=2001::2\n"
	after := time.Date(2026, 12, 7, 2, 40, 30, 0, time.UTC)
	got, ok := logTime(log, "New Teredo address", after)
	if !ok || !got.Equal(time.Date(2026, 12, 7, 2, 40, 31, 500e6, time.UTC)) {
		t.Errorf("logTime = %v, %v", got, ok)
	}
	if _, ok := logTime(log, "Lost Teredo connectivity", after); ok {
		t.Error("found a line stamped before the time asked")
	}
}

func TestStall(t *testing.T) {
	rep := `{"intervals":[` +
		`{"sum":{"start":0,"end":0.1,"bits_per_second":5e7}},{"sum":{"start":0.1,"end":0.2,"bits_per_second":5e7}},` +
		`{"sum":{"start":0.2,"end":0.3,"bits_per_second":1e5}},{"sum":{"start":0.3,"end":0.4,"bits_per_second":0}},` +
		`{"sum":{"start":0.4,"end":0.5,"bits_per_second":5e7}},{"sum":{"start":0.5,"end":0.6,"bits_per_second":4e7}}]}`
	got, back, err := stallOf([]byte(rep), false)
	if err != nil || got < 199*time.Millisecond || got > 201*time.Millisecond || !back {
		t.Errorf("stallOf = %v, %v, %v; want 200ms, back", got, back, err)
	}
	if got2, _, err := stallOf([]byte(`{"intervals":[],"server_output_json":`+rep+`}`), true); err != nil || got2 != got {
		t.Errorf("stallOf the server's report = %v, %v; want %v", got2, err, got)
	}
	dead := `{"intervals":[{"sum":{"start":0,"end":0.1,"bits_per_second":5e7}},{"sum":{"start":0.1,"end":0.2,"bits_per_second":0}}]}`
	if got, back, err := stallOf([]byte(dead), false); err != nil || back || got < 99*time.Millisecond {
		t.Errorf("a flow that stops: stallOf = %v, %v, %v; want 100ms, not back", got, back, err)
	}
	if _, _, err := stallOf([]byte(`{"error":"unable to connect"}`), false); err == nil {
		t.Error("a report without intervals was accepted")
	}
}
