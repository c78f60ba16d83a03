// Package dashboard is the dashboard: a single page embedded in the binary (no CDN,
// works offline) and the JSON API behind it (API.md). It is served on the
// admin listener, beside the admin API: onboarding, the narrative demo, the
// live audit trail, the trust-tier matrix computed from the active policy,
// policy versions (activate, roll back, shadow) and the gateway's latency.
package dashboard

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/pbac-gateway/pbac/admin"
	"github.com/pbac-gateway/pbac/approvals"
	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/asrv/signin"
	"github.com/pbac-gateway/pbac/audit"
	"github.com/pbac-gateway/pbac/audit/index"
	"github.com/pbac-gateway/pbac/connect"
	"github.com/pbac-gateway/pbac/demo"
	"github.com/pbac-gateway/pbac/gateway"
	"github.com/pbac-gateway/pbac/identity"
	"github.com/pbac-gateway/pbac/plugins"
	tdstore "github.com/pbac-gateway/pbac/tooldefs/store"
)

//go:embed static
var static embed.FS

// Clients is the authorization server's client registry, as the dashboard
// uses it.
type Clients interface {
	Clients(ctx context.Context) ([]*asrv.Client, error)
	DeleteClient(ctx context.Context, id string) error
}

// Config configures the dashboard.
type Config struct {
	// GatewayURL is the gateway's public base URL (MCP at GatewayURL/mcp).
	GatewayURL string
	// Issuer is the authorization server's issuer URL.
	Issuer   string
	Backends []string
	Registry *plugins.Registry
	Audit    *audit.Trail
	Index    *index.Index
	// Users signs people in (the authorization server's user source); nil
	// leaves only the admin token.
	Users asrv.UserSource
	// SSO signs people in at the organisation's identity provider, whose
	// redirect URI for the dashboard is <admin base>/oauth2/idp/callback
	// (the admin listener routes it here). Nil: none.
	SSO identity.RedirectSource
	// SignIn throttles and audits sign-in attempts: share the
	// authorization server's. Nil: a guard of the dashboard's own.
	SignIn *signin.Guard
	// AdminToken signs an operator in.
	AdminToken string
	// Clients lists and revokes agents; nil hides them.
	Clients Clients
	// ListClients lists the registered clients with their review status,
	// and ReviewClient records an operator's review (the admin API's
	// hooks); nil hides the review of pending agents.
	ListClients  func(r *http.Request) ([]admin.Client, error)
	ReviewClient func(r *http.Request, id string, d admin.ClientDecision) (admin.Client, error)
	// RevokePerson revokes everything acting for a person (the admin
	// API's); nil hides it.
	RevokePerson func(r *http.Request, sub string) (admin.PersonRevocation, error)
	// Tools are the tool definitions the gateway records from the
	// backends' tools/list answers, for the operator's review (the admin
	// API's); nil hides it.
	Tools *tdstore.Store
	// Approvals are the tool calls policy held for a person's approval:
	// the Approvals view lists them and its signed-in people decide them;
	// nil hides it. The gateway's approval link is this dashboard's
	// <public base>/ui/approvals/{id} (approvals.Config.PageURL).
	Approvals *approvals.Service
	// Latency reports the gateway's per-stage latency.
	Latency func() gateway.LatencyReport
	// Demo is the demo tenant; nil outside it.
	Demo *Demo
	// DemoOperators lets every user signed in to the demo tenant operate it
	// (policy data, bundles, agents). Set it only when the dashboard is
	// reachable from this machine alone (a loopback admin listener);
	// otherwise only the admin token operates.
	DemoOperators bool
	// Propagate, when set, hands a policy change made here to the other
	// replicas and waits until every live one runs it (as the admin API's).
	Propagate func(ctx context.Context) (report any, complete bool, err error)
	Logger    *slog.Logger
}

