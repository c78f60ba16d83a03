package gateway

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"

	"github.com/pbac-gateway/pbac/jsonrpc"
)

// Icons in listed tools, prompts, resources and templates (MCP 2025-11-25's
// "icons": [{"src": …}]) are addresses a client fetches on its own: a
// backend can learn who looks at its tools and when (tracking), or point
// clients at addresses inside the network they run in (SSRF). The gateway
// passes an icon on only when its src starts with one of
// Config.IconSources; by default it passes none.

// iconFilter says which icon sources pass; nil passes none.
type iconFilter []string

// allows reports whether src may reach clients: an https URL without
// credentials, or a data: URI, starting with an allowed source.
func (f iconFilter) allows(src string) bool {
	if len(f) == 0 || src == "" || strings.ContainsAny(src, " \t\r\n\\") {
		return false
	}
	// A dot segment would take the fetch out of the allowed path.
	if l := strings.ToLower(src); strings.Contains(l, "/..") || strings.Contains(l, "/./") || strings.Contains(l, "%2e") || strings.HasSuffix(l, "/.") {
		return false
	}
	if !strings.HasPrefix(src, "data:") {
		u, err := url.Parse(src)
		if err != nil || u.Scheme != "https" || u.User != nil || u.Host == "" || u.String() != src {
			return false
		}
	}
	for _, p := range f {
		if strings.HasPrefix(src, p) {
			return true
		}
	}
	return false
}

// stripIcons removes from item every icon whose src f does not allow (and
// the icons member when none is left); it reports whether item changed.
func (f iconFilter) stripIcons(item map[string]json.RawMessage) bool {
	changed := false
	for k := range item {
		// A decoder that matches keys case-insensitively (Go's) reads
		// "Icons" as icons.
		if k != "icons" && strings.EqualFold(k, "icons") {
			delete(item, k)
			changed = true
		}
	}
	raw, ok := item["icons"]
	if !ok {
		return changed
	}
	var icons []map[string]json.RawMessage
	if json.Unmarshal(raw, &icons) != nil {
		delete(item, "icons") // not a list of icons: nothing a client should fetch
		return true
	}
	kept := icons[:0]
	for _, ic := range icons {
		if src, ok := jsonrpc.Unquote(ic["src"]); ok && f.allows(src) {
			kept = append(kept, ic)
		}
	}
	if len(kept) == len(icons) {
		return changed
	}
	if len(kept) == 0 {
		delete(item, "icons")
	} else {
		item["icons"], _ = json.Marshal(kept)
	}
	return true
}

// stripIconsRaw is stripIcons on an item's JSON (returned as it is when it
// has no icons to remove).
func (f iconFilter) stripIconsRaw(raw []byte) []byte {
	if !bytes.Contains(bytes.ToLower(raw), []byte(`icons"`)) && !bytes.Contains(raw, []byte(`\u`)) {
		return raw
	}
	var item map[string]json.RawMessage
	if json.Unmarshal(raw, &item) != nil || !f.stripIcons(item) {
		return raw
	}
	out, err := json.Marshal(item)
	if err != nil {
		return raw
	}
	return out
}

// checkIconSource refuses an icon source that is not "data:" (or a data:
// prefix) or an https URL prefix with a host and a path.
func checkIconSource(src string) error {
	if strings.HasPrefix(src, "data:") {
		return nil
	}
	u, err := url.Parse(src)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil || !strings.HasSuffix(u.Path, "/") {
		return fmt.Errorf("gateway: icon source %q: want data: or an https URL ending in /", src)
	}
	return nil
}

// servesServerInfo tells whether method's result names the server
// (serverInfo: initialize; in _meta, server/discover).
func servesServerInfo(method string) bool {
	return method == "initialize" || method == "server/discover"
}

// metaServerInfo is the _meta key under which 2026-07-28 results name
// their server.
const metaServerInfo = "io.modelcontextprotocol/serverInfo"

// serverInfoIcons holds the icons of a result's serverInfo (and of
// _meta's, from 2026-07-28) to the allowed sources; any other message is
// returned as it is.
func (f iconFilter) serverInfoIcons(msg []byte) ([]byte, error) {
	if !bytes.Contains(bytes.ToLower(msg), []byte(`icons"`)) && !bytes.Contains(msg, []byte(`\u`)) {
		return msg, nil
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(msg, &m) != nil {
		return msg, nil
	}
	var result map[string]json.RawMessage
	if raw, ok := m["result"]; !ok || json.Unmarshal(raw, &result) != nil {
		return msg, nil
	}
	changed := false
	if info, ok := result["serverInfo"]; ok {
		if out := f.stripIconsRaw(info); !bytes.Equal(out, info) {
			result["serverInfo"], changed = out, true
		}
	}
	var meta map[string]json.RawMessage
	if raw, ok := result["_meta"]; ok && json.Unmarshal(raw, &meta) == nil {
		if info, ok := meta[metaServerInfo]; ok {
			if out := f.stripIconsRaw(info); !bytes.Equal(out, info) {
				meta[metaServerInfo] = out
				result["_meta"], _ = json.Marshal(meta)
				changed = true
			}
		}
	}
	if !changed {
		return msg, nil
	}
	var err error
	if m["result"], err = json.Marshal(result); err != nil {
		return nil, err
	}
	return json.Marshal(m)
}
