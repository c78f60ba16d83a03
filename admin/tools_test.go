package admin

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/pbac-gateway/pbac/contract"
	tdstore "github.com/pbac-gateway/pbac/tooldefs/store"
)

func TestToolReviewBody(t *testing.T) {
	hash := "sha256:" + strings.Repeat("ab", 32)
	for _, tc := range []struct {
		name, action, body string
		ok                 bool
	}{
		{"catalogue", ToolCatalogue, `{"hash":"` + hash + `","resource":"drive","access":"read"}`, true},
		{"approve", ToolApprove, `{"hash":"` + hash + `"}`, true},
		{"dismiss", ToolDismiss, `{"hash":"` + hash + `"}`, true},
		{"reject", ToolReject, `{"hash":"` + hash + `"}`, true},
		{"catalogue without a scope", ToolCatalogue, `{"hash":"` + hash + `"}`, false},
		{"approve naming a scope", ToolApprove, `{"hash":"` + hash + `","access":"read"}`, false},
		{"no hash", ToolApprove, `{}`, false},
		{"a short hash", ToolApprove, `{"hash":"sha256:abc"}`, false},
		{"an upper-case hash", ToolApprove, `{"hash":"` + strings.ToUpper(hash) + `"}`, false},
		{"an unknown field", ToolApprove, `{"hash":"` + hash + `","pin":"x"}`, false},
		{"two objects", ToolApprove, `{"hash":"` + hash + `"} {}`, false},
		{"not JSON", ToolApprove, `hash`, false},
		{"empty", ToolApprove, ``, false},
		{"an unknown action", "delete", `{"hash":"` + hash + `"}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, err := ToolReviewBody(strings.NewReader(tc.body), tc.action)
			if tc.ok != (err == nil) {
				t.Fatalf("ToolReviewBody = %+v, %v; want ok=%v", d, err, tc.ok)
			}
			if err != nil && !errors.Is(err, ErrBadToolReview) {
				t.Fatalf("error %v does not wrap ErrBadToolReview", err)
			}
			if err == nil && (d.Hash != hash || d.Action != tc.action) {
				t.Fatalf("decision = %+v", d)
			}
		})
	}
}

func TestReviewedStatus(t *testing.T) {
	h1, h2 := "sha256:"+strings.Repeat("1", 64), "sha256:"+strings.Repeat("2", 64)
	at := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	entry := func(hash string, review *tdstore.Review) tdstore.Entry {
		return tdstore.Entry{Backend: "fs", Name: "read", Hash: hash, Review: review, Versions: []tdstore.Version{
			{Hash: hash, Definition: json.RawMessage(`{"name":"read","description":"now"}`)}}}
	}
	cat := func(pin string) *contract.Data {
		return &contract.Data{Catalogue: map[string]contract.Tool{"fs.read": {Resource: "drive", Access: "read", Pin: pin}}}
	}
	for _, tc := range []struct {
		name string
		e    tdstore.Entry
		data *contract.Data
		want string
	}{
		{"new", entry(h1, nil), &contract.Data{}, ToolUncatalogued},
		{"dismissed", entry(h1, &tdstore.Review{State: tdstore.StateDismissed, Hash: h1, At: at}), &contract.Data{}, ToolDismissed},
		{"dismissed, then changed", entry(h2, &tdstore.Review{State: tdstore.StateDismissed, Hash: h1, At: at}), &contract.Data{}, ToolUncatalogued},
		{"catalogued without a pin", entry(h1, nil), cat(""), ToolCatalogued},
		{"pinned", entry(h1, nil), cat(h1), ToolPinned},
		{"changed", entry(h2, nil), cat(h1), ToolChanged},
		{"rejected", entry(h2, &tdstore.Review{State: tdstore.StateRejected, Hash: h2, At: at}), cat(h1), ToolRejected},
		{"rejected, then changed again", entry(h2, &tdstore.Review{State: tdstore.StateRejected, Hash: h1, At: at}), cat("sha256:" + strings.Repeat("3", 64)), ToolChanged},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rt := reviewed(tc.e, tc.data)
			if rt.Status != tc.want {
				t.Fatalf("status = %s, want %s", rt.Status, tc.want)
			}
			if rt.Tool != "fs.read" || rt.Description != "now" {
				t.Fatalf("reviewed = %+v", rt)
			}
		})
	}
}

func TestCatalogueEdits(t *testing.T) {
	data := []byte(`{"catalogue":{"drive.read_file":{"resource":"drive","access":"read","reach":{"arg":"path","default":"/"}}},"backends":{"drive":{"resource":"drive"}},"n":12345678901234567890}`)
	out, err := setCatalogueEntry(data, "fs.read", func(e map[string]any) error {
		if e != nil {
			t.Fatalf("a missing entry was seen as %v", e)
		}
		return nil
	}, map[string]any{"resource": "drive", "access": "read", "pin": "p"})
	if err != nil {
		t.Fatal(err)
	}
	out, set, err := defaultBackendResource(out, "fs", "drive")
	if err != nil || !set {
		t.Fatalf("defaultBackendResource = %v, %v", set, err)
	}
	if _, again, _ := defaultBackendResource(out, "fs", "jira"); again {
		t.Fatal("a backend's existing entry was overwritten")
	}
	var got map[string]any
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	if e := got["catalogue"].(map[string]any)["fs.read"].(map[string]any); e["pin"] != "p" {
		t.Errorf("new entry = %v", e)
	}
	if b := got["backends"].(map[string]any)["fs"].(map[string]any); b["resource"] != "drive" {
		t.Errorf("backend = %v", b)
	}
	if !strings.Contains(string(out), "12345678901234567890") || !strings.Contains(string(out), `"reach":{"arg":"path","default":"/"}`) {
		t.Errorf("the rest of the data changed: %s", out)
	}
	out, err = setCatalogueEntry(out, "fs.read", func(e map[string]any) error { e["pin"] = "q"; return nil }, nil)
	if err != nil || !strings.Contains(string(out), `"pin":"q"`) {
		t.Fatalf("re-pin: %s, %v", out, err)
	}
}