// Demo is what the demo tenant adds: its users, its seeded agents, agent
// registration with the tenant's statement key, and the scenario runner.
type Demo struct {
	Users    []asrv.User
	Password string
	// Agents returns the seeded agents with their credentials.
	Agents func() []SeededAgent
	// Sign signs a software statement with the demo tenant's key.
	Sign func(asrv.StatementClaims) (string, error)
	// Register registers a client (RFC 7591, in process).
	Register func(ctx context.Context, req *asrv.RegistrationRequest) (*asrv.Client, string, error)
	Runner   *demo.Runner
}

// SeededAgent is one of the demo tenant's pre-registered agents.
type SeededAgent struct {
	Name, ClientID, ClientSecret string
}

// Handler serves the dashboard under /ui/.
type Handler struct {
	cfg       Config
	mux       *http.ServeMux
	sessions  *sessions
	scenarios []demo.Scenario

	// secrets of machine agents registered from the dashboard in this
	// process, so that the demo can run them (never stored, never shown
	// again).
	mu      sync.Mutex
	secrets map[string]string
	// ssoSeal seals the single sign-ons under way into their cookies;
	// ssoSpent are the completed ones' states, until they expire.
	ssoSeal  *identity.SignInSeal
	ssoSpent map[string]time.Time

	signIn     *signin.Guard
	forms      *signin.Forms
	spentForms *signin.MemorySpender // the forms' spender, spent per address

	tools     *admin.ToolReview   // nil without Config.Tools
	approvals *admin.ApprovalDesk // nil without Config.Approvals
}

