package asrv_test

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/pbac-gateway/pbac/asrv"
	"github.com/pbac-gateway/pbac/contract"
)

// eventLog collects the AS's events and its log.
type eventLog struct {
	mu     sync.Mutex
	events []asrv.Event
	log    bytes.Buffer
}

func (l *eventLog) config(c *asrv.Config) {
	c.Events = func(_ context.Context, e asrv.Event) {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.events = append(l.events, e)
	}
	c.Logger = slog.New(slog.NewTextHandler(lockedWriter{&l.mu, &l.log}, nil))
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

// take returns the events so far and forgets them, and the log lines.
func (l *eventLog) take() ([]asrv.Event, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	ev, lines := l.events, strings.Split(strings.TrimSpace(l.log.String()), "\n")
	l.events = nil
	l.log.Reset()
	return ev, lines
}

// TestEvents: every registration, authorization, token request and
// revocation is an event, granted or refused with the OAuth error and its
// reason; an expected refusal is one log line with the reason, never an
// error's stack.
func TestEvents(t *testing.T) {
	const redirect = "http://127.0.0.1:43312/callback"
	var l eventLog
	ta := newTestAS(t, l.config)
	var verified string // a verified public agent, registered by the first row

	for _, tc := range []struct {
		name string
		do   func(t *testing.T)
		want []asrv.Event // the fields compared: Kind, Action, Allowed, Error, Attestation, Provider, Subject
		// reason is in an event's reason; logged, in a log line.
		reason, logged string
	}{
		{
			name: "a registration with a trusted statement is accepted, attested by it",
			do:   func(t *testing.T) { verified = ta.publicAgent("claude-code", redirect) },
			want: []asrv.Event{{Kind: asrv.EventRegistration, Action: "register", Allowed: true,
				Attestation: contract.AttestationStatement, Provider: "claude-code"}},
			reason: "registered verified",
		},
		{
			name:   "a registration without a statement is accepted, attested by nothing",
			do:     func(t *testing.T) { ta.publicAgent("", redirect) },
			want:   []asrv.Event{{Kind: asrv.EventRegistration, Action: "register", Allowed: true}},
			reason: "registered unverified",
		},
		{
			name: "a registration with a statement that does not verify is refused",
			do: func(t *testing.T) {
				status, _ := ta.post(asrv.PathRegister, map[string]any{"client_name": "forged", "redirect_uris": []string{redirect},
					"token_endpoint_auth_method": "none", "software_statement": "e30.e30.c2ln"})
				if status != http.StatusBadRequest {
					t.Fatalf("register: %d, want 400", status)
				}
			},
			want: []asrv.Event{{Kind: asrv.EventRegistration, Action: "register", Error: asrv.ErrCodeInvalidSoftwareStatement,
				Attestation: contract.AttestationStatement}},
			logged: "registration rejected",
		},
		{
			name: "an authorization to an unregistered redirect URI is refused with the reason",
			do: func(t *testing.T) {
				resp, err := browser().Get(ta.authorizeURL(verified, "http://127.0.0.1:9/elsewhere", nil))
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusBadRequest {
					t.Fatalf("authorize: %d, want 400", resp.StatusCode)
				}
			},
			want: []asrv.Event{{Kind: asrv.EventAuthorization, Action: "authorize", Error: "invalid_request",
				Attestation: contract.AttestationStatement, Provider: "claude-code"}},
			reason: "redirect",
			logged: "authorize request rejected",
		},
		{
			name: "a code flow is an authorization granted and a token issued",
			do: func(t *testing.T) {
				tok := ta.codeFlow(verified, redirect, "alice", "jira:read")
				ta.mustRefresh(verified, tok.RefreshToken)
				// The first refresh token again: reuse, refused.
				if status, _ := ta.refreshWith(verified, tok.RefreshToken, nil); status != http.StatusBadRequest {
					t.Fatalf("reuse: %d, want 400", status)
				}
				if status, _ := ta.form(asrv.PathRevoke, "", "", url.Values{"token": {tok.AccessToken}, "client_id": {verified}}); status != http.StatusOK {
					t.Fatalf("revoke: %d", status)
				}
			},
			want: []asrv.Event{
				{Kind: asrv.EventAuthorization, Action: "authorize", Allowed: true, Subject: "alice",
					Attestation: contract.AttestationStatement, Provider: "claude-code"},
				{Kind: asrv.EventToken, Action: "authorization_code", Allowed: true, Subject: "alice",
					Attestation: contract.AttestationStatement, Provider: "claude-code"},
				{Kind: asrv.EventToken, Action: "refresh_token", Allowed: true, Subject: "alice",
					Attestation: contract.AttestationStatement, Provider: "claude-code"},
				// A reused refresh token's grant is not read: no subject.
				{Kind: asrv.EventToken, Action: "refresh_token", Error: "invalid_grant",
					Attestation: contract.AttestationStatement, Provider: "claude-code"},
				{Kind: asrv.EventRevocation, Action: "revoke", Allowed: true},
			},
			reason: "Refresh token re-use was detected",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			l.take()
			tc.do(t)
			got, lines := l.take()
			type view struct {
				Kind                                          asrv.EventKind
				Action, Error, Attestation, Provider, Subject string
				Allowed                                       bool
			}
			seen := func(es []asrv.Event) []view {
				var out []view
				for _, e := range es {
					out = append(out, view{Kind: e.Kind, Action: e.Action, Error: e.Error, Attestation: e.Attestation,
						Provider: e.Provider, Subject: e.Subject, Allowed: e.Allowed})
				}
				return out
			}
			if !slices.Equal(seen(got), seen(tc.want)) {
				t.Fatalf("events\n got  %+v\n want %+v", seen(got), seen(tc.want))
			}
			if tc.reason != "" && !slices.ContainsFunc(got, func(e asrv.Event) bool { return strings.Contains(e.Reason, tc.reason) }) {
				t.Errorf("no event's reason says %q: %+v", tc.reason, got)
			}
			for _, e := range got {
				if e.Time.IsZero() || e.Status == 0 || (!e.Allowed && (e.Error == "" || e.Reason == "")) || (e.Remote != "" && e.Remote != "127.0.0.1") {
					t.Errorf("incomplete event %+v", e)
				}
				if e.Kind != asrv.EventRevocation && e.ClientID == "" && e.Kind != asrv.EventRegistration {
					t.Errorf("event without its client: %+v", e)
				}
			}
			if tc.logged != "" && !slices.ContainsFunc(lines, func(s string) bool {
				return strings.Contains(s, tc.logged) && strings.Contains(s, "reason=")
			}) {
				t.Errorf("no log line %q with its reason in\n%s", tc.logged, strings.Join(lines, "\n"))
			}
			for _, line := range lines {
				// slog's text handler writes an error as %+v: a fosite
				// error's stack, its frames quoted on the one line.
				if strings.Contains(line, `\n\t`) || strings.Contains(line, "runtime.goexit") || (line != "" && !strings.HasPrefix(line, "time=")) {
					t.Fatalf("a log line with a stack: %s", line)
				}
			}
		})
	}
}
