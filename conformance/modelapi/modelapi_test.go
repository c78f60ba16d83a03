package modelapi

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
)

// post sends body to path and returns the answer: a JSON body as one
// element, or an event stream's data lines (event names prefixed "event:").
func post(t *testing.T, s *Server, path string, body any) []string {
	t.Helper()
	raw, _ := json.Marshal(body)
	resp, err := http.Post(s.URL()+path, "application/json", strings.NewReader(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: status %d", path, resp.StatusCode)
	}
	var out []string
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		var v json.RawMessage
		if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
			t.Fatal(err)
		}
		return []string{string(v)}
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			out = append(out, d)
		} else if e, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
			out = append(out, "event:"+e)
		}
	}
	return out
}

// toolCall reads the one tool call of an answer (name and arguments as
// JSON), in either API's streaming or whole form; "" when there is none.
func toolCall(t *testing.T, api string, answer []string) (name, args, text string) {
	t.Helper()
	for _, line := range answer {
		if strings.HasPrefix(line, "event:") || line == "[DONE]" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("%s: not JSON: %s", api, line)
		}
		switch api {
		case "anthropic":
			if cb, ok := m["content_block"].(map[string]any); ok && cb["type"] == "tool_use" {
				name = cb["name"].(string)
			}
			if d, ok := m["delta"].(map[string]any); ok {
				if pj, ok := d["partial_json"].(string); ok {
					args += pj
				}
				if tx, ok := d["text"].(string); ok {
					text += tx
				}
			}
			if content, ok := m["content"].([]any); ok {
				for _, c := range content {
					b := c.(map[string]any)
					if b["type"] == "tool_use" {
						name = b["name"].(string)
						raw, _ := json.Marshal(b["input"])
						args = string(raw)
					} else {
						text += b["text"].(string)
					}
				}
			}
		case "responses":
			item, _ := m["item"].(map[string]any)
			if m["type"] == "response.output_text.delta" {
				text += m["delta"].(string)
			}
			items := []any{}
			if m["type"] == "response.output_item.done" {
				items = append(items, item)
			}
			if out, ok := m["output"].([]any); ok && m["type"] == nil {
				items = out
			}
			for _, it := range items {
				it := it.(map[string]any)
				switch it["type"] {
				case "function_call":
					name, args = it["name"].(string), it["arguments"].(string)
					if ns, ok := it["namespace"].(string); ok {
						name = ns + "." + name
					}
				case "message": // streamed text came in deltas
					if m["type"] != nil {
						continue
					}
					for _, c := range it["content"].([]any) {
						text += c.(map[string]any)["text"].(string)
					}
				}
			}
		case "gemini":
			for _, c := range m["candidates"].([]any) {
				content := c.(map[string]any)["content"].(map[string]any)
				for _, p := range content["parts"].([]any) {
					p := p.(map[string]any)
					if tx, ok := p["text"].(string); ok {
						text += tx
					}
					if fc, ok := p["functionCall"].(map[string]any); ok {
						raw, _ := json.Marshal(fc["args"])
						name, args = fc["name"].(string), string(raw)
					}
				}
			}
		case "openai":
			for _, ch := range m["choices"].([]any) {
				c := ch.(map[string]any)
				msg, _ := c["delta"].(map[string]any)
				if msg == nil {
					msg, _ = c["message"].(map[string]any)
				}
				if tx, ok := msg["content"].(string); ok {
					text += tx
				}
				calls, _ := msg["tool_calls"].([]any)
				for _, tc := range calls {
					f := tc.(map[string]any)["function"].(map[string]any)
					name, args = f["name"].(string), f["arguments"].(string)
				}
			}
		}
	}
	return name, args, text
}

// callID is the id of the answer's tool call.
func callID(answer []string) string {
	for _, line := range answer {
		for _, key := range []string{`"id":"toolu_`, `"id":"call_`, `"call_id":"call_`} {
			if i := strings.Index(line, key); i >= 0 {
				rest := line[i+strings.Index(key, `":"`)+3:]
				return rest[:strings.Index(rest, `"`)]
			}
		}
	}
	return ""
}

