package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// TokenTarget asks an OAuth token endpoint for a token with the client
// credentials grant (RFC 6749 §4.4), the client authenticating with HTTP
// Basic. Each connection is one keep-alive TCP connection; a call succeeds
// on a 200 that carries an access token.
type TokenTarget struct {
	// URL is the token endpoint.
	URL              string
	ClientID, Secret string
	Scope            string
	Resource         string
	// Timeout bounds one request (default 10 s).
	Timeout time.Duration
}

// Open implements Target.
func (t *TokenTarget) Open(context.Context) (Conn, error) {
	if t.URL == "" || t.ClientID == "" {
		return nil, errors.New("bench: a token target needs a URL and a client")
	}
	form := url.Values{"grant_type": {"client_credentials"}}
	if t.Scope != "" {
		form.Set("scope", t.Scope)
	}
	if t.Resource != "" {
		form.Set("resource", t.Resource)
	}
	timeout := t.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	return &tokenConn{t: t, body: form.Encode(), client: &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:               nil,
			MaxIdleConns:        1,
			MaxIdleConnsPerHost: 1,
			MaxConnsPerHost:     1,
			IdleConnTimeout:     5 * time.Minute,
		},
	}}, nil
}

type tokenConn struct {
	t      *TokenTarget
	body   string
	client *http.Client
	answer bytes.Buffer
}

// Call asks for one token.
func (c *tokenConn) Call(ctx context.Context) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.t.URL, strings.NewReader(c.body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(c.t.ClientID), url.QueryEscape(c.t.Secret))
	resp, err := c.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	c.answer.Reset()
	if _, err := c.answer.ReadFrom(io.LimitReader(resp.Body, 1<<20)); err != nil {
		return fmt.Errorf("reading the answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return &StatusError{Code: resp.StatusCode, Body: bytes.Clone(bytes.TrimSpace(c.answer.Bytes()))}
	}
	if !bytes.Contains(c.answer.Bytes(), []byte(`"access_token"`)) {
		return fmt.Errorf("no access token: %.200s", c.answer.Bytes())
	}
	return nil
}

// Close closes the connection.
func (c *tokenConn) Close() error {
	c.client.CloseIdleConnections()
	return nil
}
