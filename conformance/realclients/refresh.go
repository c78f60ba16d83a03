package realclients

import (
	"context"
	"fmt"
	"iter"
	"net/http"
	"strings"
	"time"

	"github.com/pbac-gateway/pbac/conformance/clientcheck"
	"github.com/pbac-gateway/pbac/conformance/modelapi"
)

// markerRefresh asks the stand-in model for the allowed call once more,
// after the access token the CLI signed in with has expired.
const markerRefresh = "pbac-refresh-call"

// refreshPrompt is the prompt of the call made after the access token
// expired.
var refreshPrompt = markerRefresh + ": read " + allowedPath + " from the drive again"

// DefaultAccessTokenTTL is the access tokens' lifetime in a driver's
// refresh run (PBAC_ACCESS_TOKEN_TTL): a few seconds, waited out once.
const DefaultAccessTokenTTL = 5 * time.Second

// probe is a driver's run of its own against a fresh gateway, for one
// behaviour the core run cannot show (probes.go): the refresh (access
// tokens live ttl; after the sign-in the probe waits until the token has
// expired and the driver makes its one call), the step-up and a new
// session after a 404. The observer's requests from the call on show what
// the CLI did.
type probe struct {
	kind probeKind
	ttl  time.Duration
	obs  *clientcheck.Observer
	log  func(format string, args ...any)
	// from is the observer's event count when the call started; started
	// tells whether it did.
	from    int
	started bool
	// result is the probe's judge's.
	result string
	// shown, for a driver with no model (the Inspector), is what the
	// person was shown for the probe's call; judged instead of the
	// stand-in model's results.
	shown *modelapi.ToolResult

	// The held-call probe's (held.go): the gateway, the browser helper's
	// log, the approver it runs, and what it found.
	target     Target
	browserLog string
	approver   *approver
	held       *HeldRow
}

