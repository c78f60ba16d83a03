package authsuite

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
)

// pkce is a verifier and its S256 challenge (RFC 7636 §4.1, §4.2).
type pkce struct{ verifier, challenge string }

func newPKCE() pkce {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	v := base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(v))
	return pkce{verifier: v, challenge: base64.RawURLEncoding.EncodeToString(sum[:])}
}

func randomState() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// authResult is what the authorization response carried to the redirect URI.
type authResult struct {
	code, state, iss, errCode string
	params                    url.Values
}

// authorize runs an authorization request for clientID and signs in on the
// AS's page as the configured user, by HTTP, the way a person would with a
// browser: it reads the page's form, fills the user name and password,
// keeps the hidden fields and presses the approving button. It returns the
// parameters of the redirect to the redirect URI.
func (s *suite) authorize(clientID, redirect string, p pkce, resource, scope string) (authResult, error) {
	ep := s.endpoint("authorization_endpoint")
	if ep == "" {
		return authResult{}, errors.New("the AS metadata has no authorization_endpoint")
	}
	q := url.Values{"response_type": {"code"}, "client_id": {clientID}, "redirect_uri": {redirect},
		"state": {randomState()}, "code_challenge": {p.challenge}, "code_challenge_method": {"S256"}}
	if resource != "" {
		q.Set("resource", resource)
	}
	if scope != "" {
		q.Set("scope", scope)
	}
	authURL := ep + "?" + q.Encode()
	browser := s.newJarClient()
	next, err := http.NewRequestWithContext(s.ctx, http.MethodGet, authURL, nil)
	if err != nil {
		return authResult{}, err
	}
	for range 8 {
		resp, err := doWith(browser, next)
		if err != nil {
			return authResult{}, err
		}
		if loc := resp.header.Get("Location"); resp.status/100 == 3 && loc != "" {
			target, err := next.URL.Parse(loc)
			if err != nil {
				return authResult{}, fmt.Errorf("redirect to %q: %w", loc, err)
			}
			if strings.HasPrefix(target.String(), redirect) {
				v := target.Query()
				res := authResult{code: v.Get("code"), state: v.Get("state"), iss: v.Get("iss"), errCode: v.Get("error"), params: v}
				if res.state != q.Get("state") {
					return res, fmt.Errorf("the redirect's state %q is not the request's", res.state)
				}
				if res.errCode != "" {
					return res, fmt.Errorf("the AS answered %s: %s", res.errCode, v.Get("error_description"))
				}
				return res, nil
			}
			if next, err = http.NewRequestWithContext(s.ctx, http.MethodGet, target.String(), nil); err != nil {
				return authResult{}, err
			}
			continue
		}
		if resp.status != http.StatusOK || s.cfg.User == "" {
			return authResult{}, fmt.Errorf("the authorization endpoint answered %s instead of a sign-in page", resp)
		}
		if next, err = s.signInForm(next.URL, resp.body); err != nil {
			return authResult{}, err
		}
	}
	return authResult{}, errors.New("too many steps before the redirect back to the client")
}

var (
	formTag  = regexp.MustCompile(`(?is)<form\b([^>]*)>(.*?)</form>`)
	inputTag = regexp.MustCompile(`(?is)<(input|button)\b([^>]*)>`)
	attrRe   = regexp.MustCompile(`(?is)([a-z_:-]+)\s*=\s*("[^"]*"|'[^']*'|[^\s>]+)`)
)

func attrs(s string) map[string]string {
	out := map[string]string{}
	for _, m := range attrRe.FindAllStringSubmatch(s, -1) {
		v := strings.Trim(m[2], `"'`)
		out[strings.ToLower(m[1])] = html.UnescapeString(v)
	}
	return out
}