// TestConversation plays the turns an agent CLI makes with each API, in
// streaming and whole answers: a side request with no tools gets text, a
// prompt with the marker gets a call of the offered tool whose name ends
// with the planned one, and the tool result the client sends back is
// recorded and answered with text.
func TestConversation(t *testing.T) {
	calls := []Call{{Marker: "pbac-allowed", Tool: "drive_read_file", Args: map[string]any{"path": "/team/roadmap.md"}}}
	cases := []struct {
		name, api, path string
		stream          bool
		tool            string
		// first is the request with the prompt; side has no tools; result
		// answers the call with id.
		first, side func(prompt string) map[string]any
		result      func(id, tool, content string) map[string]any
		isError     bool
	}{
		{"anthropic streaming", "anthropic", "/v1/messages", true, "mcp__pbac__drive_read_file",
			func(p string) map[string]any {
				return map[string]any{"model": "m", "stream": true, "tools": []any{map[string]any{"name": "Bash"}, map[string]any{"name": "mcp__pbac__drive_read_file"}},
					// Claude Code puts a system message after the user's.
					"messages": []any{map[string]any{"role": "user", "content": []any{map[string]any{"type": "text", "text": p}}},
						map[string]any{"role": "system", "content": "environment"}}}
			},
			func(p string) map[string]any {
				return map[string]any{"model": "m", "stream": true, "messages": []any{map[string]any{"role": "user", "content": "title: " + p}}}
			},
			func(id, tool, content string) map[string]any {
				return map[string]any{"model": "m", "stream": true, "tools": []any{map[string]any{"name": tool}}, "messages": []any{
					map[string]any{"role": "user", "content": "pbac-allowed"},
					map[string]any{"role": "assistant", "content": []any{map[string]any{"type": "tool_use", "id": id, "name": tool, "input": map[string]any{}}}},
					map[string]any{"role": "user", "content": []any{map[string]any{"type": "tool_result", "tool_use_id": id, "is_error": true,
						"content": []any{map[string]any{"type": "text", "text": content}}}}}}}
			}, true},
		{"anthropic whole", "anthropic", "/v1/messages", false, "mcp__pbac__drive_read_file",
			func(p string) map[string]any {
				return map[string]any{"model": "m", "tools": []any{map[string]any{"name": "mcp__pbac__drive_read_file"}},
					"messages": []any{map[string]any{"role": "user", "content": p}}}
			},
			func(p string) map[string]any {
				return map[string]any{"model": "m", "messages": []any{map[string]any{"role": "user", "content": p}}}
			},
			func(id, tool, content string) map[string]any {
				return map[string]any{"model": "m", "messages": []any{
					map[string]any{"role": "user", "content": []any{map[string]any{"type": "tool_result", "tool_use_id": id, "content": content}}}}}
			}, false},
		{"openai streaming", "openai", "/v1/chat/completions", true, "pbac_drive_read_file",
			func(p string) map[string]any {
				return map[string]any{"model": "m", "stream": true, "tools": []any{map[string]any{"type": "function", "function": map[string]any{"name": "pbac_drive_read_file"}}},
					"messages": []any{map[string]any{"role": "system", "content": "you are"}, map[string]any{"role": "user", "content": []any{map[string]any{"type": "text", "text": p}}}}}
			},
			func(p string) map[string]any {
				return map[string]any{"model": "m", "stream": true, "messages": []any{map[string]any{"role": "user", "content": "title: " + p}}}
			},
			func(id, tool, content string) map[string]any {
				return map[string]any{"model": "m", "stream": true, "messages": []any{
					map[string]any{"role": "user", "content": "pbac-allowed"},
					map[string]any{"role": "assistant", "tool_calls": []any{map[string]any{"id": id, "type": "function", "function": map[string]any{"name": tool, "arguments": "{}"}}}},
					map[string]any{"role": "tool", "tool_call_id": id, "content": content}}}
			}, false},
		{"openai whole", "openai", "/v1/chat/completions", false, "pbac_drive_read_file",
			func(p string) map[string]any {
				return map[string]any{"model": "m", "tools": []any{map[string]any{"type": "function", "function": map[string]any{"name": "pbac_drive_read_file"}}},
					"messages": []any{map[string]any{"role": "user", "content": p}}}
			},
			func(p string) map[string]any {
				return map[string]any{"model": "m", "messages": []any{map[string]any{"role": "user", "content": p}}}
			},
			func(id, tool, content string) map[string]any {
				return map[string]any{"model": "m", "messages": []any{map[string]any{"role": "tool", "tool_call_id": id,
					"content": []any{map[string]any{"type": "text", "text": content}}}}}
			}, false},
		// Codex offers an MCP server's tools in a namespace, beside its own.
		{"responses streaming", "responses", "/v1/responses", true, "mcp__pbac.drive_read_file",
			func(p string) map[string]any {
				return map[string]any{"model": "m", "stream": true, "tools": []any{
					map[string]any{"type": "function", "name": "exec_command"},
					map[string]any{"type": "namespace", "name": "mcp__pbac", "tools": []any{map[string]any{"type": "function", "name": "drive_read_file"}}}},
					"input": []any{map[string]any{"type": "message", "role": "developer", "content": []any{map[string]any{"type": "input_text", "text": "you are"}}},
						map[string]any{"type": "message", "role": "user", "content": []any{map[string]any{"type": "input_text", "text": p}}}}}
			},
			func(p string) map[string]any {
				return map[string]any{"model": "m", "stream": true, "input": "title: " + p}
			},
			func(id, tool, content string) map[string]any {
				return map[string]any{"model": "m", "stream": true, "input": []any{
					map[string]any{"type": "message", "role": "user", "content": []any{map[string]any{"type": "input_text", "text": "pbac-allowed"}}},
					map[string]any{"type": "function_call", "call_id": id, "namespace": "mcp__pbac", "name": "drive_read_file", "arguments": "{}"},
					map[string]any{"type": "function_call_output", "call_id": id, "output": content}}}
			}, false},
		{"responses whole", "responses", "/v1/responses", false, "drive_read_file",
			func(p string) map[string]any {
				return map[string]any{"model": "m", "tools": []any{map[string]any{"type": "function", "name": "drive_read_file"}}, "input": p}
			},
			func(p string) map[string]any {
				return map[string]any{"model": "m", "input": []any{map[string]any{"type": "message", "role": "user", "content": p}}}
			},
			func(id, tool, content string) map[string]any {
				return map[string]any{"model": "m", "input": []any{map[string]any{"type": "function_call_output", "call_id": id,
					"output": []any{map[string]any{"type": "input_text", "text": content}}}}}
			}, false},
		// Gemini CLI keeps the dot of the gateway's tool names.
		{"gemini streaming", "gemini", "/v1beta/models/m:streamGenerateContent?alt=sse", true, "mcp_pbac_drive.read_file",
			func(p string) map[string]any {
				return map[string]any{"tools": []any{map[string]any{"functionDeclarations": []any{map[string]any{"name": "read_file"}, map[string]any{"name": "mcp_pbac_drive.read_file"}}}},
					"systemInstruction": map[string]any{"parts": []any{map[string]any{"text": "you are"}}},
					"contents":          []any{map[string]any{"role": "user", "parts": []any{map[string]any{"text": p}}}}}
			},
			func(p string) map[string]any {
				return map[string]any{"contents": []any{map[string]any{"role": "user", "parts": []any{map[string]any{"text": "title: " + p}}}}}
			},
			func(id, tool, content string) map[string]any {
				return map[string]any{"contents": []any{
					map[string]any{"role": "user", "parts": []any{map[string]any{"text": "pbac-allowed"}}},
					map[string]any{"role": "model", "parts": []any{map[string]any{"functionCall": map[string]any{"id": id, "name": tool, "args": map[string]any{}}}}},
					map[string]any{"role": "user", "parts": []any{map[string]any{"functionResponse": map[string]any{"id": id, "name": tool,
						"response": map[string]any{"output": content}}}}}}}
			}, false},
		{"gemini whole", "gemini", "/v1beta/models/m:generateContent", false, "drive_read_file",
			func(p string) map[string]any {
				return map[string]any{"tools": []any{map[string]any{"functionDeclarations": []any{map[string]any{"name": "drive_read_file"}}}},
					"contents": []any{map[string]any{"role": "user", "parts": []any{map[string]any{"text": p}}}}}
			},
			func(p string) map[string]any {
				return map[string]any{"contents": []any{map[string]any{"role": "user", "parts": []any{map[string]any{"text": p}}}}}
			},
			func(id, tool, content string) map[string]any {
				return map[string]any{"contents": []any{map[string]any{"role": "user", "parts": []any{map[string]any{"functionResponse": map[string]any{"id": id, "name": tool,
					"response": map[string]any{"output": content}}}}}}}
			}, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Start(calls)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := s.Close(ctx); err != nil {
					t.Error(err)
				}
			})
			const prompt = "pbac-allowed: read the roadmap"

			if name, _, text := toolCall(t, tc.api, post(t, s, tc.path, tc.side(prompt))); name != "" || text != "ok" {
				t.Errorf("side request: call %q, text %q; want text ok", name, text)
			}
			if name, _, _ := toolCall(t, tc.api, post(t, s, tc.path, tc.first("no marker here"))); name != "" {
				t.Errorf("a prompt without the marker got a call of %s", name)
			}
			answer := post(t, s, tc.path, tc.first(prompt))
			if tc.stream && tc.api == "anthropic" {
				var events []string
				for _, l := range answer {
					if e, ok := strings.CutPrefix(l, "event:"); ok {
						events = append(events, e)
					}
				}
				want := "message_start content_block_start content_block_delta content_block_stop message_delta message_stop"
				if got := strings.Join(events, " "); got != want {
					t.Errorf("events %q, want %q", got, want)
				}
			}
			if tc.stream && tc.api == "responses" {
				var events []string
				for _, l := range answer {
					if e, ok := strings.CutPrefix(l, "event:"); ok {
						events = append(events, e)
					}
				}
				want := "response.created response.output_item.added response.function_call_arguments.done response.output_item.done response.completed"
				if got := strings.Join(events, " "); got != want {
					t.Errorf("events %q, want %q", got, want)
				}
			}
			if tc.stream && tc.api == "openai" && answer[len(answer)-1] != "[DONE]" {
				t.Errorf("the stream ends with %q, not [DONE]", answer[len(answer)-1])
			}
			name, args, _ := toolCall(t, tc.api, answer)
			if name != tc.tool || args != `{"path":"/team/roadmap.md"}` {
				t.Fatalf("call %q %s, want %s with the planned arguments", name, args, tc.tool)
			}
			id := callID(answer)
			if id == "" {
				t.Fatalf("no call id in %q", answer)
			}
			if _, _, text := toolCall(t, tc.api, post(t, s, tc.path, tc.result(id, name, "denied by policy"))); !strings.Contains(text, "denied by policy") {
				t.Errorf("after the result: %q", text)
			}
			got := s.Results()
			want := ToolResult{API: tc.api, Marker: "pbac-allowed", Tool: tc.tool, CallID: id, Content: "denied by policy", IsError: tc.isError}
			if len(got) != 1 || got[0] != want {
				t.Errorf("results %+v, want [%+v]", got, want)
			}

			// A call with a Then: its result is answered, after the
			// Then's delay, with the second call of the same tool; the
			// second result with text, and each is recorded by its marker.
			const delay = 300 * time.Millisecond
			then := []Call{{Marker: "pbac-allowed", Tool: "drive_read_file", Args: map[string]any{"path": "/team/roadmap.md"},
				Then: &Call{Marker: "pbac-second", Tool: "drive_read_file", Args: map[string]any{"path": "/team/b.md"}, Delay: delay}}}
			s2, err := Start(then)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				_ = s2.Close(ctx)
			})
			first := post(t, s2, tc.path, tc.first(prompt))
			began := time.Now()
			second := post(t, s2, tc.path, tc.result(callID(first), tc.tool, "first content"))
			if took := time.Since(began); took < delay {
				t.Errorf("the second call came after %s, before its delay of %s", took, delay)
			}
			name2, args2, _ := toolCall(t, tc.api, second)
			if name2 != tc.tool || args2 != `{"path":"/team/b.md"}` {
				t.Fatalf("after the first result: call %q %s, want %s of /team/b.md", name2, args2, tc.tool)
			}
			if _, _, text := toolCall(t, tc.api, post(t, s2, tc.path, tc.result(callID(second), tc.tool, "second content"))); !strings.Contains(text, "second content") {
				t.Errorf("after the second result: %q, want text", text)
			}
			// The first result again (a client resending history): no
			// second follow-up.
			if name, _, _ := toolCall(t, tc.api, post(t, s2, tc.path, tc.result(callID(first), tc.tool, "first content"))); name != "" {
				t.Errorf("the first result, sent again, got another call of %s", name)
			}
			var markers []string
			for _, r := range s2.Results() {
				markers = append(markers, r.Marker+"="+r.Content)
			}
			if got := strings.Join(markers, " "); got != "pbac-allowed=first content pbac-second=second content" {
				t.Errorf("results %s", got)
			}
		})
	}
}

