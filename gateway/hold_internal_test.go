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

// FuzzForwardedWithoutApproval: whatever a client sends, what the backend
// gets parses, carries the arguments' exact bytes, the same id and method,
// and never the gateway's requestState or its input request's answer.
func FuzzForwardedWithoutApproval(f *testing.F) {
	for _, seed := range []string{
		`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"a":1},"requestState":"pbac1.x.y","inputResponses":{"pbac_approval":{"action":"accept"}}}}`,
		`{"jsonrpc":"2.0","id":"s","method":"tools/call","params":{"name":"t","requestState":"backend","inputResponses":{"q":{},"pbac_approval":{}}}}`,
		`{"jsonrpc":"2.0","method":"tools/call","params":{"inputResponses":{"pbac_approval":1}}}`,
		`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"requestState":"pbac1.","arguments":{"\u0070bac":"<&>"}}}`,
		`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"inputResponses":[]}}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		msg, err := jsonrpc.Parse(body, 64)
		if err != nil {
			return
		}
		out, err := forwardedWithoutApproval(msg, 64)
		if err != nil {
			return // refused as invalid params
		}
		if string(out.Arguments) != string(msg.Arguments) || string(out.ID) != string(msg.ID) || out.Method != msg.Method || out.Name != msg.Name {
			t.Fatalf("forwarded %s changed what was decided in %s", out.Raw, body)
		}
		if raw, ok := out.Params["requestState"]; ok && ourState(raw) {
			t.Fatalf("forwarded %s keeps the gateway's requestState", out.Raw)
		}
		if raw, ok := out.Params["inputResponses"]; ok {
			if ms, err := jsonrpc.Members(raw); err == nil {
				for _, m := range ms {
					if m.Key == approvalInputKey {
						t.Fatalf("forwarded %s keeps the gateway's answer", out.Raw)
					}
				}
			}
		}
	})
}
