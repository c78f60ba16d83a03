package demo

import (
	"context"
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

func TestScenariosLoad(t *testing.T) {
	list, err := Scenarios()
	if err != nil {
		t.Fatal(err)
	}
	modes := map[int]bool{}
	ids := []string{}
	tools := map[string]bool{}
	for _, sc := range list {
		modes[sc.FailureMode] = true
		ids = append(ids, sc.ID)
		for _, st := range sc.Steps {
			if st.Kind == StepCall {
				tools[st.Tool] = true
			}
		}
	}
	for m := 1; m <= 5; m++ {
		if !modes[m] {
			t.Errorf("no scenario shows failure mode %d", m)
		}
	}
	for _, want := range []string{LiveTestID, "alice-day", "bob-day", "carol-day"} {
		if !slices.Contains(ids, want) {
			t.Errorf("scenario %s is missing", want)
		}
	}
	// Every tool a scenario calls exists on its demo backend.
	for tool := range tools {
		backend, name, _ := strings.Cut(tool, ".")
		if _, ok := builders[backend]; !ok {
			t.Errorf("%s: no backend %s", tool, backend)
			continue
		}
		if !slices.Contains(toolNames(t, backend), name) {
			t.Errorf("%s: backend %s has no tool %s", tool, backend, name)
		}
	}
}

// toolNames lists a backend's tools over an in-memory MCP connection.
func toolNames(t *testing.T, backend string) []string {
	t.Helper()
	ctx := context.Background()
	ct, st := mcp.NewInMemoryTransports()
	ss, err := builders[backend]().Connect(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ss.Close()
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "t", Version: "1"}, nil).Connect(ctx, ct, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cs.Close()
	res, err := cs.ListTools(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tl := range res.Tools {
		names = append(names, tl.Name)
	}
	return names
}

func TestScenarioValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		sc   Scenario
		want string
	}{
		{"no steps", Scenario{ID: "x", Title: "x", Agent: "a"}, "required"},
		{"bad tool", Scenario{ID: "x", Title: "x", Agent: "a", Steps: []Step{{Kind: StepCall, Tool: "nodot"}}}, "<backend>.<tool>"},
		{"repeat first", Scenario{ID: "x", Title: "x", Agent: "a", Steps: []Step{{Kind: StepRepeat}}}, "none comes before"},
		{"policy without revoke", Scenario{ID: "x", Title: "x", Agent: "a", Steps: []Step{{Kind: StepPolicy}}}, "revoke"},
		{"unknown kind", Scenario{ID: "x", Title: "x", Agent: "a", Steps: []Step{{Kind: "sleep"}}}, "unknown kind"},
		{"result of a later step", Scenario{ID: "x", Title: "x", Agent: "a", Steps: []Step{{Kind: StepCall, Tool: "a.b", Args: map[string]any{"iid": "{step0.iid}"}}}}, "earlier call"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.sc.validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("validate() = %v, want an error about %q", err, tc.want)
			}
		})
	}
}

func TestArgsGistAndExpand(t *testing.T) {
	args := map[string]any{"path": "/team/x.md", "iid": 7, "params": map[string]any{"BRANCH": "b-{run}"}, "long": strings.Repeat("é", 100)}
	expanded, err := expand(args, "abc123", nil)
	if err != nil {
		t.Fatal(err)
	}
	got := ArgsGist(expanded)
	if !strings.HasPrefix(got, "iid=7, long=éé") || !strings.Contains(got, `params={"BRANCH":"b-abc123"}`) || !strings.HasSuffix(got, "path=/team/x.md") {
		t.Fatalf("gist %q", got)
	}
	if strings.Contains(got, strings.Repeat("é", 61)) {
		t.Fatalf("a value is not cut: %q", got)
	}
	raw, _ := json.Marshal(args)
	if !strings.Contains(string(raw), "{run}") {
		t.Fatal("expand changed the scenario's own arguments")
	}
}

// TestExpandStepResults: an argument "{step<N>.<field>}" takes that field of
// step N's result, with its JSON type; a missing one is an error, not a
// call with a placeholder.
func TestExpandStepResults(t *testing.T) {
	results := []map[string]any{{"iid": float64(8), "project": "platform/api"}, nil}
	got, err := expand(map[string]any{"iid": "{step0.iid}", "project": "{step0.project}", "note": "{step0}"}, "r", results)
	if err != nil || got["iid"] != float64(8) || got["project"] != "platform/api" || got["note"] != "{step0}" {
		t.Fatalf("expand = %v, %v", got, err)
	}
	for _, ref := range []string{"{step1.iid}", "{step0.author}", "{step5.iid}"} {
		if _, err := expand(map[string]any{"iid": ref}, "r", results); err == nil {
			t.Errorf("%s: no error", ref)
		}
	}
}
