package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/pbac-gateway/pbac/audit"
	"github.com/pbac-gateway/pbac/demo"
	"github.com/pbac-gateway/pbac/internal/oauthtest"
	system "github.com/pbac-gateway/pbac/internal/stack"
)

// statelessJira is the demo jira served as the 2026-07-28 revision wants
// (the go-sdk's stateless mode), and a client of it that goes around the
// gateway, to change its issues.
func statelessJira(t testing.TB) (*stack, func(key string)) {
	s, comment, _ := statelessJiraAt(t)
	return s, comment
}

// statelessJiraAt is statelessJira with the backend's own URL.
func statelessJiraAt(t testing.TB) (*stack, func(key string), string) {
	t.Helper()
	h, err := demo.NewHandler("jira", &mcp.StreamableHTTPOptions{Stateless: true})
	if err != nil {
		t.Fatal(err)
	}
	fake := httptest.NewServer(h)
	t.Cleanup(fake.Close)
	s := newStackWith(t, stackOptions{backendURL: func(name, url string) string {
		if name == "jira" {
			return fake.URL
		}
		return url
	}})
	direct, err := mcp.NewClient(&mcp.Implementation{Name: "direct", Version: "1"}, nil).Connect(t.Context(),
		&mcp.StreamableClientTransport{Endpoint: fake.URL, MaxRetries: -1, DisableStandaloneSSE: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { direct.Close() })
	comment := func(key string) {
		t.Helper()
		res, err := direct.CallTool(t.Context(), &mcp.CallToolParams{Name: "add_comment", Arguments: map[string]any{"key": key, "body": "changed"}})
		if err != nil || res.IsError {
			t.Fatalf("comment on %s: %v %+v", key, err, res)
		}
	}
	return s, comment, fake.URL
}

// listenStream opens a subscriptions/listen at path with body's
// notifications and returns its messages as they come.
func listenStream(t testing.TB, s *stack, path, token, notifications string) <-chan map[string]any {
	t.Helper()
	return listenAt(t, s.base+path, token, notifications)
}

// listenRequest is a 2026-07-28 subscriptions/listen POST to url with id
// and the notifications opt-ins (token "": none).
func listenRequest(ctx context.Context, url, token, id, notifications string) *http.Request {
	body := `{"jsonrpc":"2.0","id":"` + id + `","method":"subscriptions/listen","params":{"_meta":{` +
		`"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{},` +
		`"io.modelcontextprotocol/clientInfo":{"name":"t","version":"1"}},"notifications":` + notifications + `}}`
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("MCP-Protocol-Version", "2026-07-28")
	req.Header.Set("Mcp-Method", "subscriptions/listen")
	return req
}

// listenAt opens a subscriptions/listen at url (token "": none) and
// returns its messages as they come, each with "received" set to when.
func listenAt(t testing.TB, url, token, notifications string) <-chan map[string]any {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	resp, err := http.DefaultClient.Do(listenRequest(ctx, url, token, "listen-1", notifications))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		resp.Body.Close()
		t.Fatalf("listen: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	out := make(chan map[string]any, 16)
	go func() {
		defer close(out)
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue
			}
			var m map[string]any
			if json.Unmarshal([]byte(data), &m) == nil {
				m["received"] = time.Now()
				out <- m
			}
		}
	}()
	return out
}

func next(t testing.TB, ch <-chan map[string]any) map[string]any {
	t.Helper()
	select {
	case m, ok := <-ch:
		if !ok {
			t.Fatal("the stream ended")
		}
		return m
	case <-time.After(10 * time.Second):
		t.Fatal("no message on the stream in 10 s")
	}
	return nil
}

