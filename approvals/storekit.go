package approvals

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// What every Store does the same way, so the backends differ only in
// where they keep approvals.

// ErrNotExpired is what ExpireChange refuses with: the approval's time has
// not run out (its expiry moved since it was found).
var ErrNotExpired = errors.New("approval has not expired")

// maxIDLen bounds an id a store accepts (ours are 30 bytes).
const maxIDLen = 128

// CheckNew checks an approval given to Store.Create and sets what a new
// one has: status Pending (an empty status is taken as Pending, any other
// is refused) and Rev 1. It needs an id, a client, a binding, a creation
// time after 1970 and an expiry.
func CheckNew(a *Approval) error {
	switch {
	case a.ID == "" || len(a.ID) > maxIDLen:
		return fmt.Errorf("approval id %q: empty or longer than %d bytes", a.ID, maxIDLen)
	case a.ClientID == "":
		return fmt.Errorf("approval %s: no client", a.ID)
	case a.Binding == "":
		return fmt.Errorf("approval %s: no binding", a.ID)
	case a.Status != "" && a.Status != Pending:
		return fmt.Errorf("approval %s: a new approval is pending, not %s", a.ID, a.Status)
	case a.CreatedAt.UnixMicro() <= 0:
		return fmt.Errorf("approval %s: no creation time", a.ID)
	case a.ExpiresAt.IsZero():
		return fmt.Errorf("approval %s: no expiry", a.ID)
	}
	a.Status, a.Rev = Pending, 1
	return nil
}

// Clone returns a copy of a sharing no memory with it.
func (a Approval) Clone() Approval {
	c := a
	c.Approvers.Groups = slices.Clone(a.Approvers.Groups)
	c.Approvers.Not = slices.Clone(a.Approvers.Not)
	c.Args = slices.Clone(a.Args)
	if a.Approver != nil {
		p := *a.Approver
		p.Roles, p.Groups = slices.Clone(a.Approver.Roles), slices.Clone(a.Approver.Groups)
		c.Approver = &p
	}
	return c
}

// ApplyChange is the part of Store.Transition after the status check:
// change edits a copy of was; the result must keep was's ID, Binding,
// ClientID and Subject (the stores count open approvals by client and
// person), have a valid status, and not reopen a closed approval. Rev
// becomes was.Rev+1 and, when the new status is final, ClosedAt is set
// (to now, if change left it unset) and Args are dropped. An error from
// change is returned wrapped.
func ApplyChange(was Approval, change func(*Approval) error, now time.Time) (Approval, error) {
	a := was.Clone()
	if err := change(&a); err != nil {
		return Approval{}, fmt.Errorf("change refused: %w", err)
	}
	switch {
	case a.ID != was.ID || a.Binding != was.Binding || a.ClientID != was.ClientID || a.Subject != was.Subject:
		return Approval{}, errors.New("a transition may not change an approval's id, binding, client or person")
	case !a.Status.Valid():
		return Approval{}, fmt.Errorf("unknown status %q", a.Status)
	case !was.Status.Open() && a.Status.Open():
		return Approval{}, fmt.Errorf("a %s approval cannot become %s again", was.Status, a.Status)
	}
	a.Rev = was.Rev + 1
	if !a.Status.Open() {
		if a.ClosedAt.IsZero() {
			a.ClosedAt = now.UTC()
		}
		a.Args = nil
	}
	return a, nil
}

// ExpireChange is the change Store.Expire makes to an open approval: it
// expires at now unless its ExpiresAt is after now (ErrNotExpired).
func ExpireChange(now time.Time) func(*Approval) error {
	return func(a *Approval) error {
		if a.ExpiresAt.After(now) {
			return ErrNotExpired
		}
		why := "not decided in time"
		if a.Status == Granted {
			why = "granted but not used in time"
		}
		a.Status, a.ClosedAt, a.Why = Expired, now.UTC(), why
		return nil
	}
}
