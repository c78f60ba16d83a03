package approvals

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/pbac-gateway/pbac/contract"
)

// Status is where an approval is in its life:
//
//	pending ─► granted ─► used
//	   │          └─────► expired | void
//	   ├─► denied
//	   └─► expired | void | withdrawn
//
// Only pending and granted are open; every other status is final.
type Status string

// The statuses of an approval.
const (
	// Pending: asked for, nobody has decided yet.
	Pending Status = "pending"
	// Granted: an eligible approver allowed the call; the client's retry
	// may use it once.
	Granted Status = "granted"
	// Denied: an eligible approver refused the call.
	Denied Status = "denied"
	// Used: a retry was allowed with it and forwarded; it never allows
	// another call.
	Used Status = "used"
	// Expired: its time ran out before it was used.
	Expired Status = "expired"
	// Void: the policy that asked for it was replaced by one that does not
	// ask for it the same way (the call was decided again).
	Void Status = "void"
	// Withdrawn: the requester declined or cancelled in the client.
	Withdrawn Status = "withdrawn"
)

// Open reports whether s can still change (pending or granted).
func (s Status) Open() bool { return s == Pending || s == Granted }

// Valid reports whether s is one of the statuses above.
func (s Status) Valid() bool {
	switch s {
	case Pending, Granted, Denied, Used, Expired, Void, Withdrawn:
		return true
	}
	return false
}

// Statuses lists every status, open ones first.
func Statuses() []Status {
	return []Status{Pending, Granted, Denied, Used, Expired, Void, Withdrawn}
}

// Channels through which an approver decides (contract.GrantedApproval.Via).
const (
	ViaDashboard = "dashboard"
	ViaLink      = "link"
	ViaAdmin     = "admin"
	ViaClient    = "client"
)

// Person is someone who decides an approval, with their roles (as the
// policy's identity.group_roles maps their groups) and identity-source
// groups at the moment they decide.
type Person struct {
	Sub    string   `json:"sub"`
	Roles  []string `json:"roles,omitempty"`
	Groups []string `json:"groups,omitempty"`
}