// New builds the dashboard.
func New(cfg Config) (*Handler, error) {
	if cfg.Registry == nil {
		return nil, errors.New("dashboard: the dashboard needs the policy registry")
	}
	if len(cfg.AdminToken) < 16 {
		return nil, errors.New("dashboard: the admin token must be at least 16 characters")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.SignIn == nil {
		cfg.SignIn = signin.New(signin.Config{Logger: cfg.Logger})
	}
	forms, spentForms, err := newSignInForms()
	if err != nil {
		return nil, err
	}
	seal, err := newSSOSeal()
	if err != nil {
		return nil, fmt.Errorf("dashboard: the single sign-on key: %w", err)
	}
	h := &Handler{cfg: cfg, mux: http.NewServeMux(), sessions: newSessions(), secrets: map[string]string{},
		ssoSeal: seal, ssoSpent: map[string]time.Time{}, signIn: cfg.SignIn, forms: forms, spentForms: spentForms}
	if cfg.Tools != nil {
		h.tools = &admin.ToolReview{Tools: cfg.Tools, Registry: cfg.Registry, Audit: cfg.Audit}
	}
	if cfg.Approvals != nil {
		h.approvals = &admin.ApprovalDesk{Service: cfg.Approvals, Registry: cfg.Registry}
	}
	if cfg.Demo != nil {
		sc, err := demo.Scenarios()
		if err != nil {
			return nil, err
		}
		h.scenarios = sc
	}
	assets, err := fs.Sub(static, "static")
	if err != nil {
		return nil, err
	}
	files := http.StripPrefix("/ui/", http.FileServerFS(assets))
	h.mux.HandleFunc("/ui/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			writeError(w, http.StatusMethodNotAllowed, "the dashboard's pages are read-only")
			return
		}
		files.ServeHTTP(w, r)
	})
	h.mux.HandleFunc("GET /ui", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/ui/", http.StatusFound)
	})

	h.mux.HandleFunc("GET /ui/approvals/{id}", h.approvalLink)
	h.mux.HandleFunc("GET /ui/api/config", h.config)
	h.mux.HandleFunc("GET /ui/api/session/form", h.signInForm)
	h.mux.HandleFunc("POST /ui/api/session", h.signInHandler)
	h.mux.HandleFunc("GET /ui/api/session/sso", h.startSSO)
	h.mux.HandleFunc("GET "+identity.CallbackPath, h.finishSSO)
	h.mux.HandleFunc("GET /ui/api/session", h.signedIn(h.session))
	h.mux.HandleFunc("DELETE /ui/api/session", h.signedIn(h.signOut))
	h.mux.HandleFunc("GET /ui/api/agents", h.signedIn(h.agents))
	h.mux.HandleFunc("POST /ui/api/agents", h.operator(h.registerAgent))
	h.mux.HandleFunc("DELETE /ui/api/agents/{id}", h.operator(h.deleteAgent))
	h.mux.HandleFunc("GET /ui/api/agents/review", h.operator(h.clientsForReview))
	h.mux.HandleFunc("POST /ui/api/agents/{id}/approve", h.operator(h.reviewAgent(true)))
	h.mux.HandleFunc("POST /ui/api/agents/{id}/reject", h.operator(h.reviewAgent(false)))
	h.mux.HandleFunc("GET /ui/api/tools", h.operator(h.listTools))
	h.mux.HandleFunc("POST /ui/api/tools/{tool}/{action}", h.operator(h.reviewTool))
	h.mux.HandleFunc("POST /ui/api/people/{sub}/revoke", h.operator(h.revokePerson))
	h.mux.HandleFunc("GET /ui/api/approvals", h.signedIn(h.listApprovals))
	h.mux.HandleFunc("GET /ui/api/approvals/{id}", h.signedIn(h.getApproval))
	h.mux.HandleFunc("POST /ui/api/approvals/{id}/approve", h.signedIn(h.decideApproval(true)))
	h.mux.HandleFunc("POST /ui/api/approvals/{id}/deny", h.signedIn(h.decideApproval(false)))
	h.mux.HandleFunc("GET /ui/api/matrix", h.signedIn(h.matrix))
	h.mux.HandleFunc("GET /ui/api/policy", h.reader(h.policy))
	h.mux.HandleFunc("PUT /ui/api/policy/data", h.operator(h.setData))
	h.mux.HandleFunc("POST /ui/api/policy/bundles", h.operator(h.uploadBundle))
	h.mux.HandleFunc("POST /ui/api/policy/rollback", h.operator(h.rollback))
	h.mux.HandleFunc("DELETE /ui/api/policy/shadow", h.operator(h.clearShadow))
	h.mux.HandleFunc("GET /ui/api/audit", h.signedIn(h.queryAudit))
	if cfg.Audit != nil {
		sse := audit.SSEHandler(cfg.Audit)
		h.mux.HandleFunc("GET /ui/api/audit/stream", h.signedIn(func(w http.ResponseWriter, r *http.Request, s *session) {
			if sub, only := h.ownRecordsOnly(s); only {
				// Built for this request: the stream of this person's records.
				audit.SSEHandler(cfg.Audit, audit.WithSSESubject(sub)).ServeHTTP(w, r)
				return
			}
			sse.ServeHTTP(w, r)
		}))
	}
	h.mux.HandleFunc("GET /ui/api/latency", h.signedIn(h.latency))
	h.mux.HandleFunc("GET /ui/api/scenarios", h.signedIn(h.listScenarios))
	h.mux.HandleFunc("POST /ui/api/scenarios/{id}/run", h.signedIn(h.runScenario))
	h.mux.HandleFunc("/ui/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such dashboard endpoint: "+r.Method+" "+r.URL.Path)
	})
	return h, nil
}

// contentSecurityPolicy allows the page's own scripts, styles and API only.
const contentSecurityPolicy = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	hd.Set("Content-Security-Policy", contentSecurityPolicy)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("X-Frame-Options", "DENY")
	hd.Set("Referrer-Policy", "no-referrer")
	if strings.HasPrefix(r.URL.Path, "/ui/api/") {
		hd.Set("Cache-Control", "no-store")
	} else {
		hd.Set("Cache-Control", "no-cache")
	}
	sw := &statusWriter{ResponseWriter: w}
	h.mux.ServeHTTP(sw, r)
	if sw.status >= 500 {
		// The answer's body says why in short; the log keeps which request.
		h.cfg.Logger.Warn("dashboard: a request failed", "method", r.Method, "path", r.URL.Path, "status", sw.status)
	}
}

