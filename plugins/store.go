package plugins

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pbac-gateway/pbac/rego"
)

// Record is one activated version as a Store keeps it: what was activated
// (the whole bundle, signature included when it came signed), how, by
// whom and when.
type Record struct {
	// Seq orders the records; the store assigns it, increasing.
	Seq     uint64 `json:"seq"`
	Version string `json:"version"`
	// Kind is how the version became active: activated, data_updated or
	// rolled_back.
	Kind   string    `json:"kind"`
	Source string    `json:"source"`
	Author string    `json:"author,omitempty"`
	At     time.Time `json:"at"`
	// Bundle is the bundle's tar.gz; History leaves it out.
	Bundle []byte `json:"-"`
}

// Store keeps the activated versions, so the active one and its history
// survive a restart or a crash. Implementations: plugins/policystore.
type Store interface {
	// Append records rec as the newest version and returns it with its
	// Seq. It returns only once the record is durable: the registry
	// acknowledges an activation after Append, never before.
	Append(ctx context.Context, rec Record) (Record, error)
	// History returns the kept records, oldest first, without bundles.
	History(ctx context.Context) ([]Record, error)
	// Bundle returns the bundle of the record seq.
	Bundle(ctx context.Context, seq uint64) ([]byte, error)
}

// WithStore makes every activation (bundle, data change, rollback) durable
// in st before it takes effect, and Start resume the newest stored version.
func WithStore(st Store) Option {
	return func(r *Registry) { r.store = st }
}

type authorKey struct{}

// WithAuthor returns ctx saying who asks for a policy change (the admin
// token, the person signed in to the dashboard): the registry records it
// with the version.
func WithAuthor(ctx context.Context, author string) context.Context {
	return context.WithValue(ctx, authorKey{}, author)
}

func authorOf(ctx context.Context) string {
	a, _ := ctx.Value(authorKey{}).(string)
	return a
}

// ErrStore means a policy change could not be stored durably; it did not
// take effect.
var ErrStore = errors.New("policy change not stored")

// persist stores v before it becomes active. Callers hold r.mu.
func (r *Registry) persist(ctx context.Context, v *version, kind string) error {
	if r.store == nil {
		return nil
	}
	raw, err := v.bundle.TarGz()
	if err != nil {
		return fmt.Errorf("%w: encode %s: %w", ErrStore, short(v.info.Version), err)
	}
	rec, err := r.store.Append(ctx, Record{
		Version: v.info.Version, Kind: kind, Source: v.info.Source,
		Author: v.info.Author, At: r.now(), Bundle: raw,
	})
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrStore, short(v.info.Version), err)
	}
	r.headAt = rec.At
	return nil
}

// reject drops a candidate that validated but could not be stored, and
// records why. Callers hold r.mu.
func (r *Registry) reject(ctx context.Context, v *version, err error) {
	_ = v.policy.Close(ctx)
	r.record(ctx, Event{Kind: "rejected", Previous: r.activeVersion(), Source: v.info.Source, Author: v.info.Author, Error: err.Error()})
	r.logger.Error("policy change not stored; the active policy stays", "version", short(v.info.Version), "source", v.info.Source, "err", err)
}

// HeadAt is when the stored head version was activated: a bundle dropped
// into the watched directory before it does not replace it at start. It is
// zero without a store, before Start, and while the head is the first
// version Start was given (the shipped policy is only a starting point).
func (r *Registry) HeadAt() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.headAt
}

