// SPDX-License-Identifier: MIT

package main

import (
	"log/slog"

	"github.com/miredo-go/miredo/internal/bench/proccpu"
)

// stopPerf ends every recording, logging the ones that fail.
func stopPerf(log *slog.Logger, recs []*proccpu.PerfRecording) {
	for _, r := range recs {
		if err := r.Stop(); err != nil {
			log.Warn("perf", "err", err)
		}
	}
}
