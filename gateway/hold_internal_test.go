package gateway

import (
	"strings"
	"testing"

	"github.com/pbac-gateway/pbac/jsonrpc"
)

// What the backend gets of a retry: the gateway's requestState and its
// input request's answer go; a backend's own state and answers stay; the
// arguments' bytes are the ones decided on.
func TestForwardedWithoutApproval(t *testing.T) {
	args := `{"job": "deploy-prod",  "environment":"production", "note": "<b>&</b>"}`
	tests := []struct {
		name, params string
		gone, kept   []string
	}{
		{"ours", `{"name":"trigger_deploy","arguments":` + args + `,"requestState":"pbac1.abc.def","inputResponses":{"pbac_approval":{"action":"accept"}}}`,
			[]string{"requestState", "inputResponses", "pbac1."}, nil},
		{"ours beside the backend's answers", `{"name":"t","arguments":` + args + `,"requestState":"pbac1.x.y","inputResponses":{"pbac_approval":{"action":"accept"},"backend_q":{"action":"accept","content":{"n":1}}}}`,
			[]string{"requestState", "pbac_approval"}, []string{`"backend_q"`, `"inputResponses"`}},
		{"the backend's state", `{"name":"t","arguments":` + args + `,"requestState":"opaque-backend-state","inputResponses":{"backend_q":{"action":"decline"}}}`,
			nil, []string{`"requestState":"opaque-backend-state"`, `"backend_q"`}},
		{"nothing of ours", `{"name":"t","arguments":` + args + `}`, nil, []string{`"name":"t"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg, err := jsonrpc.Parse([]byte(`{"jsonrpc":"2.0","id":7,"method":"tools/call","params":`+tt.params+`}`), 64)
			if err != nil {
				t.Fatal(err)
			}
			out, err := forwardedWithoutApproval(msg, 64)
			if err != nil {
				t.Fatal(err)
			}
			body := string(out.Raw)
			for _, g := range tt.gone {
				if strings.Contains(body, g) {
					t.Errorf("forwarded %s still has %s", body, g)
				}
			}
			for _, k := range tt.kept {
				if !strings.Contains(body, k) {
					t.Errorf("forwarded %s lost %s", body, k)
				}
			}
			if tt.gone == nil && out != msg {
				t.Errorf("a message without the gateway's fields was rewritten: %s", body)
			}
			if string(out.ID) != "7" || out.Method != "tools/call" {
				t.Errorf("forwarded id %s method %s", out.ID, out.Method)
			}
			if string(out.Arguments) != args {
				t.Errorf("arguments changed: %s, want the bytes %s", out.Arguments, args)
			}
		})
	}
}

func TestElicitationCapabilities(t *testing.T) {
	tests := []struct {
		caps      string
		url, form bool
	}{
		{``, false, false},
		{`{}`, false, false},
		{`{"sampling":{}}`, false, false},
		{`{"elicitation":{}}`, false, true},
		{`{"elicitation":{"form":{}}}`, false, true},
		{`{"elicitation":{"url":{}}}`, true, false},
		{`{"elicitation":{"form":{},"url":{}}}`, true, true},
		{`{"elicitation":"yes"}`, false, false},
		{`[1]`, false, false},
	}
	for _, tt := range tests {
		url, form := elicitation([]byte(tt.caps))
		if url != tt.url || form != tt.form {
			t.Errorf("elicitation(%s) = url %v form %v, want %v %v", tt.caps, url, form, tt.url, tt.form)
		}
	}
}

// A notification stays one: the splice keeps the message's own members.
func TestForwardedWithoutApprovalKeepsTheMessage(t *testing.T) {
	raw := `{"method":"tools/call", "jsonrpc":"2.0","params":{"requestState":"pbac1.a.b","name":"t","arguments":{}}}`
	msg, err := jsonrpc.Parse([]byte(raw), 64)
	if err != nil {
		t.Fatal(err)
	}
	out, err := forwardedWithoutApproval(msg, 64)
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"method":"tools/call", "jsonrpc":"2.0","params":{"name":"t","arguments":{}}}`; string(out.Raw) != want {
		t.Fatalf("forwarded %s, want %s", out.Raw, want)
	}
}