// signInForm fills the page's first form that has a password field.
func (s *suite) signInForm(page *url.URL, body []byte) (*http.Request, error) {
	for _, f := range formTag.FindAllStringSubmatch(string(body), -1) {
		fa := attrs(f[1])
		form := url.Values{}
		hasPassword := false
		var submit [2]string
		for _, in := range inputTag.FindAllStringSubmatch(f[2], -1) {
			a := attrs(in[2])
			name, typ := a["name"], strings.ToLower(a["type"])
			switch {
			case typ == "password":
				form.Set(name, s.cfg.Password)
				hasPassword = true
			case strings.EqualFold(in[1], "button") || typ == "submit":
				v := strings.ToLower(a["value"])
				if name != "" && submit[0] == "" || strings.Contains(v, "approve") || strings.Contains(v, "allow") || strings.Contains(v, "accept") {
					submit = [2]string{name, a["value"]}
				}
			case name == "":
			case typ == "hidden":
				form.Set(name, a["value"])
			case typ == "" || typ == "text" || typ == "email":
				if ln := strings.ToLower(name); strings.Contains(ln, "user") || strings.Contains(ln, "login") || strings.Contains(ln, "email") || ln == "name" {
					form.Set(name, s.cfg.User)
				}
			}
		}
		if !hasPassword {
			continue
		}
		if submit[0] != "" {
			form.Set(submit[0], submit[1])
		}
		action, err := page.Parse(fa["action"])
		if err != nil {
			return nil, fmt.Errorf("the sign-in form's action: %w", err)
		}
		req, err := http.NewRequestWithContext(s.ctx, http.MethodPost, action.String(), strings.NewReader(form.Encode()))
		if err != nil {
			return nil, err
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		return req, nil
	}
	return nil, errors.New("the sign-in page has no form with a password field")
}

// tokenResponse is an RFC 6749 §5.1 access token response.
type tokenResponse struct {
	AccessToken     string  `json:"access_token"`
	TokenType       string  `json:"token_type"`
	ExpiresIn       float64 `json:"expires_in"`
	RefreshToken    string  `json:"refresh_token"`
	Scope           string  `json:"scope"`
	IssuedTokenType string  `json:"issued_token_type"`
	raw             *response
}

// token posts to the token endpoint with the configured client's
// authentication (or client_id alone for a public client).
func (s *suite) token(form url.Values, clientID, secret string) (*tokenResponse, *response, error) {
	ep := s.endpoint("token_endpoint")
	if ep == "" {
		return nil, nil, errors.New("the AS metadata has no token_endpoint")
	}
	user := ""
	if secret != "" {
		user = clientID
	} else if clientID != "" {
		form.Set("client_id", clientID)
	}
	resp, err := s.postForm(ep, form, user, secret)
	if err != nil {
		return nil, nil, err
	}
	if resp.status != http.StatusOK {
		return nil, resp, nil
	}
	var t tokenResponse
	if err := json.Unmarshal(resp.body, &t); err != nil || t.AccessToken == "" {
		return nil, resp, fmt.Errorf("the token response is not a token: %s", resp)
	}
	t.raw = resp
	return &t, resp, nil
}

// codeFlow gets a token with the configured client for resource.
func (s *suite) codeFlow(resource, scope string) (*tokenResponse, error) {
	p := newPKCE()
	ar, err := s.authorize(s.cfg.ClientID, s.cfg.RedirectURI, p, resource, scope)
	if err != nil {
		return nil, err
	}
	t, resp, err := s.redeem(ar.code, p.verifier, resource)
	if err != nil {
		return nil, err
	}
	if t == nil {
		return nil, fmt.Errorf("the token endpoint refused the code: %s", resp)
	}
	return t, nil
}

func (s *suite) redeem(code, verifier, resource string) (*tokenResponse, *response, error) {
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {s.cfg.RedirectURI}}
	if verifier != "" {
		form.Set("code_verifier", verifier)
	}
	if resource != "" {
		form.Set("resource", resource)
	}
	return s.token(form, s.cfg.ClientID, s.cfg.ClientSecret)
}

// oauthError is the error member of a JSON error answer.
func oauthError(r *response) string {
	if r == nil {
		return ""
	}
	e, _ := r.json()["error"].(string)
	return e
}
