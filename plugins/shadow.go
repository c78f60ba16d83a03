package plugins

import (
	"bytes"
	"context"
	"encoding/json"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/rego"
)

const (
	// shadowQueue bounds the decisions waiting for the shadow version; when
	// it is full the shadow skips them (counted as dropped) rather than slow
	// the enforcing path.
	shadowQueue = 1024
	// shadowRecent is how many disagreements are kept for inspection.
	shadowRecent = 100
	// shadowInputCap bounds the input kept with one disagreement.
	shadowInputCap = 4 << 10
)

// ShadowStats reports how a shadow version compares with the active one on
// live traffic.
type ShadowStats struct {
	Info      Info           `json:"info"`
	Evaluated uint64         `json:"evaluated"`
	Agreed    uint64         `json:"agreed"`
	Disagreed uint64         `json:"disagreed"`
	Errors    uint64         `json:"errors"`
	Dropped   uint64         `json:"dropped"`
	Recent    []Disagreement `json:"recent"`
}

// Disagreement is one live decision where the shadow version would have
// decided otherwise than the active one.
type Disagreement struct {
	At            time.Time           `json:"at"`
	Entrypoint    contract.Entrypoint `json:"entrypoint"`
	ActiveVersion string              `json:"active_version"`
	ActiveAllow   bool                `json:"active_allow"`
	ActiveReasons []string            `json:"active_reasons"`
	ShadowAllow   bool                `json:"shadow_allow"`
	ShadowReasons []string            `json:"shadow_reasons"`
	Input         json.RawMessage     `json:"input,omitempty"`
	// InputTruncated is set when the input was too large to keep.
	InputTruncated bool `json:"input_truncated,omitempty"`
}

type shadowJob struct {
	entrypoint contract.Entrypoint
	input      []byte
	active     Decision
}

// shadow evaluates a candidate version beside the active one, off the
// enforcing path, and counts where the two disagree.
type shadow struct {
	v    *version
	jobs chan shadowJob
	// gate orders offers before stop closes jobs: offer holds it shared.
	gate    sync.RWMutex
	stopped bool
	now     func() time.Time
	done    sync.WaitGroup

	evaluated, agreed, disagreed, errors, dropped atomic.Uint64

	mu     sync.Mutex
	recent []Disagreement
}

// offer queues a decision for the shadow without ever blocking.
func (s *shadow) offer(entrypoint contract.Entrypoint, input []byte, active Decision) {
	s.gate.RLock()
	defer s.gate.RUnlock()
	if s.stopped {
		return
	}
	select {
	case s.jobs <- shadowJob{entrypoint: entrypoint, input: bytes.Clone(input), active: active}:
	default:
		s.dropped.Add(1)
	}
}

func (s *shadow) run(ctx context.Context) {
	defer s.done.Done()
	for job := range s.jobs {
		raw, err := s.v.eval(ctx, time.Time{}, job.entrypoint, &decisionInput{rest: job.input})
		var d Decision
		if err == nil {
			d, err = parseDecision(s.v.info.Version, raw)
		}
		s.evaluated.Add(1)
		if err != nil {
			s.errors.Add(1)
			continue
		}
		if d.Allow == job.active.Allow {
			s.agreed.Add(1)
			continue
		}
		s.disagreed.Add(1)
		dis := Disagreement{
			At:            s.now(),
			Entrypoint:    job.entrypoint,
			ActiveVersion: job.active.Version,
			ActiveAllow:   job.active.Allow,
			ActiveReasons: job.active.Reasons,
			ShadowAllow:   d.Allow,
			ShadowReasons: d.Reasons,
		}
		if len(job.input) <= shadowInputCap {
			dis.Input = job.input
		} else {
			dis.InputTruncated = true
		}
		s.mu.Lock()
		s.recent = append(s.recent, dis)
		if len(s.recent) > shadowRecent {
			s.recent = s.recent[len(s.recent)-shadowRecent:]
		}
		s.mu.Unlock()
	}
}

func (s *shadow) stats() ShadowStats {
	s.mu.Lock()
	recent := slices.Clone(s.recent)
	s.mu.Unlock()
	return ShadowStats{
		Info:      s.v.info,
		Evaluated: s.evaluated.Load(),
		Agreed:    s.agreed.Load(),
		Disagreed: s.disagreed.Load(),
		Errors:    s.errors.Load(),
		Dropped:   s.dropped.Load(),
		Recent:    recent,
	}
}

// stop drains the queue and closes the shadow version.
func (s *shadow) stop(ctx context.Context) {
	s.gate.Lock()
	s.stopped = true
	close(s.jobs)
	s.gate.Unlock()
	s.done.Wait()
	s.v.retire(ctx)
}

// SetShadow validates b and evaluates it beside the active version on every
// decision from now on, without enforcing it. It replaces any earlier shadow.
func (r *Registry) SetShadow(ctx context.Context, b *rego.Bundle, source string) (Info, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	b, err := r.verify(b, source)
	var v *version
	if err == nil {
		v, err = r.load(ctx, b, source, nil)
	}
	if err != nil {
		r.record(ctx, Event{Kind: "shadow_rejected", Source: source, Author: authorOf(ctx), Error: err.Error()})
		return Info{}, err
	}
	v.info.ActivatedAt = r.now()
	s := &shadow{v: v, jobs: make(chan shadowJob, shadowQueue), now: r.now}
	s.done.Add(1)
	go s.run(context.WithoutCancel(ctx))
	e := Event{Kind: "shadow_set", Version: v.info.Version, Source: source, Author: authorOf(ctx)}
	if old := r.shadow.Swap(s); old != nil {
		e.Previous = old.v.info.Version
		old.stop(ctx)
	}
	r.record(ctx, e)
	return v.info, nil
}

// ClearShadow stops shadow evaluation and returns the final comparison.
func (r *Registry) ClearShadow(ctx context.Context) (ShadowStats, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.shadow.Swap(nil)
	if s == nil {
		return ShadowStats{}, false
	}
	r.record(ctx, Event{Kind: "shadow_cleared", Version: s.v.info.Version, Source: s.v.info.Source, Author: authorOf(ctx)})
	s.stop(ctx)
	return s.stats(), true
}

// Shadow returns the running comparison; ok is false without a shadow.
func (r *Registry) Shadow() (ShadowStats, bool) {
	s := r.shadow.Load()
	if s == nil {
		return ShadowStats{}, false
	}
	return s.stats(), true
}