// statusWriter remembers the status a handler answered with.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.NewResponseController reach the connection's writer
// (flushes and deadlines of the streams).
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// maxJSONBody bounds a JSON request body; a policy bundle has its own.
const (
	maxJSONBody     = 1 << 20
	maxBundleUpload = 64 << 20
)

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

// decodeBody reads a JSON object into v, strictly.
func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxJSONBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON object")
	}
	return nil
}

type userView struct {
	Sub   string   `json:"sub"`
	Name  string   `json:"name"`
	Roles []string `json:"roles"`
	// Groups are the person's groups at their identity source (the users
	// file), which policy data maps to roles; absent for the demo users.
	Groups []string `json:"groups,omitempty"`
}

func viewUser(u asrv.User) userView {
	roles := u.Roles
	if roles == nil {
		roles = []string{}
	}
	return userView{Sub: u.Subject, Name: u.Name, Roles: roles, Groups: u.Groups}
}

func (h *Handler) config(w http.ResponseWriter, _ *http.Request) {
	type backend struct {
		Name   string `json:"name"`
		MCPURL string `json:"mcp_url"`
	}
	out := map[string]any{
		"gateway_url": h.cfg.GatewayURL, "mcp_url": h.cfg.GatewayURL + "/mcp", "issuer": h.cfg.Issuer,
		"demo": h.cfg.Demo != nil, "sign_in_users": h.cfg.Users != nil, "revoke_people": h.cfg.RevokePerson != nil,
		"review_agents": h.cfg.ReviewClient != nil && h.cfg.ListClients != nil, "review_tools": h.tools != nil,
		"approvals": h.approvals != nil,
	}
	bs := []backend{}
	for _, b := range h.cfg.Backends {
		bs = append(bs, backend{Name: b, MCPURL: h.cfg.GatewayURL + "/mcp/" + b})
	}
	out["backends"] = bs
	// The client presets of agent registration: their redirect URIs and a
	// preview of their snippet (the agent's client id once registered).
	type preset struct {
		connect.Client
		Preview string `json:"preview"`
	}
	presets := []preset{}
	for _, c := range connect.Clients() {
		presets = append(presets, preset{Client: c, Preview: c.Snippet(connect.Target{MCPURL: h.cfg.GatewayURL + "/mcp", ClientID: "<client id>"})})
	}
	out["clients"] = presets
	if d := h.cfg.Demo; d != nil {
		users := []userView{}
		for _, u := range d.Users {
			users = append(users, viewUser(u))
		}
		out["users"], out["demo_password"] = users, d.Password
	}
	writeJSON(w, http.StatusOK, out)
}

// --- sessions ---

const (
	sessionCookie  = "pbac_ui"
	sessionIdle    = 8 * time.Hour
	sessionMaxAge  = 24 * time.Hour
	csrfHeader     = "X-PBAC-CSRF"
	sessionIDBytes = 32
	// maxSessionsPerPerson bounds one person's sessions (a browser each;
	// the admin token's count as one person's), maxSessions everyone's
	// (sessions.create says what happens at each bound).
	maxSessionsPerPerson = 16
	maxSessions          = 1024
)

// errSessionsFull: maxSessions are held and none may be ended for a new one.
var errSessionsFull = errors.New("too many people are signed in to the dashboard")

type session struct {
	user *asrv.User
	// byPassword: the person signed in with a password of Config.Users,
	// which is asked about them again at each request (signedIn), so that
	// user is the person as it knows them now. A person of single sign-on
	// keeps the groups of their sign-in: the provider cannot be asked
	// without them.
	byPassword bool
	// operator: signed in with the admin token, or a demo user of a
	// loopback demo tenant. A person may also operate by their groups
	// (isOperator), decided at each request.
	operator bool
	csrf     string
	created  time.Time
	lastSeen time.Time
}

// sessions are held in memory, keyed by the SHA-256 of the cookie value.
type sessions struct {
	mu sync.Mutex
	m  map[[32]byte]*session
}

