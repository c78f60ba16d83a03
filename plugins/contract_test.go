package plugins_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/internal/policytest"
	"github.com/pbac-gateway/pbac/plugins"
	"github.com/pbac-gateway/pbac/rego"
)

// denyAll defines every entrypoint of this contract as a deny: a small
// policy that compiles quickly.
func denyAll() fstest.MapFS {
	var src strings.Builder
	src.WriteString("package pbac\n\nd := {\"allow\": false, \"reasons\": [\"no\"]}\n")
	for _, ep := range contract.Names() {
		src.WriteString(strings.TrimPrefix(ep, "pbac/") + " := d\n")
	}
	return fstest.MapFS{"p.rego": {Data: []byte(src.String())}, "data.json": {Data: []byte(`{}`)}}
}

// methodInput asks pbac/method about method for a caller with a token.
func methodInput(method string) []byte {
	now := time.Now().Unix()
	in, _ := json.Marshal(contract.Input{
		Client:  &contract.Client{ClientID: "c"},
		Token:   &contract.TokenClaims{ClientID: "c", Scp: []string{"jira:read"}, Iat: now, Exp: now + 60},
		Request: contract.Request{Backend: "jira", Method: method},
		Now:     now,
	})
	return in
}

// TestContractOlderBundleOnNewerBinary: a bundle of an older contract
// version (1, before pbac/method) is accepted by this binary; what it lacks
// is decided by the built-in fallback (only what a session needs), which
// Info names; a bundle that lacks an entrypoint its own version requires,
// or declares a version older than the oldest this binary runs, is refused.
func TestContractOlderBundleOnNewerBinary(t *testing.T) {
	ctx := context.Background()
	r := policytest.Empty(t)
	old := policytest.ContractV1(t)
	info, err := r.Activate(ctx, old, "v1")
	if err != nil {
		t.Fatalf("a version 1 bundle was refused: %v", err)
	}
	if info.ContractVersion != 1 || !slices.Equal(info.Fallbacks, []contract.Entrypoint{contract.Method}) ||
		slices.Contains(info.Entrypoints, string(contract.Method)) {
		t.Fatalf("info %+v", info)
	}
	for _, tc := range []struct {
		method string
		allow  bool
	}{{"initialize", true}, {"tools/list", true}, {"ping", true}, {"resources/list", false}, {"logging/setLevel", false}} {
		d, err := r.Decide(ctx, contract.Method, methodInput(tc.method))
		if err != nil || d.Allow != tc.allow || d.Version != info.Version || len(d.Reasons) == 0 {
			t.Errorf("pbac/method %s on a version 1 bundle: %+v %v, want allow=%v", tc.method, d, err, tc.allow)
		}
		if tc.allow && !strings.Contains(d.Reasons[0], "fallback") {
			t.Errorf("pbac/method %s: reasons %v do not say the fallback decided", tc.method, d.Reasons)
		}
	}
	// What the bundle exports, it decides itself.
	if d, err := r.Decide(ctx, contract.ToolCall, []byte(`{}`)); err != nil || d.Allow || d.ContractVersion != 1 {
		t.Fatalf("pbac/tool_call on {}: %+v %v", d, err)
	}

	// The same module declaring version 2, or this binary's version, must
	// export pbac/method.
	for _, v := range []int{2, contract.Version} {
		claims := *old
		claims.ContractVersion = v
		want := fmt.Sprintf("missing entrypoint pbac/method (contract version %d requires it)", v)
		if _, err := r.Activate(ctx, &claims, "without method"); !errors.Is(err, plugins.ErrValidation) || !strings.Contains(err.Error(), want) {
			t.Fatalf("a version %d bundle without pbac/method: %v", v, err)
		}
	}
	// A version 1 bundle missing a version 1 entrypoint.
	b, err := rego.Build(ctx, denyAll(), rego.ForContract(1, contract.Register, contract.Token, contract.Introspect,
		contract.Exchange, contract.ToolCall, contract.List))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Activate(ctx, b, "v1 without anonymous"); !errors.Is(err, plugins.ErrValidation) ||
		!strings.Contains(err.Error(), "missing entrypoint pbac/anonymous (contract version 1 requires it)") {
		t.Fatalf("a version 1 bundle without pbac/anonymous: %v", err)
	}
	tooOld := *old
	tooOld.ContractVersion = -1
	if _, err := r.Activate(ctx, &tooOld, "too old"); !errors.Is(err, plugins.ErrValidation) || !errors.Is(err, contract.ErrContractVersion) {
		t.Fatalf("a bundle older than the oldest version: %v", err)
	}
	if got, _ := r.Active(); got.Version != info.Version {
		t.Fatalf("a refused bundle replaced the active one: %+v", got)
	}

	// Back on this binary's version, nothing falls back.
	shipped, err := policytest.Shipped()
	if err != nil {
		t.Fatal(err)
	}
	info, err = r.Activate(ctx, shipped, "shipped")
	if err != nil || info.ContractVersion != contract.Version || info.Fallbacks != nil {
		t.Fatalf("shipped: %+v %v", info, err)
	}
	if d, err := r.Decide(ctx, contract.Method, methodInput("resources/list")); err != nil || strings.Contains(strings.Join(d.Reasons, " "), "fallback") {
		t.Fatalf("the shipped policy's pbac/method: %+v %v", d, err)
	}
}

