package stack

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/pbac-gateway/pbac/audit"
	"github.com/pbac-gateway/pbac/audit/index"
	"github.com/pbac-gateway/pbac/demo"
	"github.com/pbac-gateway/pbac/gateway"
	"github.com/pbac-gateway/pbac/stdio"
)

// startBackends starts the demo backends (Demo.Backends) and resolves the
// configured ones: a URL is used as it is; a command is started behind a
// stdio bridge.
func (s *Stack) startBackends(ctx context.Context) error {
	if s.cfg.Demo.Backends {
		runs, err := demo.StartAll(ctx)
		if err != nil {
			return fmt.Errorf("start the demo backends: %w", err)
		}
		for _, r := range runs {
			s.onClose(phaseBackends, "demo backend "+r.Name, r.Close)
			s.backends = append(s.backends, gateway.Backend{Name: r.Name, URL: r.URL})
		}
	}
	for _, bc := range s.cfg.Backends {
		if len(bc.Command) == 0 {
			r, err := bc.Resolve()
			if err != nil {
				return err
			}
			s.backends = append(s.backends, gateway.Backend{Name: r.Name, URL: r.URL, Headers: r.Headers, Timeout: r.Timeout})
			continue
		}
		idle, maxProcs, maxPerAgent, err := bc.StdioLimits()
		if err != nil {
			return err
		}
		if maxProcs == 0 {
			maxProcs = s.cfg.Limits.StdioSessions
		}
		if maxPerAgent == 0 {
			maxPerAgent = s.cfg.Limits.StdioSessionsPerAgent
		}
		bridge, err := stdio.Start(ctx, stdio.Config{
			Name: bc.Name, Command: bc.Command, Env: bc.Env, Dir: bc.Dir,
			MaxSessions: maxProcs, MaxSessionsPerAgent: maxPerAgent, IdleTimeout: idle, Shared: bc.Shared,
			Logger: s.log, // the bridge names its backend in every line
		})
		if err != nil {
			return fmt.Errorf("backend %s: %w", bc.Name, err)
		}
		s.onClose(phaseBackends, "stdio backend "+bc.Name, bridge.Close)
		s.collectors = append(s.collectors, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "pbac_stdio_processes", Help: "Processes a stdio backend runs now (one per MCP session; one in all for a shared backend).",
			ConstLabels: prometheus.Labels{"backend": bc.Name},
		}, func() float64 { return float64(bridge.Processes()) }))
		b := gateway.Backend{Name: bc.Name, URL: bridge.URL(), SecretURL: true, OwnerHeader: stdio.OwnerHeader}
		if bc.Timeout != "" {
			if b.Timeout, err = time.ParseDuration(bc.Timeout); err != nil {
				return fmt.Errorf("backend %s: timeout: %w", bc.Name, err)
			}
		}
		s.backends = append(s.backends, b)
	}
	return nil
}

// Defaults of the audit trail.
const (
	auditFileMB         = 100
	auditDefaultBackups = 10
	auditDefaultRetain  = 30 * 24 * time.Hour
	auditFileName       = "audit.jsonl"
	auditIndexDirName   = "index"
	auditDirName        = "audit"
)

// openAudit opens the audit trail: the JSON Lines file (rotated) and the
// queryable index under <data dir>/audit, or the index alone in memory
// when ephemeral.
func (s *Stack) openAudit(ctx context.Context) error {
	a := s.cfg.Audit
	if a.MaxBackups == 0 {
		a.MaxBackups = auditDefaultBackups
	}
	if a.Retention == 0 {
		a.Retention = auditDefaultRetain
	}
	var sinks []audit.Sink
	indexDir := ""
	if !s.cfg.Ephemeral {
		dir := filepath.Join(s.cfg.DataDir, auditDirName)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		file, err := audit.NewFileSink(filepath.Join(dir, auditFileName), auditFileMB, a.MaxBackups)
		if err != nil {
			return err
		}
		s.onClose(phaseAudit, "audit file", func(context.Context) error { return file.Close() })
		sinks = append(sinks, file)
		indexDir = filepath.Join(dir, auditIndexDirName)
	}
	idx, err := index.Open(ctx, indexDir, a.Retention)
	if err != nil {
		return err
	}
	s.onClose(phaseAudit, "audit index", func(context.Context) error { return idx.Close() })
	s.index = idx
	s.trail = audit.NewTrailWithOptions(s.log, audit.TrailOptions{Linger: a.Linger}, append(sinks, idx)...)
	s.policyTrail.Store(s.trail)
	// The trail closes its sinks once it has written what is queued.
	s.onClose(phaseAudit, "audit trail", s.trail.Close)
	return nil
}