func newSessions() *sessions { return &sessions{m: map[[32]byte]*session{}} }

// create keeps sess and returns its cookie value, or errSessionsFull.
//
// Successful sign-ins are not throttled, so the bounds must hold against a
// person who signs in again and again. Evicting the oldest session of all
// at a global cap (as before) let anyone who can sign in sign every
// operator out; refusing at the global cap would let a few accounts keep
// everyone out. So a person beyond maxSessionsPerPerson loses their own
// least recently used session, and nobody else's: one person, however
// often they sign in, holds 16 of the 1,024. Only many people together
// (64 at their cap) fill the table; then a new sign-in ends the least
// recently used session of whoever holds the most, if they hold at least
// two more than the newcomer (shares converge, never swing back and
// forth, as a full stdio bridge's do: RATIONALE.md), and is refused
// otherwise. A flood from a few accounts thus ends only their own
// sessions, and someone with one or two sessions loses one only when
// about a thousand people are signed in at once.
func (s *sessions) create(sess *session) (string, error) {
	id := randomToken(sessionIDBytes)
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	held := map[string]int{}
	for k, v := range s.m {
		if v.expired(now) {
			delete(s.m, k)
			continue
		}
		held[v.holder()]++
	}
	who := sess.holder()
	switch {
	case held[who] >= maxSessionsPerPerson:
		s.endLeastRecent(func(v *session) bool { return v.holder() == who })
	case len(s.m) >= maxSessions:
		most := 0
		for _, n := range held {
			most = max(most, n)
		}
		if most < held[who]+2 {
			return "", errSessionsFull
		}
		s.endLeastRecent(func(v *session) bool { return held[v.holder()] == most })
	}
	sess.created, sess.lastSeen = now, now
	s.m[sha256.Sum256([]byte(id))] = sess
	return id, nil
}

// endLeastRecent ends the least recently used of the sessions that of
// says; the caller holds the lock.
func (s *sessions) endLeastRecent(of func(*session) bool) {
	var victim [32]byte
	var at time.Time
	for k, v := range s.m {
		if of(v) && (at.IsZero() || v.lastSeen.Before(at)) {
			victim, at = k, v.lastSeen
		}
	}
	delete(s.m, victim)
}

// holder is whose the session is, for the bounds of sessions.create: its
// person's subject, or "" for the admin token's sessions, which count
// together.
func (s *session) holder() string {
	if s.user == nil {
		return ""
	}
	return s.user.Subject
}

func (s *session) expired(now time.Time) bool {
	return now.Sub(s.lastSeen) > sessionIdle || now.Sub(s.created) > sessionMaxAge
}

// get returns a copy of the session id, which the request may change (its
// person as looked up now) without touching the one kept.
func (s *sessions) get(id string) (session, bool) {
	key := sha256.Sum256([]byte(id))
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, ok := s.m[key]
	if !ok {
		return session{}, false
	}
	now := time.Now()
	if sess.expired(now) {
		delete(s.m, key)
		return session{}, false
	}
	sess.lastSeen = now
	return *sess, true
}

func (s *sessions) remove(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, sha256.Sum256([]byte(id)))
}

// endPerson ends every session of the person sub, and says how many.
func (s *sessions) endPerson(sub string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k, v := range s.m {
		if v.user != nil && v.user.Subject == sub {
			delete(s.m, k)
			n++
		}
	}
	return n
}

// EndSessions ends the dashboard sessions of the person sub, and says how
// many it ended: the composition calls it when everything acting for the
// person is revoked through the admin API (the dashboard's own revocation
// ends them itself). The person may sign in again, as they may get new
// tokens; a session is one more thing acting for them.
func (h *Handler) EndSessions(sub string) int {
	n := h.sessions.endPerson(sub)
	if n > 0 {
		h.cfg.Logger.Info("dashboard: a revoked person's sessions ended", "sub", sub, "sessions", n)
	}
	return n
}

type sessionHandler func(http.ResponseWriter, *http.Request, *session)

