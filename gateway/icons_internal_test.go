package gateway

import (
	"encoding/json"
	"testing"
)

// TestIconFilter: an icon passes only from an allowed source, as an https
// URL without credentials (or a data: URI when allowed); the rest, and an
// icons member in another letter case, are removed.
func TestIconFilter(t *testing.T) {
	f := iconFilter{"https://static.example.com/icons/", "data:image/png"}
	for _, tc := range []struct {
		src  string
		want bool
	}{
		{"https://static.example.com/icons/jira.png", true},
		{"data:image/png;base64,iVBORw0KGgo=", true},
		{"https://static.example.com/icons-evil/x.png", false},
		{"https://tracker.example.net/pixel.png?u=alice", false},
		{"http://static.example.com/icons/jira.png", false},
		{"https://user:pw@static.example.com/icons/jira.png", false},
		{"https://static.example.com/icons/../../admin", false},
		{"https://static.example.com/icons/%2e%2e/admin", false},
		{"data:image/svg+xml,<svg/>", false},
		{"https://static.example.com/icons/a b.png", false},
		{"", false},
	} {
		if got := f.allows(tc.src); got != tc.want {
			t.Errorf("allows(%q) = %v, want %v", tc.src, got, tc.want)
		}
	}
	if (iconFilter(nil)).allows("https://static.example.com/icons/jira.png") {
		t.Error("no sources configured, an icon passed")
	}
	for _, tc := range []struct{ in, want string }{
		{`{"name":"t","icons":[{"src":"https://tracker.example.net/p.png"},{"src":"https://static.example.com/icons/t.png","sizes":["48x48"]}]}`,
			`{"icons":[{"sizes":["48x48"],"src":"https://static.example.com/icons/t.png"}],"name":"t"}`},
		{`{"name":"t","icons":[{"src":"https://tracker.example.net/p.png"}]}`, `{"name":"t"}`},
		{`{"name":"t","Icons":[{"src":"https://static.example.com/icons/t.png"}]}`, `{"name":"t"}`},
		{`{"name":"t","\u0069cons":[{"src":"https://tracker.example.net/p.png"}]}`, `{"name":"t"}`},
		{`{"name":"t","icons":"https://tracker.example.net/p.png"}`, `{"name":"t"}`},
		{`{"name":"t"}`, `{"name":"t"}`},
	} {
		got := string(f.stripIconsRaw([]byte(tc.in)))
		var a, b any
		if json.Unmarshal([]byte(got), &a) != nil || json.Unmarshal([]byte(tc.want), &b) != nil {
			t.Fatalf("not JSON: %s", got)
		}
		ga, _ := json.Marshal(a)
		wb, _ := json.Marshal(b)
		if string(ga) != string(wb) {
			t.Errorf("stripIconsRaw(%s)\n= %s\nwant %s", tc.in, got, tc.want)
		}
	}
}