// TestGemini: Gemini CLI's side requests for JSON (its model router's
// complexity score, its next-speaker check) get an object their schema
// accepts, and a function response carrying an error is recorded as an
// error, verbatim.
func TestGemini(t *testing.T) {
	s, err := Start([]Call{{Marker: "pbac-denied", Tool: "drive_read_file"}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	for _, tc := range []struct {
		name   string
		config map[string]any
		want   map[string]any
	}{
		{"router (Gemini API schema)", map[string]any{"responseMimeType": "application/json", "responseSchema": map[string]any{
			"type": "OBJECT", "required": []string{"complexity_reasoning", "complexity_score"}, "properties": map[string]any{
				"complexity_reasoning": map[string]any{"type": "STRING"}, "complexity_score": map[string]any{"type": "INTEGER"}}}},
			map[string]any{"complexity_reasoning": "stand-in", "complexity_score": float64(1)}},
		{"next speaker (JSON schema)", map[string]any{"responseMimeType": "application/json", "responseJsonSchema": map[string]any{
			"type": "object", "properties": map[string]any{"reasoning": map[string]any{"type": "string"},
				"next_speaker": map[string]any{"type": "string", "enum": []string{"user", "model"}},
				"confidence":   map[string]any{"type": "number", "minimum": 5}}}},
			map[string]any{"reasoning": "stand-in", "next_speaker": "user", "confidence": float64(5)}},
	} {
		_, _, text := toolCall(t, "gemini", post(t, s, "/v1beta/models/m:generateContent", map[string]any{"generationConfig": tc.config,
			"contents": []any{map[string]any{"role": "user", "parts": []any{map[string]any{"text": "classify pbac-denied"}}}}}))
		var got map[string]any
		if err := json.Unmarshal([]byte(text), &got); err != nil {
			t.Fatalf("%s: not JSON: %q", tc.name, text)
		}
		if raw, want := fmtJSON(got), fmtJSON(tc.want); raw != want {
			t.Errorf("%s: %s, want %s", tc.name, raw, want)
		}
	}
	answer := post(t, s, "/v1beta/models/m:streamGenerateContent?alt=sse", map[string]any{
		"tools":    []any{map[string]any{"functionDeclarations": []any{map[string]any{"name": "mcp_pbac_drive.read_file"}}}},
		"contents": []any{map[string]any{"role": "user", "parts": []any{map[string]any{"text": "pbac-denied"}}}}})
	id := callID(answer)
	errResp := map[string]any{"error": "MCP tool 'drive.read_file' reported tool error"}
	post(t, s, "/v1beta/models/m:streamGenerateContent?alt=sse", map[string]any{"contents": []any{map[string]any{"role": "user", "parts": []any{
		map[string]any{"functionResponse": map[string]any{"id": id, "name": "mcp_pbac_drive.read_file", "response": errResp}}}}}})
	got := s.Results()
	if len(got) != 1 || !got[0].IsError || got[0].Content != fmtJSON(errResp) || got[0].Marker != "pbac-denied" {
		t.Errorf("results %+v, want the error response of the pbac-denied call", got)
	}
	var countTokens map[string]int
	if err := json.Unmarshal([]byte(post(t, s, "/v1beta/models/m:countTokens", map[string]any{})[0]), &countTokens); err != nil || countTokens["totalTokens"] == 0 {
		t.Errorf("countTokens: %v %v", countTokens, err)
	}
}

func fmtJSON(v any) string {
	raw, _ := json.Marshal(v)
	return string(raw)
}

// TestCountTokensAndUnknownPaths: Claude Code's token counting is answered;
// any other path is a 404 that is recorded.
func TestCountTokensAndUnknownPaths(t *testing.T) {
	s, err := Start(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	if got := post(t, s, "/v1/messages/count_tokens", map[string]any{"messages": []any{}}); got[0] != `{"input_tokens":100}` {
		t.Errorf("count_tokens: %s", got)
	}
	resp, err := http.Get(s.URL() + "/v1/models")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	reqs := s.Requests()
	if resp.StatusCode != http.StatusNotFound || len(reqs) != 2 || reqs[1].Path != "GET /v1/models" || reqs[1].Answer != "not found" {
		t.Errorf("unknown path: %d, requests %+v", resp.StatusCode, reqs)
	}
}