// signedIn requires a session, and the CSRF header on a change.
func (h *Handler) signedIn(next sessionHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie(sessionCookie)
		if err != nil {
			writeError(w, http.StatusUnauthorized, "sign in first")
			return
		}
		sess, ok := h.sessions.get(c.Value)
		if !ok {
			writeError(w, http.StatusUnauthorized, "your session has ended: sign in again")
			return
		}
		if sess.byPassword && !h.lookUpAgain(w, r, c.Value, &sess) {
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if subtle.ConstantTimeCompare([]byte(r.Header.Get(csrfHeader)), []byte(sess.csrf)) != 1 {
				writeError(w, http.StatusForbidden, "missing or wrong "+csrfHeader+" header")
				return
			}
		}
		next(w, r, &sess)
	}
}

// lookUpAgain replaces the person of a password session with the person
// as Config.Users knows them now: a users file is read at each use, as
// the authorization server reads it for every token and the admin API for
// every approver, so a person taken out of an operator or approver group
// loses those rights at their next request, and one removed from the file
// loses the session (401), rather than both lasting as long as the session
// (sessionIdle, sessionMaxAge). False when it answered the request.
func (h *Handler) lookUpAgain(w http.ResponseWriter, r *http.Request, id string, sess *session) bool {
	u, err := h.cfg.Users.Lookup(r.Context(), sess.user.Subject)
	switch {
	case errors.Is(err, asrv.ErrUnknownUser):
		h.sessions.remove(id)
		h.cfg.Logger.Info("dashboard: session ended: its person is no longer known", "sub", sess.user.Subject, "err", err)
		writeError(w, http.StatusUnauthorized, "your session has ended: you are no longer a person who signs in here")
		return false
	case err != nil:
		h.cfg.Logger.Warn("dashboard: the session's person cannot be looked up", "sub", sess.user.Subject, "err", err)
		writeError(w, http.StatusServiceUnavailable, "who you are cannot be checked right now: try again shortly")
		return false
	}
	sess.user = &u
	return true
}

// operator requires a session allowed to change policy and clients.
func (h *Handler) operator(next sessionHandler) http.HandlerFunc {
	return h.signedIn(func(w http.ResponseWriter, r *http.Request, s *session) {
		if !h.isOperator(s) {
			writeError(w, http.StatusForbidden, "only an operator may do this: sign in with the admin token, or as a person of an operator group (identity.operator_groups in the policy data)")
			return
		}
		next(w, r, s)
	})
}

// isOperator tells whether the session may change policy and agents: it
// signed in with the admin token (or as a demo user of a loopback demo
// tenant), or its person is in a group the active policy data names as
// operators (identity.operator_groups), read now, so moving a group there
// applies to the next request. A person whose groups cannot be checked
// (no active policy) does not operate.
func (h *Handler) isOperator(s *session) bool {
	if s.operator {
		return true
	}
	if s.user == nil || len(s.user.Groups) == 0 {
		return false
	}
	d, err := h.activeData()
	if err != nil {
		h.cfg.Logger.Warn("dashboard: the operator groups cannot be read; not an operator", "sub", s.user.Subject, "err", err)
		return false
	}
	return d.People.Operator(s.user.Groups)
}

// restricted tells whether the session sees only what is its person's own:
// outside the demo tenant, a person who does not operate (isOperator, read
// now) sees only their own audit records, the trust-tier matrix of their
// own agents, and not the policy document and data. In the demo tenant
// the users are shared accounts with a published password, so nothing is
// gained by hiding one from another.
func (h *Handler) restricted(s *session) bool {
	return h.cfg.Demo == nil && !h.isOperator(s)
}

// ownRecordsOnly tells whether the session may see only the audit records
// of one subject, and whose: a restricted session's person's (an empty
// subject, a session without a person, sees none).
func (h *Handler) ownRecordsOnly(s *session) (sub string, only bool) {
	if !h.restricted(s) {
		return "", false
	}
	if s.user == nil {
		return "", true
	}
	return s.user.Subject, true
}

