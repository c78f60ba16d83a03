package stack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/pbac-gateway/pbac/admin"
	"github.com/pbac-gateway/pbac/config"
	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/plugins"
	"github.com/pbac-gateway/pbac/plugins/bundlesource"
	"github.com/pbac-gateway/pbac/plugins/pgsync"
	"github.com/pbac-gateway/pbac/plugins/policystore"
	"github.com/pbac-gateway/pbac/rego"
	"github.com/pbac-gateway/pbac/wasm"
)

// Policy is where decisions come from: by default the Wasm engine and a
// policy registry running the shipped policy, with the policy directory,
// a bundle server and the replicas' policy sync as further sources.
type Policy struct {
	// Bundle is the first version made active (nil: the shipped policy,
	// built at start), recorded as Source (default "shipped").
	Bundle *rego.Bundle
	Source string
	// Limits bound one decision and one evaluation.
	Limits PolicyLimits
	// CacheDir holds the Wasm compilation cache ("": <data dir>/wasm-cache,
	// none when Ephemeral).
	CacheDir string
	// WatchDir makes bundles dropped into <data dir>/policies live.
	WatchDir bool
	// BundleServer, when set, is polled every PollInterval for the policy
	// (another replica's admin listener, or any OPA bundle server), with
	// BundleToken. The admin listener accepts BundleToken for
	// /bundles/pbac too.
	BundleServer string
	PollInterval time.Duration
	BundleToken  string
	// Verifier, when set, requires every bundle from every source to be
	// signed with one of its keys.
	Verifier *rego.Verifier
	// Sync, with a PostgreSQL token store, keeps one policy version on
	// every replica sharing the store (heartbeat SyncInterval).
	Sync         bool
	SyncInterval time.Duration

	// Decider, when set, decides instead of a registry of the stack's own
	// (pbac bench's OPA sidecar over HTTP); Data is then its policy data.
	// There is no registry: no admin listener, no policy sources.
	Decider contract.Decider
	Data    *contract.Data
}

// PolicyLimits bound policy decisions: one evaluation (the engine's
// deadline) and one whole decision, the wait for a policy instance
// included (the registry's). Zero keeps a default.
type PolicyLimits struct {
	EvalTimeout, DecisionTimeout time.Duration
}

// Check refuses an evaluation deadline the decision timeout would cut
// short: it would never be reached.
func (l PolicyLimits) Check() error {
	eval, decision := l.EvalTimeout, l.DecisionTimeout
	if eval == 0 {
		eval = wasm.NewConfig().EvalTimeout()
	}
	if decision == 0 {
		decision = plugins.DefaultDecisionTimeout
	}
	if eval > decision {
		return fmt.Errorf("policy evaluation timeout %s (--policy-eval-timeout, policy.eval_timeout) is longer than the decision timeout %s (--policy-decision-timeout, policy.decision_timeout), which bounds the whole decision", eval, decision)
	}
	return nil
}

// policyRuntime is the Wasm engine and the registry with a version
// active.
type policyRuntime struct {
	engine   *wasm.Engine
	registry *plugins.Registry
}

func (p *policyRuntime) close(ctx context.Context) error {
	return errors.Join(p.registry.Close(ctx), p.engine.Close(ctx))
}

