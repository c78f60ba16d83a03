package gateway

import (
	"encoding/json"
	"errors"
	"io/fs"
	"reflect"
	"strings"
	"testing"

	"github.com/pbac-gateway/pbac/contract"
	"github.com/pbac-gateway/pbac/internal/canon"
	"github.com/pbac-gateway/pbac/jsonrpc"
	"github.com/pbac-gateway/pbac/rego"
)

func TestArgumentLimits(t *testing.T) {
	lim := ArgumentLimits{MaxBytes: 200, MaxStringBytes: 20, MaxDepth: 3, MaxKeys: 4}.withDefaults()
	for _, c := range []struct {
		name, args string
		ok         bool
	}{
		{"small", `{"path":"/a","n":1}`, true},
		{"at the depth limit", `{"a":{"b":[1]}}`, true},
		{"too deep", `{"a":{"b":[[1]]}}`, false},
		{"too big", `{"a":"` + strings.Repeat("x", 19) + `","b":"` + strings.Repeat("y", 19) + `","c":"` + strings.Repeat("z", 19) + `","d":"` + strings.Repeat("w", 19) + `","e":"` + strings.Repeat("v", 19) + `","f":"` + strings.Repeat("u", 19) + `"}`, false},
		{"a long string", `{"a":"` + strings.Repeat("x", 21) + `"}`, false},
		{"a long name", `{"` + strings.Repeat("k", 21) + `":1}`, false},
		{"names at the limit", `{"a":1,"b":{"c":1,"d":1}}`, true},
		{"names over the limit, nested", `{"a":1,"b":{"c":1,"d":1,"e":1}}`, false},
		{"strings in arrays are not names", `{"a":["x","y","z","w","v"]}`, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := lim.check([]byte(c.args))
			if (err == nil) != c.ok || (err != nil && !errors.Is(err, errArguments)) {
				t.Fatalf("check(%s) = %v, want ok=%v", c.args, err, c.ok)
			}
		})
	}
	if d := (ArgumentLimits{}).withDefaults(); d != DefaultArgumentLimits() {
		t.Fatalf("zero limits take %+v", d)
	}
}

// shippedRules are the shipped policy data's rules for tool.
func shippedRules(t testing.TB, tool string) *toolRules {
	t.Helper()
	data, err := fs.ReadFile(rego.Sources(), "data.json")
	if err != nil {
		t.Fatal(err)
	}
	d, err := contract.ParseData(data)
	if err != nil {
		t.Fatal(err)
	}
	r := newCatalogue("shipped", d).tools[tool]
	if r == nil {
		t.Fatalf("%s is not catalogued", tool)
	}
	return r
}

func TestParseCatalogue(t *testing.T) {
	read := shippedRules(t, "drive.read_file")
	if read.kinds["path"] != canon.KindPath || read.actor != "" || read.lookup != nil {
		t.Fatalf("drive.read_file: %+v", read)
	}
	job := shippedRules(t, "jenkins.get_build_log")
	// declared a name, and protected by a rule with path prefixes
	if job.kinds["job"] != canon.KindName || job.kinds["path"] != canon.KindRef {
		t.Fatalf("jenkins.get_build_log: %+v", job.kinds)
	}
	sql := shippedRules(t, "database.query")
	if _, ok := sql.kinds["sql"]; ok || !reflect.DeepEqual(sql.names, []string{"sql"}) {
		t.Fatalf("database.query: %+v %v (sql is looked at, not a path)", sql.kinds, sql.names)
	}
	approve := shippedRules(t, "gitlab.approve_merge_request")
	if approve.actor != "author" || approve.lookup == nil || approve.lookup.Tool != "get_merge_request" || approve.lookup.Field != "author" {
		t.Fatalf("gitlab.approve_merge_request: %+v", approve)
	}
	if _, err := contract.ParseData([]byte(`{"catalogue": 7}`)); err == nil {
		t.Fatal("a catalogue that is not an object was read")
	}
}