// reader requires a session that may read the policy document and data:
// an operator, or anyone in the demo tenant (restricted).
func (h *Handler) reader(next sessionHandler) http.HandlerFunc {
	return h.signedIn(func(w http.ResponseWriter, r *http.Request, s *session) {
		if h.restricted(s) {
			writeError(w, http.StatusForbidden, "only an operator may read the policy: sign in with the admin token, or as a person of an operator group (identity.operator_groups in the policy data)")
			return
		}
		next(w, r, s)
	})
}

// signInHandler signs a browser in. The form is verified before anything
// and spent only by a password attempt the guard admitted (signin.go says
// why).
func (h *Handler) signInHandler(w http.ResponseWriter, r *http.Request) {
	form, ok := h.verifySignInForm(w, r)
	if !ok {
		return
	}
	var in struct {
		Username   string `json:"username"`
		Password   string `json:"password"`
		AdminToken string `json:"admin_token"`
	}
	if err := decodeBody(r, &in); err != nil {
		writeError(w, http.StatusBadRequest, "the body must be {\"username\", \"password\"} or {\"admin_token\"}: "+err.Error())
		return
	}
	sess := &session{csrf: randomToken(24)}
	switch {
	case in.AdminToken != "":
		attempt, ok := h.beginSignIn(w, r, "")
		if !ok {
			return
		}
		ok = subtle.ConstantTimeCompare([]byte(in.AdminToken), []byte(h.cfg.AdminToken)) == 1
		attempt.Done(r.Context(), ok)
		if !ok {
			writeError(w, http.StatusUnauthorized, "wrong admin token")
			return
		}
		sess.operator = true
	case in.Username != "" && h.cfg.Users != nil:
		attempt, ok := h.beginSignIn(w, r, in.Username)
		if !ok {
			return
		}
		if !h.spendSignInForm(w, r, form, attempt) {
			return
		}
		u, err := h.cfg.Users.Authenticate(r.Context(), in.Username, in.Password)
		attempt.Done(r.Context(), err == nil)
		if err != nil {
			writeError(w, http.StatusUnauthorized, "unknown user or wrong password")
			return
		}
		sess.user, sess.byPassword = &u, true
		// In the demo tenant on a loopback listener every user operates
		// the local demo; anywhere else the admin token does, and the
		// people of the operator groups (isOperator).
		sess.operator = h.cfg.Demo != nil && h.cfg.DemoOperators
	default:
		writeError(w, http.StatusBadRequest, "give a username and password, or the admin token")
		return
	}
	id, err := h.sessions.create(sess)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, err.Error()+": try again later")
		return
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: id, Path: "/ui", HttpOnly: true,
		Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode, MaxAge: int(sessionMaxAge / time.Second)})
	who := "operator"
	if sess.user != nil {
		who = sess.user.Subject
	}
	h.cfg.Logger.Info("dashboard: signed in", "who", who, "operator", h.isOperator(sess))
	writeJSON(w, http.StatusOK, h.sessionView(sess))
}

func (h *Handler) sessionView(s *session) map[string]any {
	var user any
	if s.user != nil {
		user = viewUser(*s.user)
	}
	return map[string]any{"user": user, "operator": h.isOperator(s), "csrf": s.csrf}
}

func (h *Handler) session(w http.ResponseWriter, _ *http.Request, s *session) {
	writeJSON(w, http.StatusOK, h.sessionView(s))
}

func (h *Handler) signOut(w http.ResponseWriter, r *http.Request, _ *session) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		h.sessions.remove(c.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/ui", HttpOnly: true, MaxAge: -1,
		SameSite: http.SameSiteStrictMode})
	w.WriteHeader(http.StatusNoContent)
}

func (h *Handler) latency(w http.ResponseWriter, _ *http.Request, _ *session) {
	if h.cfg.Latency == nil {
		writeError(w, http.StatusServiceUnavailable, "no latency figures on this listener")
		return
	}
	writeJSON(w, http.StatusOK, h.cfg.Latency())
}
