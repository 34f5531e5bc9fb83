// SPDX-License-Identifier: MIT

package control

import "log/slog"

// Counters turns a counter group as the daemons log it (the LogValue of
// their Stats types) into a JSON object: each number by its log key, each
// nested group as a nested object. Logs, status and metrics then name every
// counter the same way, from one list.
func Counters(v slog.Value) map[string]any {
	m := map[string]any{}
	for _, a := range v.Resolve().Group() {
		switch val := a.Value.Resolve(); val.Kind() {
		case slog.KindUint64:
			m[a.Key] = val.Uint64()
		case slog.KindInt64:
			m[a.Key] = val.Int64()
		case slog.KindGroup:
			m[a.Key] = Counters(val)
		}
	}
	return m
}