// calls yields the prompts of the driver's invocations, one each: the
// allowed and the denied call; in a probe's run, its one prompt (for the
// refresh, after waiting until the access token of the sign-in has
// expired). A driver runs its CLI once per prompt.
func (e Env) calls(ctx context.Context) iter.Seq[string] {
	return func(yield func(string) bool) {
		p := e.probe
		if p == nil {
			for _, pr := range prompts {
				if !yield(pr) {
					return
				}
			}
			return
		}
		if p.kind == probeRefresh {
			// The sign-in's token was issued before now.
			wait := p.ttl + 2*time.Second
			p.log("waiting %s for the access token of the sign-in to expire", wait)
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		p.from, p.started = len(p.obs.Events()), true
		yield(p.kind.prompt())
	}
}

// refreshOutcomes counts the refresh_token grants among events answered
// with a token and those refused.
func refreshOutcomes(events []clientcheck.Event) (ok, refused int) {
	for _, ev := range events {
		switch {
		case !isTokenRequest(ev, "refresh_token"):
		case ev.AccessToken != "":
			ok++
		default:
			refused++
		}
	}
	return ok, refused
}

func isTokenRequest(ev clientcheck.Event, grant string) bool {
	return ev.Method == http.MethodPost && strings.HasSuffix(ev.Path, "/oauth2/token") && ev.Form.Get("grant_type") == grant
}

// judgeRefresh says what the CLI did when its access token had expired:
// refreshed it (a refresh_token grant, then the new token on /mcp),
// signed in again (re-authorized, not refreshed) or failed; and whether
// the model got the file for the refresh call.
func judgeRefresh(p *probe, events []clientcheck.Event, results []modelapi.ToolResult) string {
	if p == nil {
		return "— (not measured)"
	}
	if !p.started {
		return "— (not measured: the driver makes no call after the access token expired)"
	}
	var early string
	switch ok, refused := refreshOutcomes(events[:p.from]); {
	case refused > 0:
		early = fmt.Sprintf("; before, while its token was valid, it had refreshed %d×, %d refused", ok+refused, refused)
		for _, ev := range events[:p.from] {
			if isTokenRequest(ev, "refresh_token") && ev.AccessToken == "" {
				early += " (" + refusal(ev) + ")"
				break
			}
		}
	case ok > 0:
		early = fmt.Sprintf("; before, while its token was valid, it had refreshed %d×", ok)
	}
	after := events[p.from:]
	saw, gotFile := saw(p, results, markerRefresh, allowedText)
	ttl := fmt.Sprintf("access token lifetime %s", p.ttl)
	var refreshed, refused *clientcheck.Event
	for i, ev := range after {
		if !isTokenRequest(ev, "refresh_token") {
			continue
		}
		if ev.AccessToken != "" {
			refreshed = &after[i]
		} else if refused == nil {
			refused = &after[i]
		}
	}
	reauthorized := false
	expiredRefused, tokenless, oldTaken := false, false, false
	mcp := 0
	var seen []string
	for _, ev := range after {
		switch {
		case ev.Method == http.MethodGet && strings.HasSuffix(ev.Path, "/oauth2/authorize"), isTokenRequest(ev, "authorization_code"):
			reauthorized = true
		case strings.HasPrefix(ev.Path, "/mcp"):
			mcp++
			seen = append(seen, fmt.Sprintf("%s %d", ev.Method, ev.Status))
			switch {
			case ev.Status == http.StatusUnauthorized && ev.Bearer != "":
				expiredRefused = true
			case ev.Status == http.StatusUnauthorized:
				tokenless = true
			case ev.Bearer != "" && ev.Status < 300:
				oldTaken = true
			}
		}
	}
	usedNew := false
	if refreshed != nil {
		for _, ev := range after {
			if ev.Bearer == refreshed.AccessToken && strings.HasPrefix(ev.Path, "/mcp") && ev.Status < 300 {
				usedNew = true
			}
		}
	}
	on401 := "ahead of the 401"
	if expiredRefused {
		on401 = "on the 401"
	}
	switch {
	case refreshed != nil && usedNew:
		if gotFile {
			return fmt.Sprintf("pass (refresh_token grant %s, the new token used on /mcp; %s; %s%s)", on401, saw, ttl, early)
		}
		return fmt.Sprintf("refreshed (refresh_token grant %s, the new token used on /mcp), but %s (%s%s)", on401, saw, ttl, early)
	case refreshed != nil:
		also := ""
		if refused != nil {
			also = "; a refresh was refused (" + refusal(*refused) + ")"
		}
		return fmt.Sprintf("refreshed, but the new token was never used on /mcp%s; %s (%s%s)", also, saw, ttl, early)
	case reauthorized:
		what := "re-authorized, not refreshed (a new sign-in)"
		if refused != nil {
			what = fmt.Sprintf("re-authorized after its refresh was refused (%s)", refusal(*refused))
		}
		return fmt.Sprintf("%s; %s (%s%s)", what, saw, ttl, early)
	case refused != nil:
		return fmt.Sprintf("the refresh was refused (%s) and it did not sign in again; %s (%s%s)", refusal(*refused), saw, ttl, early)
	case expiredRefused:
		return fmt.Sprintf("no refresh: the expired token was refused (401) and the CLI neither refreshed nor signed in again; %s (%s%s)", saw, ttl, early)
	case tokenless:
		return fmt.Sprintf("no token: it called the gateway without one (401) and neither refreshed nor signed in again; %s (%s%s)", saw, ttl, early)
	case mcp == 0:
		return fmt.Sprintf("the CLI made no request to the gateway after the access token expired; %s (%s%s)", saw, ttl, early)
	case oldTaken:
		return fmt.Sprintf("no refresh and no 401: the gateway still took the old token (the wait was too short?); %s (%s%s)", saw, ttl, early)
	default:
		return fmt.Sprintf("no refresh and no token: its requests to the gateway (%s) carried none that was taken; %s (%s%s)", strings.Join(seen, ", "), saw, ttl, early)
	}
}

// refusal is a refused request's status and OAuth error: its code and
// the last sentence of its description (fosite's descriptions open with
// RFC 6749's generic text and end with what happened).
func refusal(ev clientcheck.Event) string {
	if ev.OAuthError == "" {
		return fmt.Sprint(ev.Status)
	}
	code, desc, _ := strings.Cut(ev.OAuthError, ": ")
	if s := strings.Split(strings.TrimSuffix(desc, "."), ". "); len(s) > 1 {
		desc = "… " + s[len(s)-1]
	}
	if desc == "" {
		return fmt.Sprintf("%d %s", ev.Status, code)
	}
	return fmt.Sprintf("%d %s: %s", ev.Status, code, desc)
}