// TestContractNewerBundleOnOlderBinary: a bundle of a newer contract
// version than this binary's is accepted when it exports every entrypoint
// this binary uses; the entrypoint this binary does not know is ignored
// (a rolling upgrade rolls forward). One that lacks an entrypoint this
// binary uses is refused.
func TestContractNewerBundleOnOlderBinary(t *testing.T) {
	ctx := context.Background()
	r := policytest.Empty(t)
	newer := policytest.ContractNext(t)
	info, err := r.Activate(ctx, newer, "next")
	if err != nil {
		t.Fatalf("a version %d bundle was refused: %v", contract.Version+1, err)
	}
	if info.ContractVersion != contract.Version+1 || info.Fallbacks != nil || !slices.Contains(info.Entrypoints, string(policytest.Future)) {
		t.Fatalf("info %+v", info)
	}
	if d, err := r.Decide(ctx, contract.Method, methodInput("initialize")); err != nil || strings.Contains(strings.Join(d.Reasons, " "), "fallback") {
		t.Fatalf("pbac/method on a newer bundle: %+v %v", d, err)
	}

	// The newer contract without pbac/method, which this binary uses.
	eps := slices.DeleteFunc(contract.Entrypoints(), func(ep contract.Entrypoint) bool { return ep == contract.Method })
	b, err := rego.Build(ctx, denyAll(), rego.ForContract(contract.Version+1, eps...))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.Activate(ctx, b, "next without method"); !errors.Is(err, plugins.ErrValidation) ||
		!strings.Contains(err.Error(), "missing entrypoint pbac/method") {
		t.Fatalf("a newer bundle without pbac/method: %v", err)
	}
}

// TestApprovalRequiredMustDeny: a bundle whose pbac/tool_call asks for an
// approval and allows the call in the same result is refused by its own
// vectors (a binary that does not know approvals would let the call
// through); asking for an approval with a deny is accepted.
func TestApprovalRequiredMustDeny(t *testing.T) {
	ctx := context.Background()
	const vector = `[{"name": "held", "entrypoint": "pbac/tool_call", "input": {}, "want": {"approval": {"required": true, "rule": "r"}}}]`
	for _, tc := range []struct {
		name   string
		result string
		err    string
	}{
		{"approval with a deny", `{"allow": false, "reasons": ["approval required"], "approval": {"required": true, "rule": "r"}}`, ""},
		{"approval with an allow", `{"allow": true, "reasons": ["ok"], "approval": {"required": true, "rule": "r"}}`, contract.ErrApprovalAllowed.Error()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var src strings.Builder
			src.WriteString("package pbac\n\nd := {\"allow\": false, \"reasons\": [\"no\"]}\n")
			for _, ep := range contract.Names() {
				if ep == string(contract.ToolCall) {
					continue
				}
				src.WriteString(strings.TrimPrefix(ep, "pbac/") + " := d\n")
			}
			// The smoke decision on {} must still deny: the allow comes only
			// with input.held.
			src.WriteString("tool_call := " + tc.result + " if input.held else := d\n")
			b, err := rego.Build(ctx, fstest.MapFS{"p.rego": {Data: []byte(src.String())}, "data.json": {Data: []byte(`{}`)}})
			if err != nil {
				t.Fatal(err)
			}
			b.Vectors = []byte(strings.Replace(vector, `"input": {}`, `"input": {"held": true}`, 1))
			r := policytest.Empty(t)
			_, err = r.Activate(ctx, b, tc.name)
			if tc.err == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				// The decision says which contract it was made under, so
				// the gateway reads approval only from a version 3 bundle.
				d, err := r.Decide(ctx, contract.ToolCall, []byte(`{"held": true}`))
				if err != nil || d.Allow || d.ContractVersion != contract.Version {
					t.Fatalf("decision %+v %v, want a deny under contract version %d", d, err, contract.Version)
				}
				return
			}
			if !errors.Is(err, plugins.ErrValidation) || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("err = %v, want a validation error saying %q", err, tc.err)
			}
		})
	}
}
