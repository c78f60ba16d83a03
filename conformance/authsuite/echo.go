package authsuite

import (
	"encoding/json"
	"io"
	"net/http"
)

// EchoBackend is a minimal MCP backend for the no-token-passthrough check:
// it answers initialize (and anything else) with the request headers it
// received, in the result's instructions, so the suite can see what the
// gateway forwarded. It keeps no sessions.
func EchoBackend() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		var msg struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err := json.Unmarshal(body, &msg); err != nil || len(msg.ID) == 0 {
			w.WriteHeader(http.StatusAccepted)
			return
		}
		headers, _ := json.Marshal(r.Header)
		result := map[string]any{
			"protocolVersion": "2025-11-25",
			"capabilities":    map[string]any{},
			"serverInfo":      map[string]any{"name": "pbac-conformance-echo", "version": "1"},
			"instructions":    string(headers),
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"jsonrpc": "2.0", "id": msg.ID, "result": result})
	})
}

// EchoedHeaders reads the headers an EchoBackend put in its answer (JSON or
// a single SSE event); nil if there are none.
func EchoedHeaders(body []byte) http.Header {
	var resp struct {
		Result struct {
			Instructions string `json:"instructions"`
		} `json:"result"`
	}
	if err := json.Unmarshal(body, &resp); err != nil {
		for _, line := range splitLines(body) {
			if rest, ok := cutPrefix(line, "data:"); ok && json.Unmarshal([]byte(rest), &resp) == nil {
				break
			}
		}
	}
	var h http.Header
	if json.Unmarshal([]byte(resp.Result.Instructions), &h) != nil {
		return nil
	}
	return h
}