// Start makes the first version active. With a store holding versions, it
// is the newest stored one that still loads, validates and — when
// signatures are required (RequireSignatures, called before) — verifies;
// each one that does not is logged and skipped for the one before it, and
// the rollback history is rebuilt from the records. With none (a fresh data
// dir, or no store), first (the shipped or configured bundle, trusted as
// built in: it is not held to signatures) becomes active and, with a store,
// its first record. A stored version whose revision is first's is trusted
// the same way. When the newest record is an earlier run's first version
// from the same source, never changed since (a binary upgrade that ships
// another policy), first replaces it.
func (r *Registry) Start(ctx context.Context, first *rego.Bundle, source string) (Info, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed {
		return Info{}, ErrNoPolicy
	}
	var recs []Record
	if r.store != nil {
		var err error
		if recs, err = r.store.History(ctx); err != nil {
			return Info{}, fmt.Errorf("read the stored policy versions: %w", err)
		}
	}
	for _, rec := range recs {
		// Read back, not happening now: the history only.
		r.remember(Event{At: rec.At, Kind: rec.Kind, Version: rec.Version, Source: rec.Source, Author: rec.Author})
	}
	trusted := ""
	if first != nil {
		trusted = revisionOf(first)
	}
	if n := len(recs); first != nil && n > 0 && isEarlierStart(recs[n-1], source, trusted) {
		// Nobody changed the policy since an earlier binary (or
		// configuration) started its own: this one's starting version
		// replaces it, the earlier one stays in the rollback history.
		r.logger.Info("the stored policy is an earlier "+source+" policy, never changed since; this one starts",
			"stored", short(recs[n-1].Version), "version", short(trusted))
		r.rebuildHistory(ctx, recs, trusted)
		if b, err := r.storedBundle(ctx, recs[n-1], trusted); err == nil {
			r.pushHistory(b, recs[n-1].Source)
		}
		return r.startFirst(ctx, first, source)
	}
	for i := len(recs) - 1; i >= 0; i-- {
		rec := recs[i]
		b, err := r.storedBundle(ctx, rec, trusted)
		var v *version
		if err == nil {
			v, err = r.load(ctx, b, rec.Source, nil)
		}
		if err != nil {
			r.record(ctx, Event{Kind: "rejected", Version: rec.Version, Source: rec.Source, Author: rec.Author, Error: err.Error()})
			r.logger.Error("stored policy version not activated; trying the one before it",
				"version", short(rec.Version), "source", rec.Source, "stored_at", rec.At, "err", err)
			continue
		}
		v.info.Author = rec.Author
		r.rebuildHistory(ctx, recs[:i+1], trusted)
		if rec.Version != trusted {
			r.headAt = rec.At
		}
		r.swapNoHistory(ctx, v, "restored")
		return v.info, nil
	}
	if first == nil {
		return Info{}, ErrNoPolicy
	}
	if len(recs) > 0 {
		r.logger.Error("no stored policy version could be activated; the "+source+" policy starts", "stored", len(recs))
	}
	return r.startFirst(ctx, first, source)
}

// isEarlierStart tells whether rec is the starting version of an earlier
// run (the same source, nobody's change) other than this one's.
func isEarlierStart(rec Record, source, trusted string) bool {
	return rec.Kind == "activated" && rec.Source == source && rec.Author == "" && rec.Version != trusted
}

// startFirst activates first, trusted as built in, and stores it. Callers
// hold r.mu.
func (r *Registry) startFirst(ctx context.Context, first *rego.Bundle, source string) (Info, error) {
	v, err := r.load(ctx, first, source, nil)
	if err != nil {
		return Info{}, err
	}
	if err := r.persist(ctx, v, "activated"); err != nil {
		_ = v.policy.Close(ctx)
		return Info{}, err
	}
	r.headAt = time.Time{} // the built-in first version yields to any dropped bundle
	r.swapNoHistory(ctx, v, "activated")
	return v.info, nil
}

// storedBundle reads rec's bundle and, unless it is the trusted revision,
// verifies it when signatures are required. Callers hold r.mu.
func (r *Registry) storedBundle(ctx context.Context, rec Record, trusted string) (*rego.Bundle, error) {
	raw, err := r.store.Bundle(ctx, rec.Seq)
	if err != nil {
		return nil, fmt.Errorf("read stored bundle %d: %w", rec.Seq, err)
	}
	b, err := rego.ReadTarGz(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("%w: stored bundle %d: %w", ErrValidation, rec.Seq, err)
	}
	if rec.Version == trusted && revisionOf(b) == trusted {
		return b, nil
	}
	return r.verify(b, rec.Source)
}

// rebuildHistory replays recs (the head last) into the rollback history:
// every activation pushes the version before it, every rollback pops.
// Versions that no longer read or verify are left out. Callers hold r.mu.
func (r *Registry) rebuildHistory(ctx context.Context, recs []Record, trusted string) {
	var stack []int
	head := -1
	for j, rec := range recs {
		if rec.Kind == "rolled_back" {
			if n := len(stack); n > 0 {
				stack = stack[:n-1]
			}
		} else if head >= 0 {
			stack = append(stack, head)
		}
		head = j
	}
	if len(stack) > historyDepth {
		stack = stack[len(stack)-historyDepth:]
	}
	r.history, r.sources = nil, nil
	for _, j := range stack {
		b, err := r.storedBundle(ctx, recs[j], trusted)
		if err != nil {
			r.logger.Warn("stored policy version left out of the rollback history", "version", short(recs[j].Version), "err", err)
			continue
		}
		r.history = append(r.history, b)
		r.sources = append(r.sources, recs[j].Source)
	}
}
