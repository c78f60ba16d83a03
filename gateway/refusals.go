package gateway

import (
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/pbac-gateway/pbac/audit"
)

// Requests refused before anyone is known — a missing, inactive or foreign
// token, a foreign Origin — are audited at a bounded cost: a flood of bad
// tokens must not write faster than the trail of decisions does (one
// record per request), nor let whoever sends it fill the disk.
//
// Aggregation, not sampling: per window (Config.RefusalWindow, default one
// minute) the first refusal of each kind (reason, backend, address) is
// recorded at once, with its time and request id, so a single failure is
// seen as it happens; the window's further refusals of that kind become
// one record with their count when the window ends. At most
// maxRefusalKinds kinds are tracked per window; refusals of further kinds
// are counted in one record per reason ("many addresses"). So a window
// writes at most 2 × maxRefusalKinds + one per reason records, whatever
// the rate — 513 a minute at most with the defaults, against one per
// request for decisions — and every refusal is counted in some record.
// Sampling would have written less under a flood but lost the addresses
// and counts an operator looks for.

// DefaultRefusalWindow is how long refusals of one kind are summed into one
// audit record when Config.RefusalWindow is not set.
const DefaultRefusalWindow = time.Minute

// maxRefusalKinds bounds the (reason, backend, address) kinds tracked in
// one window.
const maxRefusalKinds = 256

// RefusedClientID is the client_id of an audited refusal: no client is known.
const RefusedClientID = "(unauthenticated)"

type refusalKind struct {
	reason, backend, remote string
}

type refusalTally struct {
	status      int
	method      string // HTTP method of the first refusal
	desc        string
	first, last time.Time
	more        int // refusals after the first, this window
}

// refusals aggregates refused requests into audit records (see above).
type refusals struct {
	emit   func(audit.Record)
	window time.Duration

	mu       sync.Mutex
	kinds    map[refusalKind]*refusalTally
	overflow map[string]*refusalTally // by reason
}

func newRefusals(window time.Duration, emit func(audit.Record)) *refusals {
	if window <= 0 {
		window = DefaultRefusalWindow
	}
	return &refusals{emit: emit, window: window, kinds: map[refusalKind]*refusalTally{}, overflow: map[string]*refusalTally{}}
}

// note records one refusal: at once when it is the first of its kind this
// window, else in the window's count.
func (r *refusals) note(now time.Time, rid, reason, desc, backend, remote, method string, status int) {
	k := refusalKind{reason: reason, backend: backend, remote: remote}
	r.mu.Lock()
	if t, ok := r.kinds[k]; ok {
		t.more++
		t.last = now
		r.mu.Unlock()
		return
	}
	if len(r.kinds) >= maxRefusalKinds {
		t, ok := r.overflow[reason]
		if !ok {
			t = &refusalTally{status: status, method: method, desc: desc, first: now}
			r.overflow[reason] = t
			t.more-- // the first is counted like the others
		}
		t.more++
		t.last = now
		r.mu.Unlock()
		return
	}
	r.kinds[k] = &refusalTally{status: status, method: method, desc: desc, first: now, last: now}
	r.mu.Unlock()
	r.emit(audit.Record{
		Time: now.UTC(), RequestID: rid, ClientID: RefusedClientID, Backend: backend, Method: method,
		Decision: audit.DecisionDeny, Status: status, Reasons: []string{reason + ": " + desc}, Remote: remote, Count: 1,
	})
}

// flush ends the window: one record per kind that was refused again, and
// one per reason for the kinds beyond maxRefusalKinds.
func (r *refusals) flush(now time.Time) {
	r.mu.Lock()
	kinds, overflow := r.kinds, r.overflow
	r.kinds, r.overflow = map[refusalKind]*refusalTally{}, map[string]*refusalTally{}
	r.mu.Unlock()
	for k, t := range kinds {
		if t.more == 0 {
			continue
		}
		r.emit(audit.Record{
			Time: now.UTC(), RequestID: newID(), ClientID: RefusedClientID, Backend: k.backend, Method: t.method,
			Decision: audit.DecisionDeny, Status: t.status, Remote: k.remote, Count: t.more,
			Reasons: []string{k.reason + ": " + t.desc, fmt.Sprintf("%d more like this from %s between %s and %s",
				t.more, k.remote, t.first.UTC().Format(time.RFC3339), t.last.UTC().Format(time.RFC3339))},
		})
	}
	for reason, t := range overflow {
		n := t.more + 1
		r.emit(audit.Record{
			Time: now.UTC(), RequestID: newID(), ClientID: RefusedClientID, Method: t.method,
			Decision: audit.DecisionDeny, Status: t.status, Remote: "(many addresses)", Count: n,
			Reasons: []string{reason + ": " + t.desc, fmt.Sprintf("%d refusals from addresses beyond the %d tracked per window, between %s and %s",
				n, maxRefusalKinds, t.first.UTC().Format(time.RFC3339), t.last.UTC().Format(time.RFC3339))},
		})
	}
}

// run flushes every window until stop, then once more.
func (r *refusals) run(stop <-chan struct{}) {
	t := time.NewTicker(r.window)
	defer t.Stop()
	for {
		select {
		case <-stop:
			r.flush(time.Now())
			return
		case now := <-t.C:
			r.flush(now)
		}
	}
}

// refusalReason is the audit reason of a 401: the OAuth error code, or
// token_required when none was presented.
func refusalReason(errCode string) string {
	if errCode == "" {
		return "token_required"
	}
	return strings.ToLower(errCode)
}