// Approval is one held tool call and what became of it.
type Approval struct {
	ID     string `json:"id"`
	Status Status `json:"status"`
	// Rev grows by one with every change; a store refuses nothing on it,
	// it lets readers tell versions apart.
	Rev uint64 `json:"rev"`

	// What policy asked for (the pbac/tool_call result's approval) and
	// the policy version that asked.
	Rule          string             `json:"rule"`
	Reason        string             `json:"reason"`
	Approvers     contract.Approvers `json:"approvers"`
	PolicyVersion string             `json:"policy_version"`

	// The call: who asked, for whom, which tool, and the digest of its
	// exact arguments ("sha256:<hex>", as the audit trail's args_digest,
	// so one call's records match). Binding identifies the call
	// (Call.Binding); Args are the arguments, shown to approvers, and
	// dropped once the approval is closed.
	RequestID     string          `json:"request_id"`
	ClientID      string          `json:"client_id"`
	AgentProvider string          `json:"agent_provider,omitempty"`
	Tier          string          `json:"tier,omitempty"`
	Subject       string          `json:"sub,omitempty"`
	Backend       string          `json:"backend,omitempty"`
	Tool          string          `json:"tool"`
	ArgsDigest    string          `json:"args_digest"`
	Binding       string          `json:"binding"`
	Args          json.RawMessage `json:"args,omitempty"`

	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`

	// The decision, once made.
	Approver  *Person   `json:"approver,omitempty"`
	Via       string    `json:"via,omitempty"`
	Comment   string    `json:"comment,omitempty"`
	DecidedAt time.Time `json:"decided_at,omitzero"`
	// ClosedAt is when it reached a final status, and Why says why for
	// expired, void and withdrawn.
	ClosedAt time.Time `json:"closed_at,omitzero"`
	Why      string    `json:"why,omitempty"`
}

// Granted returns the approval as policy sees it on the retry
// (contract.Input.Approval). Only a granted approval is presented.
func (a Approval) Granted() *contract.GrantedApproval {
	if a.Status != Granted || a.Approver == nil {
		return nil
	}
	return &contract.GrantedApproval{
		ID: a.ID, Rule: a.Rule, Granted: true,
		Approver: contract.ApprovalPerson{Sub: a.Approver.Sub, Roles: nonNil(a.Approver.Roles), Groups: nonNil(a.Approver.Groups)},
		Via:      a.Via, GrantedAt: a.DecidedAt.Unix(),
	}
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Binding identifies a call for the channels that carry no requestState
// (URL elicitation on 2025-11-25, the plain error): the same client, for
// the same person, calling the same tool with the same argument bytes.
func (c Call) Binding() string {
	return "b1:" + sha256Hex(c.ClientID, c.Subject, c.Digest())
}

// Limits on what a store keeps.
const (
	// MaxArgsLen bounds the arguments of a call that may be held: an
	// approver sees every byte of what they approve, so a call with longer
	// arguments is not asked for (the gateway's default argument limit is
	// the same 256 KiB).
	MaxArgsLen = 256 << 10
	// DeniedCooldown is how long after an approver denied a call the same
	// call is refused rather than asked for again.
	DeniedCooldown = 5 * time.Minute
	// MaxCommentLen bounds an approver's comment, in bytes.
	MaxCommentLen = 1024
	// MaxOpenPerClient bounds the open approvals of one agent: one client
	// acting for one person (Subject; none for a machine). Asking for more
	// is refused (the call is denied) until some close. It is per person
	// because one client id may serve many people (a client id metadata
	// document's URL is one client for a whole organisation), and one of
	// them must not use up everybody's approvals.
	MaxOpenPerClient = 20
	// MaxTTL is the longest an approval stays open, whatever policy asks.
	MaxTTL = 24 * time.Hour
	// DefaultTTL is used when policy asks for none (ttl_seconds 0).
	DefaultTTL = 15 * time.Minute
)

// Store errors callers branch on.
var (
	// ErrNotFound: no approval with that id (or none open for a binding).
	ErrNotFound = errors.New("no such approval")
	// ErrExists: an approval with that id is already stored.
	ErrExists = errors.New("approval already exists")
	// ErrStatus: the approval is not in a status the change needs (a
	// Transition lost a race, or the approval was already decided).
	ErrStatus = errors.New("approval is not in that status")
)

// Filter selects approvals to list; zero fields select everything.
type Filter struct {
	Statuses []Status
	ClientID string
	Binding  string
	// Limit bounds the answer (newest first); 0 means DefaultListLimit.
	Limit int
}

// DefaultListLimit and MaxListLimit bound List.
const (
	DefaultListLimit = 100
	MaxListLimit     = 1000
)

// Match reports whether a is selected by f (ignoring Limit).
func (f Filter) Match(a Approval) bool {
	if len(f.Statuses) > 0 {
		ok := false
		for _, s := range f.Statuses {
			ok = ok || a.Status == s
		}
		if !ok {
			return false
		}
	}
	return (f.ClientID == "" || a.ClientID == f.ClientID) && (f.Binding == "" || a.Binding == f.Binding)
}

// EffectiveLimit returns the limit List applies for f.
func (f Filter) EffectiveLimit() int {
	switch {
	case f.Limit <= 0:
		return DefaultListLimit
	case f.Limit > MaxListLimit:
		return MaxListLimit
	}
	return f.Limit
}

// Store keeps approvals. Every method is safe for concurrent use, and
// every change goes through Transition, the one compare-and-set: of
// concurrent transitions from the same status exactly one succeeds.
type Store interface {
	// Create stores a new approval (status Pending, Rev 1); ErrExists if
	// the id is taken.
	Create(ctx context.Context, a Approval) error
	// Get returns the approval, or ErrNotFound.
	Get(ctx context.Context, id string) (Approval, error)
	// List returns the approvals f selects, newest (CreatedAt) first,
	// at most f.EffectiveLimit().
	List(ctx context.Context, f Filter) ([]Approval, error)
	// CountOpen counts the open (pending or granted) approvals that
	// client clientID asked for on behalf of subject ("": of no person),
	// the bound Service.Ask applies; or every open approval when clientID
	// is empty.
	CountOpen(ctx context.Context, clientID, subject string) (int, error)
	// Transition changes the approval id when its status is one of from:
	// change gets it as stored and edits it in place (its ID, Binding,
	// ClientID and Subject cannot change, the status must be valid, and a closed
	// approval never opens again: each an error); the store bumps Rev
	// and, when the new status is final, sets ClosedAt (if unset) and
	// drops Args (ApplyChange). ErrStatus when the status is not in from,
	// ErrNotFound when there is no such approval; an error from change is
	// returned wrapped and nothing is stored. It returns the approval as
	// stored, also with ErrStatus (so the caller sees the status that
	// refused the change) and with change's error. Args are kept byte for
	// byte.
	Transition(ctx context.Context, id string, from []Status, change func(*Approval) error) (Approval, error)
	// Expire moves every open approval whose ExpiresAt is not after now
	// to Expired, and returns them as stored.
	Expire(ctx context.Context, now time.Time) ([]Approval, error)
	// Prune deletes the closed approvals whose ClosedAt is before
	// closedBefore and returns how many it deleted. Open approvals are
	// never pruned.
	Prune(ctx context.Context, closedBefore time.Time) (int, error)
	// Close releases the store.
	Close() error
}

// newID returns "apr_" and 128 random bits in lower-case base32.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	return "apr_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// ValidID reports whether id could have been made by this package: the
// prefix and 26 base32 characters. Ids from outside are checked with it
// before any store sees them.
func ValidID(id string) bool {
	if len(id) != 4+26 || !strings.HasPrefix(id, "apr_") {
		return false
	}
	for _, c := range id[4:] {
		if (c < 'a' || c > 'z') && (c < '2' || c > '7') {
			return false
		}
	}
	return true
}

// sha256Hex is the hex SHA-256 of parts, each followed by a NUL byte.
func sha256Hex(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil))
}