// TestSubscriptionsListen: a 2026-07-28 subscriptions/listen reaches the
// backend with only the opt-ins the caller may have (a resource it may not
// see and an opt-in the gateway cannot vet are dropped), so the backend's
// acknowledgement says what will flow; and each update on the stream is
// decided as it comes, by the policy active then: once the data hides
// SEC-12 from the caller, its updates stop while SEC-13's still pass.
func TestSubscriptionsListen(t *testing.T) {
	s, comment := statelessJira(t)
	token := s.machineAgent("ci-bot", false, "jira:read")
	stream := listenStream(t, s, "/mcp/jira", token, `{"resourceSubscriptions":["jira://issue/SEC-12","jira://issue/SEC-13","jira://admin/keys"],"somethingElse":true}`)

	ack := next(t, stream)
	if ack["method"] != "notifications/subscriptions/acknowledged" {
		t.Fatalf("first message %v, want the acknowledgement", ack)
	}
	params := ack["params"].(map[string]any)
	got := params["notifications"].(map[string]any)
	if subs := got["resourceSubscriptions"]; !slices.Equal(toStrings(subs), []string{"jira://issue/SEC-12", "jira://issue/SEC-13"}) {
		t.Fatalf("acknowledged resources %v, want SEC-12 and SEC-13 only", subs)
	}
	if _, ok := got["somethingElse"]; ok {
		t.Fatalf("an opt-in the gateway cannot vet reached the backend: %v", got)
	}
	if rec := s.auditOf(t, "subscriptions/listen"); rec.Decision != "allow" || !slices.Contains(rec.Reasons, "2 of 3 resource subscriptions passed") {
		t.Fatalf("audit of the listen: %+v", rec)
	}

	comment("SEC-12")
	if m := next(t, stream); m["method"] != "notifications/resources/updated" || m["params"].(map[string]any)["uri"] != "jira://issue/SEC-12" {
		t.Fatalf("got %v, want SEC-12's update", m)
	}
	// An exact entry below the issues' prefix: SEC-12 now needs write
	// access, which this caller lacks.
	s.editData(t, func(d map[string]any) {
		d["catalogue"].(map[string]any)["jira.resource:jira://issue/SEC-12"] = map[string]any{"resource": "jira", "access": "write"}
	})
	comment("SEC-12")
	comment("SEC-13")
	if m := next(t, stream); m["params"].(map[string]any)["uri"] != "jira://issue/SEC-13" {
		t.Fatalf("got %v after the policy change, want SEC-13's update (SEC-12's withheld)", m)
	}
}

