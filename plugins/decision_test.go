package plugins_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	jsonv2 "github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"

	"github.com/pbac-gateway/pbac/internal/latency"
	"github.com/pbac-gateway/pbac/plugins"
)

// TestParseDecision: a result is an object with a boolean allow; anything
// else is malformed, so the caller denies. The stricter cases are the ones
// encoding/json would have let through.
func TestParseDecision(t *testing.T) {
	for _, c := range []struct {
		name, raw string
		allow     bool
		reasons   []string
		malformed bool
	}{
		{name: "allow", raw: `{"allow":true,"reasons":["developer tier may write jira"],"tier":"developer"}`, allow: true, reasons: []string{"developer tier may write jira"}},
		{name: "deny", raw: `{"allow":false,"reasons":["a","b"],"extra":{"x":[1,2,{"y":null}]}}`, reasons: []string{"a", "b"}},
		{name: "no reasons", raw: `{"allow":false}`},
		{name: "null reasons", raw: `{"reasons":null,"allow":true}`, allow: true},
		{name: "empty reasons", raw: `{"allow":true,"reasons":[]}`, allow: true, reasons: []string{}},
		{name: "escaped reason", raw: `{"allow":false,"reasons":["tab\there \u00e9"]}`, reasons: []string{"tab\there é"}},
		{name: "escaped names", raw: `{"\u0061llow":true,"re\u0061sons":["x"]}`, allow: true, reasons: []string{"x"}},
		{name: "white space everywhere", raw: " \n{ \"x\" : [ 1 , { \"y\" : [ ] } ] ,\t\"allow\" : false , \"reasons\" : [ \"a\" , \"b\\\"]\" ] }\r\n", reasons: []string{"a", "b\"]"}},
		{name: "allow only nested", raw: `{"x":{"allow":true},"y":["allow",true]}`, malformed: true},
		{name: "allow inside a string", raw: `{"x":"\"allow\":true"}`, malformed: true},
		{name: "numbers and literals skipped", raw: `{"n":-1.5e+3,"t":true,"z":null,"allow":true}`, allow: true},
		{name: "no allow", raw: `{"reasons":[]}`, malformed: true},
		{name: "null allow", raw: `{"allow":null}`, malformed: true},
		{name: "string allow", raw: `{"allow":"true"}`, malformed: true},
		{name: "number reason", raw: `{"allow":true,"reasons":[1]}`, malformed: true},
		{name: "null reason", raw: `{"allow":false,"reasons":[null,"a",null]}`, reasons: []string{"", "a", ""}},
		{name: "not an object", raw: `[{"allow":true}]`, malformed: true},
		{name: "two values", raw: `{"allow":true} {"allow":false}`, malformed: true},
		{name: "truncated", raw: `{"allow":true,"reasons":["a"`, malformed: true},
		{name: "empty", raw: ``, malformed: true},
		// Stricter than encoding/json:
		{name: "duplicate allow", raw: `{"allow":false,"allow":true}`, malformed: true},
		{name: "case variant overrides", raw: `{"allow":false,"ALLOW":true}`, reasons: nil},
		{name: "case variant alone", raw: `{"Allow":true}`, malformed: true},
		{name: "duplicate nested name", raw: `{"allow":true,"x":{"a":1,"a":2}}`, malformed: true},
		{name: "invalid UTF-8", raw: "{\"allow\":true,\"reasons\":[\"\xff\"]}", malformed: true},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, err := plugins.ParseDecision("v1", []byte(c.raw))
			if c.malformed {
				if !errors.Is(err, plugins.ErrMalformedDecision) {
					t.Fatalf("ParseDecision(%s) = %+v, %v; want ErrMalformedDecision", c.raw, d, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseDecision(%s): %v", c.raw, err)
			}
			if d.Allow != c.allow || !slices.Equal(d.Reasons, c.reasons) || (d.Reasons == nil) != (c.reasons == nil) ||
				d.Version != "v1" || string(d.Result) != c.raw {
				t.Fatalf("ParseDecision(%s) = %+v; want allow %v reasons %q", c.raw, d, c.allow, c.reasons)
			}
		})
	}
}

