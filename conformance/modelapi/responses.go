package modelapi

import (
	"encoding/json"
	"net/http"
	"strings"
)

// responsesRequest is the part of an OpenAI Responses API request the
// stand-in reads (Codex's wire_api = "responses").
type responsesRequest struct {
	Model  string          `json:"model"`
	Stream bool            `json:"stream"`
	Input  json.RawMessage `json:"input"`
	Tools  []responsesTool `json:"tools"`
}

// responsesTool is an offered tool: a function, or a namespace of
// functions (Codex offers each MCP server's tools in a namespace,
// "mcp__<server>", and a call of one names the namespace and the tool).
type responsesTool struct {
	Type  string          `json:"type"`
	Name  string          `json:"name"`
	Tools []responsesTool `json:"tools"`
}

// responsesFunction is an offered function: Name in Namespace ("" for
// none).
type responsesFunction struct{ Namespace, Name string }

// String is the function's name as the stand-in reports it: namespace.name.
func (f responsesFunction) String() string {
	if f.Namespace == "" {
		return f.Name
	}
	return f.Namespace + "." + f.Name
}

// functions are the functions a tool offers.
func (t responsesTool) functions() []responsesFunction {
	if t.Type == "namespace" {
		var out []responsesFunction
		for _, sub := range t.Tools {
			if sub.Name != "" && len(sub.Tools) == 0 {
				out = append(out, responsesFunction{Namespace: t.Name, Name: sub.Name})
			}
		}
		return out
	}
	if t.Name == "" {
		return nil
	}
	return []responsesFunction{{Name: t.Name}}
}

// responsesItem is an input item: a message, a function call or a
// function call's output (a string or content parts).
type responsesItem struct {
	Type    string          `json:"type"`
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
	CallID  string          `json:"call_id"`
	Output  json.RawMessage `json:"output"`
}

// responsesText is the text of a message's content or a call's output: a
// string, or parts whose text counts (input_text, output_text, text).
func responsesText(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	_ = json.Unmarshal(raw, &parts)
	var out []string
	for _, p := range parts {
		if strings.HasSuffix(p.Type, "text") {
			out = append(out, p.Text)
		}
	}
	return strings.Join(out, "\n")
}

// responsesItems reads the input: a string is one user message.
func responsesItems(raw json.RawMessage) []responsesItem {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		text, _ := json.Marshal(s)
		return []responsesItem{{Type: "message", Role: "user", Content: text}}
	}
	var items []responsesItem
	_ = json.Unmarshal(raw, &items)
	return items
}

func (s *Server) openAIResponses(w http.ResponseWriter, r *http.Request) {
	var req responsesRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 32<<20)).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]string{"type": "invalid_request_error", "message": "read the request: " + err.Error()}})
		return
	}
	note := Request{API: "responses", Path: r.URL.Path, Model: req.Model, Stream: req.Stream}
	offered := map[string]responsesFunction{}
	for _, t := range req.Tools {
		for _, f := range t.functions() {
			offered[f.String()] = f
			note.Tools = append(note.Tools, f.String())
		}
	}
	// The function call outputs at the end answer the model's last calls;
	// else the last message is the user's.
	items := responsesItems(req.Input)
	var results, ids []string
	for i := len(items) - 1; i >= 0 && items[i].Type == "function_call_output"; i-- {
		c := responsesText(items[i].Output)
		s.recordResult("responses", items[i].CallID, c, false)
		results, ids = append([]string{c}, results...), append(ids, items[i].CallID)
	}
	lastUser := ""
	if n := len(items); n > 0 && items[n-1].Type == "message" && items[n-1].Role == "user" {
		lastUser = responsesText(items[n-1].Content)
	}
	note.LastUser = clipText(lastUser)
	ans := responsesAnswer{model: req.Model}
	call, tool, ok := s.plan(lastUser, note.Tools)
	if c, t, then := s.followUp(r.Context(), ids, note.Tools); then {
		call, tool, ok, results = c, t, true, nil
	}
	switch {
	case len(results) > 0:
		note.Answer, ans.text = "results", summary(results)
	case ok:
		note.Answer = "tool:" + tool
		fn, ok := offered[tool]
		if !ok {
			// A follow-up of a tool this request did not offer again: the
			// name the first call was made with.
			ns, name, found := strings.Cut(tool, ".")
			if fn = (responsesFunction{Namespace: ns, Name: name}); !found {
				fn = responsesFunction{Name: tool}
			}
		}
		ans.callID, ans.fn = s.issue("call_", call, tool), fn
		args, _ := json.Marshal(call.Args)
		if call.Args == nil {
			args = []byte("{}")
		}
		ans.args = string(args)
	default:
		note.Answer, ans.text = "text", "ok"
	}
	s.note(note)
	if req.Stream {
		ans.stream(newSSE(w))
		return
	}
	writeJSON(w, http.StatusOK, ans.response("completed", []any{ans.item()}))
}

// responsesAnswer is one answer: a text message, or one function call.
type responsesAnswer struct {
	model        string
	text         string
	callID, args string
	fn           responsesFunction
}

func (a responsesAnswer) item() map[string]any {
	if a.callID != "" {
		item := map[string]any{"type": "function_call", "id": "fc_standin", "status": "completed",
			"call_id": a.callID, "name": a.fn.Name, "arguments": a.args}
		if a.fn.Namespace != "" {
			item["namespace"] = a.fn.Namespace
		}
		return item
	}
	return map[string]any{"type": "message", "id": "msg_standin", "status": "completed", "role": "assistant",
		"content": []any{map[string]any{"type": "output_text", "text": a.text, "annotations": []any{}}}}
}

func (a responsesAnswer) response(status string, output []any) map[string]any {
	return map[string]any{"id": "resp_standin", "object": "response", "created_at": 0, "status": status,
		"model": a.model, "output": output,
		"usage": map[string]any{"input_tokens": 100, "input_tokens_details": map[string]int{"cached_tokens": 0},
			"output_tokens": 10, "output_tokens_details": map[string]int{"reasoning_tokens": 0}, "total_tokens": 110}}
}

// stream writes the answer as the Responses API's event stream:
// response.created, the output item (added, its text delta, done),
// response.completed.
func (a responsesAnswer) stream(e *sse) {
	seq := 0
	ev := func(typ string, data map[string]any) {
		data["type"] = typ
		data["sequence_number"] = seq
		seq++
		e.event(typ, data)
	}
	ev("response.created", map[string]any{"response": a.response("in_progress", []any{})})
	item := a.item()
	ev("response.output_item.added", map[string]any{"output_index": 0, "item": item})
	if a.callID == "" {
		ev("response.output_text.delta", map[string]any{"item_id": "msg_standin", "output_index": 0, "content_index": 0, "delta": a.text})
	} else {
		ev("response.function_call_arguments.done", map[string]any{"item_id": "fc_standin", "output_index": 0, "arguments": a.args})
	}
	ev("response.output_item.done", map[string]any{"output_index": 0, "item": item})
	ev("response.completed", map[string]any{"response": a.response("completed", []any{item})})
}