// auditOf waits for the latest audit record of method.
func (s *stack) auditOf(t *testing.T, method string) audit.Record {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		recs, err := s.index.Query(context.Background(), audit.Filter{Limit: 100})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs {
			if r.Method == method {
				return r
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no audit record of %s in 5 s", method)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSubscriptionsListenWithTheSDKClient: the go-sdk's own client, at
// 2026-07-28, opens subscriptions/listen as it connects (it has list
// handlers) and for each Subscribe, in the background; before the gateway
// decided the method, each was refused and the client silently got no
// updates. Through the gateway now, its Subscribe gets a resource's
// updates.
func TestSubscriptionsListenWithTheSDKClient(t *testing.T) {
	s, comment := statelessJira(t)
	updates := make(chan string, 4)
	client := mcp.NewClient(&mcp.Implementation{Name: "sdk", Version: "1"}, &mcp.ClientOptions{
		ToolListChangedHandler: func(context.Context, *mcp.ToolListChangedRequest) {},
		ResourceUpdatedHandler: func(_ context.Context, r *mcp.ResourceUpdatedNotificationRequest) { updates <- r.Params.URI },
	})
	cs, err := client.Connect(t.Context(), &mcp.StreamableClientTransport{
		Endpoint:   s.base + "/mcp/jira",
		HTTPClient: &http.Client{Transport: &oauthtest.BearerTransport{Token: s.machineAgent("ci-bot", false, "jira:read")}},
		MaxRetries: -1,
	}, &mcp.ClientSessionOptions{ProtocolVersion: "2026-07-28"})
	if err != nil {
		t.Fatalf("connect at 2026-07-28 through the gateway: %v", err)
	}
	defer cs.Close()
	if err := cs.Subscribe(t.Context(), &mcp.SubscribeParams{URI: "jira://issue/SEC-14"}); err != nil {
		t.Fatal(err)
	}
	// The listen is opened in the background: comment until an update
	// comes (the first may precede the subscription).
	deadline := time.After(10 * time.Second)
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case uri := <-updates:
			if uri != "jira://issue/SEC-14" {
				t.Fatalf("update of %s, want SEC-14", uri)
			}
			return
		case <-tick.C:
			comment("SEC-14")
		case <-deadline:
			t.Fatal("no update of SEC-14 reached the SDK client in 10 s")
		}
	}
}

// TestAggregatedSubscriptionsListen: on the aggregated server, a listen
// names resources as its lists do (<backend>+<uri>); the gateway subscribes
// at the backend for the ones the caller may see and relays their updates
// under the aggregated URI, with the listen's subscription id.
func TestAggregatedSubscriptionsListen(t *testing.T) {
	s := newStack(t)
	token := s.machineAgent("ci-bot", false, "jira:read")
	stream := listenStream(t, s, "/mcp", token, `{"resourceSubscriptions":["jira+jira://issue/SEC-12","jira+jira://admin/keys","nosuch+x://y"],"toolsListChanged":true}`)
	ack := next(t, stream)
	got := ack["params"].(map[string]any)["notifications"].(map[string]any)
	if ack["method"] != "notifications/subscriptions/acknowledged" || !slices.Equal(toStrings(got["resourceSubscriptions"]), []string{"jira+jira://issue/SEC-12"}) || got["toolsListChanged"] != nil {
		t.Fatalf("acknowledgement %v, want SEC-12's subscription only", ack)
	}
	s.directCall("jira", "add_comment", map[string]any{"key": "SEC-12", "body": "changed"})
	m := next(t, stream)
	params := m["params"].(map[string]any)
	if m["method"] != "notifications/resources/updated" || params["uri"] != "jira+jira://issue/SEC-12" ||
		params["_meta"].(map[string]any)["io.modelcontextprotocol/subscriptionId"] != "listen-1" {
		t.Fatalf("got %v, want SEC-12's update under its aggregated URI", m)
	}
	if rec := s.auditOf(t, "subscriptions/listen"); rec.Decision != "allow" || !slices.Contains(rec.Reasons, "1 of 3 resource subscriptions open") {
		t.Fatalf("audit of the listen: %+v", rec)
	}
}

// BenchmarkListenUpdate prints how long a resource update takes from the
// change at the backend to the listening client, straight from the go-sdk
// server and through the gateway (which decides it by pbac/list as it
// passes), both listening at once to the same changes:
// go test -run '^$' -bench ListenUpdate -benchtime 2000x ./gateway/
func BenchmarkListenUpdate(b *testing.B) {
	s, comment, backendURL := statelessJiraAt(b)
	token := s.machineAgent("ci-bot", false, "jira:read")
	subs := `{"resourceSubscriptions":["jira://issue/SEC-12"]}`
	direct := listenAt(b, backendURL, "", subs)
	through := listenStream(b, s, "/mcp/jira", token, subs)
	next(b, direct)
	next(b, through) // the acknowledgements
	var straight, gated []time.Duration
	for b.Loop() {
		start := time.Now()
		comment("SEC-12")
		d, g := next(b, direct), next(b, through)
		straight = append(straight, d["received"].(time.Time).Sub(start))
		gated = append(gated, g["received"].(time.Time).Sub(start))
	}
	q := func(ds []time.Duration, p float64) time.Duration {
		s := slices.Clone(ds)
		slices.Sort(s)
		return s[min(len(s)-1, int(p*float64(len(s))))]
	}
	if len(gated) > 0 {
		b.ReportMetric(float64(q(straight, 0.5).Microseconds()), "direct-p50-µs")
		b.ReportMetric(float64(q(straight, 0.99).Microseconds()), "direct-p99-µs")
		b.ReportMetric(float64(q(gated, 0.5).Microseconds()), "gateway-p50-µs")
		b.ReportMetric(float64(q(gated, 0.99).Microseconds()), "gateway-p99-µs")
	}
}

// TestListensAreBoundedPerAgent: an agent holds at most 8 listens at once,
// counted over /mcp/<backend> and /mcp together; the next, on either, is
// answered 429 with Retry-After and a JSON-RPC error, and another agent is
// not held back.
func TestListensAreBoundedPerAgent(t *testing.T) {
	s, _ := statelessJira(t)
	bot := s.machineAgent("ci-bot", false, "jira:read")
	other := s.machineAgent("ci-bot", false, "jira:read") // another registration: another agent
	perBackend := `{"resourceSubscriptions":["jira://issue/SEC-12"]}`
	for range 8 {
		next(t, listenStream(t, s, "/mcp/jira", bot, perBackend)) // the acknowledgement
	}
	for _, tc := range []struct{ path, subs string }{
		{"/mcp/jira", perBackend},
		{"/mcp", `{"resourceSubscriptions":["jira+jira://issue/SEC-12"]}`},
	} {
		req := listenRequest(context.Background(), s.base+tc.path, bot, "listen-9", tc.subs)
		resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode == http.StatusOK {
			resp.Body.Close()
			t.Fatalf("a ninth listen on %s was opened (%s)", tc.path, resp.Header.Get("Content-Type"))
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusTooManyRequests || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(raw), `"error"`) {
			t.Fatalf("a ninth listen on %s: %d Retry-After=%q %s, want 429 with Retry-After and an error", tc.path, resp.StatusCode, resp.Header.Get("Retry-After"), raw)
		}
	}
	next(t, listenStream(t, s, "/mcp/jira", other, perBackend)) // another agent still listens
}

// TestListenEndsAtTokenExpiry: a listen lasts as long as the token it was
// opened with, on /mcp/<backend> (a stateless backend, which takes the
// listen itself) and on the aggregated /mcp (a stateful one, where the
// gateway subscribes in a session of its own): it is open before the token
// expires and ended by the gateway once it has (the client listens again
// with its next token).
func TestListenEndsAtTokenExpiry(t *testing.T) {
	const ttl = 3 * time.Second
	shortTokens := func(c *system.Config) { c.AuthServer.Settings.AccessTokenTTL = ttl.String() }
	h, err := demo.NewHandler("jira", &mcp.StreamableHTTPOptions{Stateless: true})
	if err != nil {
		t.Fatal(err)
	}
	stateless := httptest.NewServer(h)
	t.Cleanup(stateless.Close)
	for _, tc := range []struct {
		name, path, subs string
		opts             stackOptions
	}{
		{"per backend", "/mcp/jira", `{"resourceSubscriptions":["jira://issue/SEC-12"]}`, stackOptions{config: shortTokens,
			backendURL: func(name, url string) string {
				if name == "jira" {
					return stateless.URL
				}
				return url
			}}},
		{"aggregated", "/mcp", `{"resourceSubscriptions":["jira+jira://issue/SEC-12"]}`, stackOptions{config: shortTokens}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newStackWith(t, tc.opts)
			issued := time.Now()
			bot := s.machineAgent("ci-bot", false, "jira:read")
			stream := listenStream(t, s, tc.path, bot, tc.subs)
			next(t, stream) // the acknowledgement
			late := time.After(ttl + 10*time.Second)
			for {
				select {
				case _, open := <-stream:
					if open {
						continue // a keep-alive or an update: still listening
					}
					// Expiry is rounded to the second at issuance.
					if ended := time.Since(issued); ended < ttl-time.Second {
						t.Fatalf("the listen ended %s after its token was issued, before the token's %s expired", ended.Round(time.Millisecond), ttl)
					}
					return
				case <-late:
					t.Fatalf("the listen is still open %s after its token expired", 10*time.Second)
				}
			}
		})
	}
}