// FuzzParseDecision checks the decision parser against encoding/json/v2,
// the decoder it replaced, which must agree exactly, and against
// encoding/json, the one before that: what it accepts has the allow it read as the literal
// under the exact name "allow"; where both read a result they agree; where
// only one reads it, the result is one parseDecision refuses on purpose
// (not I-JSON: a duplicate name or invalid UTF-8) or it holds a top-level
// name that only differs in case from allow or reasons, which
// encoding/json matches and parseDecision ignores.
func FuzzParseDecision(f *testing.F) {
	for _, s := range []string{
		`{"allow":true,"reasons":["r"]}`, `{"allow":false}`, `{"allow":null}`, `{"reasons":null,"allow":true}`,
		`{"allow":false,"ALLOW":true}`, `{"allow":true,"x":{"a":1,"a":2}}`, "{\"allow\":true,\"reasons\":[\"\xff\"]}",
		`{"allow":true,"reasons":[1]}`, `{"allow":true,"reasons":[null]}`, `[]`, `{"allow":true,"ALLOW":null}`, `{"allow":true,"Reasons":[1]}`, `{"allow":true,"required_scope":"jira:write","approval":{"required":false}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		got, err := plugins.ParseDecision("v", raw)
		// The decoder it replaced, encoding/json/v2, must agree exactly:
		// the same results accepted, with the same allow and reasons.
		var v2 referenceShape
		v2Err := jsonv2.Unmarshal(raw, &v2)
		v2OK := v2Err == nil && v2.Allow != nil
		if (err == nil) != v2OK {
			t.Fatalf("ParseDecision(%q): %v; encoding/json/v2: allow %v, %v", raw, err, v2.Allow, v2Err)
		}
		if err == nil && (got.Allow != *v2.Allow || !slices.Equal(got.Reasons, v2.Reasons) || (got.Reasons == nil) != (v2.Reasons == nil)) {
			t.Fatalf("ParseDecision(%q) = %+v; encoding/json/v2: allow %v reasons %q", raw, got, *v2.Allow, v2.Reasons)
		}
		var ref referenceShape
		refErr := json.Unmarshal(raw, &ref)
		refOK := refErr == nil && ref.Allow != nil
		// The object's members by their exact names; nil when raw is not
		// one object.
		var members map[string]json.RawMessage
		if json.Unmarshal(raw, &members) != nil {
			members = nil
		}
		if err != nil {
			if !errors.Is(err, plugins.ErrMalformedDecision) {
				t.Fatalf("ParseDecision(%q): %v does not wrap ErrMalformedDecision", raw, err)
			}
			if refOK && jsontext.Value(raw).IsValid() && !caseVariantName(members) {
				t.Fatalf("ParseDecision(%q) refused what encoding/json reads: %v", raw, err)
			}
			return
		}
		// What it accepts it reads from the exact member: allow is the
		// literal the object holds under "allow".
		if members == nil {
			t.Fatalf("ParseDecision(%q) = %+v; it is not one JSON object", raw, got)
		}
		if lit := string(bytes.TrimSpace(members["allow"])); lit != strconv.FormatBool(got.Allow) {
			t.Fatalf("ParseDecision(%q) = allow %v; the object's allow is %s", raw, got.Allow, lit)
		}
		if caseVariantName(members) {
			return // encoding/json may have read another member, or refused its type
		}
		if !refOK {
			t.Fatalf("ParseDecision(%q) = %+v; encoding/json refuses it: %v", raw, got, refErr)
		}
		if got.Allow != *ref.Allow || !slices.Equal(got.Reasons, ref.Reasons) || !bytes.Equal(got.Result, raw) {
			t.Fatalf("ParseDecision(%q) = %+v; encoding/json: allow %v reasons %q", raw, got, *ref.Allow, ref.Reasons)
		}
	})
}

// referenceShape is what parseDecision reads, as encoding/json read it.
type referenceShape struct {
	Allow   *bool    `json:"allow"`
	Reasons []string `json:"reasons"`
}

// caseVariantName reports whether an object's members hold one whose
// name is allow or reasons in another case.
func caseVariantName(members map[string]json.RawMessage) bool {
	for k := range members {
		if (strings.EqualFold(k, "allow") && k != "allow") || (strings.EqualFold(k, "reasons") && k != "reasons") {
			return true
		}
	}
	return false
}

// BenchmarkParseDecision: a pbac/tool_call result read by parseDecision,
// against encoding/json and encoding/json/v2 (what it replaced) in the
// same run, with the CPU's caches warm and evicted before each read (as
// between calls a millisecond apart):
// go test -run '^$' -bench ParseDecision ./plugins/
func BenchmarkParseDecision(b *testing.B) {
	raw := []byte(`{"access":"write","allow":true,"insufficient_scope":false,"public_reasons":["developer tier may write jira"],"reasons":["developer tier may write jira"],"required_scope":"jira:write","resource":"jira","tier":"developer"}`)
	evict := latency.EvictCaches()
	for _, dec := range []struct {
		name string
		read func() error
	}{
		{"encoding-json", func() error {
			var s referenceShape
			if err := json.Unmarshal(raw, &s); err != nil || s.Allow == nil {
				return fmt.Errorf("%v %v", s, err)
			}
			return nil
		}},
		{"encoding-json-v2", func() error {
			var s referenceShape
			if err := jsonv2.Unmarshal(raw, &s); err != nil || s.Allow == nil {
				return fmt.Errorf("%v %v", s, err)
			}
			return nil
		}},
		{"parseDecision", func() error {
			_, err := plugins.ParseDecision("v", raw)
			return err
		}},
	} {
		for _, cold := range []bool{false, true} {
			name := dec.name
			if cold {
				name += "/cold"
			}
			b.Run(name, func(b *testing.B) {
				b.ReportAllocs()
				var total time.Duration
				for i := 0; b.Loop(); i++ {
					if cold {
						evict(i)
					}
					start := time.Now()
					if err := dec.read(); err != nil {
						b.Fatal(err)
					}
					total += time.Since(start)
				}
				b.ReportMetric(float64(total.Nanoseconds())/float64(b.N)/1e3, "µs/read")
			})
		}
	}
}