// openPolicy opens the policy runtime with its first version active, then
// its sources in order: signatures required and the bundle server (before
// any other source), the replicas' sync, the policy directory.
func (s *Stack) openPolicy(ctx context.Context) error {
	pc := s.cfg.Policy
	if pc.Decider != nil {
		s.decider, s.data = pc.Decider, pc.Data
		return nil
	}
	if err := pc.Limits.Check(); err != nil {
		return err
	}
	cache := pc.CacheDir
	if cache == "" && !s.cfg.Ephemeral {
		cache = filepath.Join(s.cfg.DataDir, "wasm-cache")
	}
	ecfg := wasm.NewConfig().WithLogger(s.log).WithEvalTimeout(pc.Limits.EvalTimeout)
	if cache != "" {
		ecfg = ecfg.WithCacheDir(cache)
	}
	engine, err := wasm.NewEngine(ctx, ecfg)
	if err != nil {
		return err
	}
	opts := []plugins.Option{plugins.WithLogger(s.log), plugins.WithDecisionTimeout(pc.Limits.DecisionTimeout),
		plugins.WithEvents(s.auditPolicy)}
	switch {
	case config.IsPostgresStore(s.cfg.Store):
		// With the token store, shared by the replicas on the database.
		st, err := pgsync.OpenVersions(ctx, s.cfg.Store)
		if err != nil {
			_ = engine.Close(ctx)
			return fmt.Errorf("open the policy versions: %w", err)
		}
		// Registered before the runtime, so it closes after the registry.
		s.onClose(phasePolicy, "policy versions", func(context.Context) error { st.Close(); return nil })
		opts = append(opts, plugins.WithStore(st))
	case !s.cfg.Ephemeral:
		dir := filepath.Join(s.cfg.DataDir, policyStoreDir)
		st, err := policystore.Open(ctx, dir, s.log)
		if err != nil {
			_ = engine.Close(ctx)
			return fmt.Errorf("open the policy versions: %w", err)
		}
		s.onClose(phasePolicy, "policy versions", func(context.Context) error { return st.Close() })
		opts = append(opts, plugins.WithStore(st))
	}
	reg := plugins.New(engine, opts...)
	s.policy = &policyRuntime{engine: engine, registry: reg}
	s.onClose(phasePolicy, "policy runtime", s.policy.close)
	b, source := pc.Bundle, pc.Source
	if b == nil {
		if b, err = rego.BuildShipped(ctx); err != nil {
			return fmt.Errorf("activate the shipped policy: %w", err)
		}
		source = "shipped"
	}
	if source == "" {
		source = "shipped"
	}
	// Signatures first: a stored version is activated again only if it
	// still verifies with the keys configured now.
	s.requireSignatures()
	info, err := reg.Start(ctx, b, source)
	if err != nil {
		return fmt.Errorf("activate the %s policy: %w", source, err)
	}
	s.log.Info("policy active at start", "version", info.Version, "source", info.Source, "author", info.Author)
	s.decider = reg
	if err := s.startDistribution(); err != nil {
		return err
	}
	if err := s.startSync(ctx); err != nil {
		return err
	}
	if pc.WatchDir {
		dir := filepath.Join(s.cfg.DataDir, "policies")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return err
		}
		s.bg.Go(func() {
			if err := reg.WatchDir(s.bgCtx, dir); err != nil {
				s.log.Error("policy directory watch stopped", "dir", dir, "err", err)
			}
		})
	}
	return nil
}

// policyStoreDir is where, under the data dir, the activated policy
// versions are kept (plugins/policystore).
const policyStoreDir = "policy-store"

// requireSignatures requires signed bundles when a verifier is configured.
func (s *Stack) requireSignatures() {
	if v := s.cfg.Policy.Verifier; v != nil {
		s.policy.registry.RequireSignatures(v)
		s.log.Info("policy bundles must be signed", "key_ids", v.KeyIDs())
	}
}

// startDistribution starts polling the bundle server, if any.
func (s *Stack) startDistribution() error {
	pc := s.cfg.Policy
	reg := s.policy.registry
	if pc.BundleServer == "" {
		return nil
	}
	src, err := bundlesource.New(bundlesource.Config{
		URL:      bundlesource.BundleURL(pc.BundleServer, admin.BundleName),
		Token:    pc.BundleToken,
		Interval: pc.PollInterval,
		Registry: reg,
		Logger:   s.log,
	})
	if err != nil {
		return err
	}
	if pc.Verifier == nil {
		s.log.Warn("polling a bundle server without --bundle-verification-key: bundles are not checked for a signature", "server", pc.BundleServer)
	}
	s.bundleSource = src
	s.bg.Go(func() { _ = src.Run(s.bgCtx) })
	return nil
}

// startSync joins the replicas' shared policy head when the token store is
// PostgreSQL and sync is on.
func (s *Stack) startSync(ctx context.Context) error {
	pc := s.cfg.Policy
	if !pc.Sync || !config.IsPostgresStore(s.cfg.Store) {
		return nil
	}
	reg := s.policy.registry
	sy, err := pgsync.Open(ctx, pgsync.Config{DSN: s.cfg.Store, Registry: reg, Interval: pc.SyncInterval, Logger: s.log})
	if err != nil {
		return fmt.Errorf("policy sync: %w", err)
	}
	info, _ := reg.Active()
	s.log.Info("policy sync: sharing the policy version with the replicas on the store", "replica", sy.Replica(), "version", info.Version)
	s.sync = sy
	var run sync.WaitGroup
	run.Go(func() { _ = sy.Run(s.bgCtx) })
	s.onClose(phasePolicySources, "policy sync", func(ctx context.Context) error {
		// Close cancelled the background context: wait for Run, then leave
		// the replica set.
		if err := waitGroup(ctx, &run, "policy sync"); err != nil {
			return err
		}
		lctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if err := sy.Close(lctx); err != nil {
			s.log.Warn("policy sync: leave", "err", err)
		}
		return nil
	})
	return nil
}

// propagate hands a policy change to the other replicas (admin API,
// dashboard); nil without sync.
func (s *Stack) propagate() func(context.Context) (any, bool, error) {
	if s.sync == nil {
		return nil
	}
	return func(ctx context.Context) (any, bool, error) {
		c, err := s.sync.Propagate(ctx)
		return c, c.Complete, err
	}
}
