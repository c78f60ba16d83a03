package opahttp_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/plugins"
	"github.com/pbac-gateway/pbac/plugins/opahttp"
)

// fakeOPA answers the data API as OPA does, with a result chosen by the
// test for each path.
func fakeOPA(t *testing.T, answers map[string]string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost || r.Header.Get("Content-Type") != "application/json" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		var body struct {
			Input json.RawMessage `json:"input"`
		}
		raw, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(raw, &body); err != nil || len(body.Input) == 0 {
			http.Error(w, `{"code":"invalid_parameter"}`, http.StatusBadRequest)
			return
		}
		a, ok := answers[r.URL.Path]
		if !ok {
			http.Error(w, `{"code":"internal_error"}`, http.StatusInternalServerError)
			return
		}
		// The input is echoed so the test sees what OPA was given.
		_, _ = io.WriteString(w, strings.ReplaceAll(a, "$INPUT", string(body.Input)))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestDeciderConvertsOPAResults(t *testing.T) {
	srv := fakeOPA(t, map[string]string{
		"/v1/data/pbac/tool_call":  `{"result":{"allow":true,"reasons":[],"tier":"ci_agent","echo":$INPUT}}`,
		"/v1/data/pbac/introspect": `{"result":{"allow":false,"reasons":["token expired"],"jit_single_use":false}}`,
		"/v1/data/pbac/undefined":  `{}`,
		"/v1/data/pbac/malformed":  `{"result":{"allow":"yes"}}`,
		"/v1/data/pbac/notobject":  `{"result":true}`,
	})
	d, err := opahttp.New(srv.URL, opahttp.WithVersion("sidecar"))
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	ctx := t.Context()

	dec, err := d.Decide(ctx, "pbac/tool_call", []byte(`{"request":{"tool":"jira.search_issues"}}`))
	if err != nil {
		t.Fatal(err)
	}
	if !dec.Allow || dec.Version != "sidecar" {
		t.Fatalf("decision = %+v, want an allow by version sidecar", dec)
	}
	var res struct {
		Tier string          `json:"tier"`
		Echo json.RawMessage `json:"echo"`
	}
	if err := dec.Decode(&res); err != nil {
		t.Fatal(err)
	}
	if res.Tier != "ci_agent" || string(res.Echo) != `{"request":{"tool":"jira.search_issues"}}` {
		t.Fatalf("result = %+v: the input must reach OPA as it is and the whole result come back", res)
	}

	dec, err = d.Decide(ctx, "pbac/introspect", []byte(`{}`))
	if err != nil || dec.Allow || len(dec.Reasons) != 1 || dec.Reasons[0] != "token expired" {
		t.Fatalf("deny: %+v, %v", dec, err)
	}

	for ep, want := range map[contract.Entrypoint]error{
		"pbac/undefined": opahttp.ErrUndefined,
		"pbac/malformed": plugins.ErrMalformedDecision,
		"pbac/notobject": plugins.ErrMalformedDecision,
	} {
		if _, err := d.Decide(ctx, ep, []byte(`{}`)); !errors.Is(err, want) {
			t.Errorf("%s: err = %v, want %v", ep, err, want)
		}
	}
	if _, err := d.Decide(ctx, "pbac/missing", []byte(`{}`)); err == nil || !strings.Contains(err.Error(), "HTTP 500") {
		t.Errorf("server error: err = %v, want HTTP 500", err)
	}
	if _, err := d.Decide(ctx, "pbac/tool_call", []byte(`{"not json`)); err == nil {
		t.Error("invalid input JSON was decided")
	}
	for _, ep := range []contract.Entrypoint{"", "pbac//x", "../admin", "pbac/tool_call?x=1"} {
		if _, err := d.Decide(ctx, ep, []byte(`{}`)); err == nil {
			t.Errorf("entrypoint %q was accepted", ep)
		}
	}
}

func TestDeciderFailsClosedWhenOPAIsDown(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	d, err := opahttp.New(url)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.Decide(t.Context(), "pbac/tool_call", []byte(`{}`)); err == nil {
		t.Fatal("a decision without a server")
	}
	if _, err := opahttp.New("127.0.0.1:8181"); err == nil {
		t.Fatal("a URL without a scheme was accepted")
	}
}
