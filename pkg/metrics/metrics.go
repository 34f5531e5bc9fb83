// SPDX-License-Identifier: MIT

// Package metrics serves a daemon's counters to Prometheus. They are the
// counters the logs and the status command show, read from the daemon's
// own atomics when Prometheus scrapes (a collector, not a second set of
// counters on the hot path), plus Go runtime and process metrics. No
// metric carries a peer's address as a label: cardinality stays bounded
// whatever traffic arrives.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Source returns the daemon's counters now, grouped as the status command
// reports them (control.Counters): group name to counter name to value.
type Source func() map[string]any

// gaugeNames are the values that go down as well as up; everything else
// only grows and is a counter.
var gaugeNames = map[string]bool{"peers": true, "queued_bytes": true}

// collector turns a Source into metrics at each scrape: group g's counter
// k is miredo_<g>_<k>_total, a gauge miredo_<g>_<k>, and a drop counter
// (drop_<reason>) miredo_<g>_dropped_total{reason="<reason>"}; every one
// carries role="<role>".
type collector struct {
	role string
	src  Source
}

// Describe sends nothing: the set of counters is the daemon's, read at
// each scrape (an unchecked collector).
func (c *collector) Describe(chan<- *prometheus.Desc) {}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	for group, v := range c.src() {
		m, ok := v.(map[string]any)
		if !ok {
			continue
		}
		c.collectGroup(ch, sanitize(group), m)
	}
}

func (c *collector) collectGroup(ch chan<- prometheus.Metric, group string, m map[string]any) {
	for _, k := range sortedKeys(m) {
		var v float64
		switch n := m[k].(type) {
		case uint64:
			v = float64(n)
		case int64:
			v = float64(n)
		case map[string]any:
			c.collectGroup(ch, group+"_"+sanitize(k), n)
			continue
		default:
			continue
		}
		name, labels, values := "miredo_"+group+"_"+sanitize(k), []string{"role"}, []string{c.role}
		kind := prometheus.CounterValue
		switch {
		case strings.HasPrefix(k, "drop_"):
			name = "miredo_" + group + "_dropped"
			labels, values = append(labels, "reason"), append(values, strings.TrimPrefix(k, "drop_"))
		case gaugeNames[k]:
			kind = prometheus.GaugeValue
		}
		if kind == prometheus.CounterValue {
			name += "_total"
		}
		desc := prometheus.NewDesc(name, help(group, k), labels, nil)
		ch <- prometheus.MustNewConstMetric(desc, kind, v, values...)
	}
}

func help(group, key string) string {
	if strings.HasPrefix(key, "drop_") {
		return fmt.Sprintf("Packets the %s dropped, by reason (the %s.drop_* counters of the logs).", group, group)
	}
	return fmt.Sprintf("The %s.%s counter of the logs and the status command.", group, key)
}

func sortedKeys(m map[string]any) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

// sanitize keeps a name within Prometheus's [a-zA-Z0-9_].
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' {
			return r
		}
		return '_'
	}, s)
}

// Handler serves role's metrics from src, with Go runtime and process
// metrics, in Prometheus's text format.
func Handler(role string, src Source) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(&collector{role: role, src: src},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Server is a listening metrics endpoint.
type Server struct {
	ln  net.Listener
	srv *http.Server
	log *slog.Logger
}

// Listen opens the metrics listener on addr (host:port; a port below 1024
// needs the privileges the daemon drops later, so this runs before). An
// empty addr means no metrics: Listen returns a nil *Server, on which
// Serve does nothing.
func Listen(addr string, log *slog.Logger) (*Server, error) {
	if addr == "" {
		return nil, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics listener: %w", err)
	}
	return &Server{ln: ln, log: log}, nil
}

// Addr is where the listener is.
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve serves h on /metrics until ctx ends.
func (s *Server) Serve(ctx context.Context, h http.Handler) {
	if s == nil {
		return
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", h)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, WriteTimeout: 10 * time.Second}
	stop := context.AfterFunc(ctx, func() {
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		s.srv.Shutdown(sctx)
	})
	defer stop()
	if err := s.srv.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		s.log.Warn("metrics listener", "err", err)
	}
}