func members(t testing.TB, args string) []jsonrpc.Member {
	t.Helper()
	m, err := jsonrpc.Members([]byte(args))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestCheckArguments: issue 14 High #2 and #3 before policy — every
// spelling a backend might read otherwise, another spelling of an argument
// name, and an actor that is not the caller are refused.
func TestCheckArguments(t *testing.T) {
	lim := DefaultArgumentLimits()
	read := shippedRules(t, "drive.read_file")
	approve := shippedRules(t, "gitlab.approve_merge_request")
	for _, c := range []struct {
		name  string
		rules *toolRules
		args  string
		ok    bool
		fill  bool
	}{
		{"canonical path", read, `{"path":"/prod/secrets/db.env"}`, true, false},
		{"leading space", read, `{"path":" /prod/secrets/db.env"}`, false, false},
		{"leading tab", read, `{"path":"\t/prod/secrets/db.env"}`, false, false},
		{"leading newline", read, `{"path":"\n/prod/secrets/db.env"}`, false, false},
		{"NUL", read, `{"path":"/prod/secrets/db.env\u0000"}`, false, false},
		{"escaped fullwidth solidus", read, `{"path":"/prod\uff0fsecrets/db.env"}`, false, false},
		{"replacement character", read, `{"path":"/prod/\ufffd"}`, false, false},
		{"percent", read, `{"path":"/prod%2fsecrets/db.env"}`, false, false},
		{"not a string", read, `{"path":["/prod/secrets/db.env"]}`, false, false},
		{"null", read, `{"path":null}`, false, false},
		{"Path", read, `{"Path":"/prod/secrets/db.env"}`, false, false},
		{"PATH beside path", read, `{"path":"/public/a","PATH":"/prod/secrets/db.env"}`, false, false},
		{"a name with a zero-width space", read, `{"pa\u200bth":"/prod/secrets/db.env"}`, false, false},
		{"long s", shippedRules(t, "database.query"), `{"\u017fql":"select 1"}`, false, false},
		{"too many segments", read, `{"path":"` + strings.Repeat("/a", 65) + `"}`, false, false},
		{"too long", read, `{"path":"/` + strings.Repeat("a", 1024) + `"}`, false, false},
		{"actor is the caller", approve, `{"project":"platform/api","iid":7,"author":"alice"}`, true, false},
		{"actor left out", approve, `{"project":"platform/api","iid":7}`, true, true},
		{"actor with a leading space", approve, `{"project":"platform/api","iid":7,"author":" alice"}`, false, false},
		{"actor upper-cased", approve, `{"project":"platform/api","iid":7,"author":"ALICE"}`, false, false},
		{"actor someone else", approve, `{"project":"platform/api","iid":7,"author":"bob"}`, false, false},
		{"actor not a string", approve, `{"project":"platform/api","iid":7,"author":7}`, false, false},
		{"actor spelled Author", approve, `{"project":"platform/api","iid":7,"Author":"bob"}`, false, false},
		{"project not canonical", approve, `{"project":"platform//api","iid":7}`, false, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			fill, err := c.rules.checkArguments(members(t, c.args), "alice", lim)
			if (err == nil) != c.ok || fill != c.fill || (err != nil && !errors.Is(err, errArguments)) {
				t.Fatalf("checkArguments(%s) = %v, %v; want ok=%v fill=%v", c.args, fill, err, c.ok, c.fill)
			}
		})
	}
	if _, err := approve.checkArguments(members(t, `{"author":"alice"}`), "", lim); err == nil {
		t.Fatal("a caller without a token named an actor")
	}
}

func TestWithArgument(t *testing.T) {
	for _, c := range []struct{ body, want string }{
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{}}}`, `{"author":"c1"}`},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{ }}}`, `{"author":"c1" }`},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"arguments": {"iid":7} ,"name":"t"}}`, `{"author":"c1","iid":7}`},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":{"a":{"b":"}"}}}}`, `{"author":"c1","a":{"b":"}"}}`},
	} {
		msg, err := jsonrpc.Parse([]byte(c.body), 64)
		if err != nil {
			t.Fatal(err)
		}
		out, err := withArgument(msg, "author", "c1", 64)
		if err != nil {
			t.Fatalf("%s: %v", c.body, err)
		}
		if string(out.Arguments) != c.want || out.Name != "t" || string(out.Params["arguments"]) != c.want {
			t.Fatalf("%s: arguments %s, want %s", c.body, out.Arguments, c.want)
		}
		// Nothing else of the body changed.
		if strings.Replace(string(out.Raw), c.want, string(msg.Arguments), 1) != c.body {
			t.Fatalf("%s became %s", c.body, out.Raw)
		}
	}
	if _, err := withArgument(&jsonrpc.Message{Raw: []byte(`{}`), Arguments: []byte(`{}`)}, "a", "b", 64); err == nil {
		t.Fatal("arguments that are not part of the message were spliced")
	}
}

// FuzzArguments: whatever a client sends as arguments, the limits and the
// catalogue's checks never panic, and filling in an actor yields a
// message that parses, whose arguments are the actor followed by exactly
// the members sent.
func FuzzArguments(f *testing.F) {
	for _, s := range []string{`{}`, `{"path":"/a"}`, `{"path":" /a","Path":1}`, `{"author":"x","iid":7}`, `{"a":{"b":[1,{"c":"\u0000"}]}}`,
		`{"project":"platform/api","iid":7}`} {
		f.Add(s)
	}
	read := shippedRules(f, "drive.read_file")
	approve := shippedRules(f, "gitlab.approve_merge_request")
	lim := DefaultArgumentLimits()
	f.Fuzz(func(t *testing.T, args string) {
		body := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"t","arguments":` + args + `}}`
		msg, err := jsonrpc.Parse([]byte(body), 64)
		if err != nil || msg.Arguments == nil {
			return
		}
		_ = lim.check(msg.Arguments)
		ms, err := jsonrpc.Members(msg.Arguments)
		if err != nil {
			t.Fatalf("parsed arguments %s do not parse again: %v", msg.Arguments, err)
		}
		_, _ = read.checkArguments(ms, "alice", lim)
		if fill, err := approve.checkArguments(ms, "alice", lim); err != nil || !fill {
			return
		}
		out, err := withArgument(msg, "author", "alice", 64)
		if err != nil {
			t.Fatalf("fill in the actor of %s: %v", body, err)
		}
		got, err := jsonrpc.Members(out.Arguments)
		if err != nil || len(got) != len(ms)+1 || got[0].Key != "author" || string(got[0].Raw) != `"alice"` {
			t.Fatalf("filled in %s: %v", out.Arguments, err)
		}
		for i, m := range ms {
			if got[i+1].Key != m.Key || string(got[i+1].Raw) != string(m.Raw) {
				t.Fatalf("member %d changed: %s", i, out.Arguments)
			}
		}
		var v any
		if json.Unmarshal(out.Raw, &v) != nil {
			t.Fatalf("%s is not JSON", out.Raw)
		}
	})
}
