package gateway

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"

	"github.com/pbac-gateway/pbac/audit"
	"github.com/pbac-gateway/pbac/jsonrpc"
	"github.com/pbac-gateway/pbac/tooldefs"
)

// listedKind is what a list method other than tools/list lists: the
// result's array, and the catalogue name of each item (its policy name, as
// a call to it is decided: "<backend>.prompt:<name>",
// "<backend>.resource:<uri>").
type listedKind struct {
	method, key string
	name        func(backend string, item map[string]json.RawMessage) (string, bool)
}

// listedKinds are the lists filtered by pbac/list besides tools/list.
var listedKinds = map[string]listedKind{
	"prompts/list": {method: "prompts/list", key: "prompts", name: func(b string, it map[string]json.RawMessage) (string, bool) {
		return itemName(b, "prompt:", it["name"])
	}},
	"resources/list": {method: "resources/list", key: "resources", name: func(b string, it map[string]json.RawMessage) (string, bool) {
		return itemName(b, "resource:", it["uri"])
	}},
	// A template is named "<backend>.template:<literal>", the literal part
	// of its URI before its first expression; pbac/list shows it when a
	// prefix entry covers that literal and no stricter entry lies below
	// it. A template with an expression that may expand to "/", "?", "#"
	// or ";" (an RFC 6570 operator) is never listed: its URIs are not
	// under its literal part's prefix alone.
	"resources/templates/list": {method: "resources/templates/list", key: "resourceTemplates", name: func(b string, it map[string]json.RawMessage) (string, bool) {
		t, ok := jsonrpc.Unquote(it["uriTemplate"])
		if !ok || templateOperator.MatchString(t) {
			return "", false
		}
		literal, _, _ := strings.Cut(t, "{")
		if literal == "" {
			return "", false
		}
		return b + ".template:" + literal, true
	}},
}

// templateOperator finds an RFC 6570 expression with an operator.
var templateOperator = regexp.MustCompile(`\{[+#./;?&=,!@|]`)

func itemName(backend, prefix string, raw json.RawMessage) (string, bool) {
	v, ok := jsonrpc.Unquote(raw)
	if !ok || v == "" {
		return "", false
	}
	return backend + "." + prefix + v, true
}

// filterListed rewrites a prompts or resources list (plain JSON or the SSE
// events carrying it) to the items pbac/list lets this caller see, each
// passed on as the backend wrote it (compacted). An item that cannot be
// read, whose keys repeat, or whose
// name (or URI) is listed twice, is dropped: which one a client would keep
// is its guess. The list is private to the caller (markPrivate).
func (g *Gateway) filterListed(ctx context.Context, kind listedKind, backend *Backend, cl *caller, body []byte, sse bool, rec *audit.Record) ([]byte, int, error) {
	return filterListAnswer(body, sse, kind.method, kind.key, func(items []json.RawMessage) ([]json.RawMessage, error) {
		names := make([]string, len(items))
		count := map[string]int{}
		for i, raw := range items {
			// An item whose keys repeat (or differ only in case) says two
			// things; it is not passed on.
			var it map[string]json.RawMessage
			if tooldefs.CheckObjectKeys(raw) != nil || json.Unmarshal(raw, &it) != nil {
				continue
			}
			if n, ok := kind.name(backend.Name, it); ok {
				names[i] = n
				count[n]++
			}
		}
		asked := make([]string, 0, len(names))
		for _, n := range names {
			if n != "" && count[n] == 1 {
				asked = append(asked, n)
			}
		}
		allowed, version, err := g.allowedTools(ctx, backend, cl, kind.method, asked, nil)
		if err != nil {
			return nil, err
		}
		rec.PolicyVersion = version
		out := make([]json.RawMessage, 0, len(items))
		for i, raw := range items {
			if n := names[i]; n != "" && count[n] == 1 && allowed[n] {
				out = append(out, g.icons.stripIconsRaw(raw))
			}
		}
		return out, nil
	})
}
