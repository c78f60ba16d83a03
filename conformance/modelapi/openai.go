package modelapi

import (
	"encoding/json"
	"net/http"
	"strings"
)

// openAIRequest is the part of a Chat Completions request the stand-in reads.
type openAIRequest struct {
	Model    string `json:"model"`
	Stream   bool   `json:"stream"`
	Messages []struct {
		Role       string          `json:"role"`
		Content    json.RawMessage `json:"content"`
		ToolCallID string          `json:"tool_call_id"`
	} `json:"messages"`
	Tools []struct {
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	} `json:"tools"`
}

// openAIText is a message's content: a string or an array of parts whose
// text parts count.
func openAIText(raw json.RawMessage) string {
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
		if p.Type == "text" {
			out = append(out, p.Text)
		}
	}
	return strings.Join(out, "\n")
}

func (s *Server) openAIChat(w http.ResponseWriter, r *http.Request) {
	var req openAIRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 32<<20)).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"error": map[string]string{"type": "invalid_request_error", "message": "read the request: " + err.Error()}})
		return
	}
	note := Request{API: "openai", Path: r.URL.Path, Model: req.Model, Stream: req.Stream}
	for _, t := range req.Tools {
		note.Tools = append(note.Tools, t.Function.Name)
	}
	// The tool messages at the end answer the assistant's last calls; else
	// the last message is the user's.
	var results, ids []string
	for i := len(req.Messages) - 1; i >= 0 && req.Messages[i].Role == "tool"; i-- {
		c := openAIText(req.Messages[i].Content)
		s.recordResult("openai", req.Messages[i].ToolCallID, c, false)
		results, ids = append([]string{c}, results...), append(ids, req.Messages[i].ToolCallID)
	}
	lastUser := ""
	if n := len(req.Messages); n > 0 && req.Messages[n-1].Role == "user" {
		lastUser = openAIText(req.Messages[n-1].Content)
	}
	note.LastUser = clipText(lastUser)
	ans := openAIAnswer{model: req.Model}
	call, tool, ok := s.plan(lastUser, note.Tools)
	if c, t, then := s.followUp(r.Context(), ids, note.Tools); then {
		call, tool, ok, results = c, t, true, nil
	}
	switch {
	case len(results) > 0:
		note.Answer, ans.text = "results", summary(results)
	case ok:
		note.Answer = "tool:" + tool
		ans.callID, ans.tool = s.issue("call_", call, tool), tool
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
	writeJSON(w, http.StatusOK, ans.whole())
}

// openAIAnswer is one answer: text, or one tool call.
type openAIAnswer struct {
	model              string
	text               string
	callID, tool, args string
}

func (a openAIAnswer) finishReason() string {
	if a.callID != "" {
		return "tool_calls"
	}
	return "stop"
}

func (a openAIAnswer) toolCall(withIndex bool) map[string]any {
	c := map[string]any{"id": a.callID, "type": "function", "function": map[string]any{"name": a.tool, "arguments": a.args}}
	if withIndex {
		c["index"] = 0
	}
	return c
}

var usage = map[string]int{"prompt_tokens": 100, "completion_tokens": 10, "total_tokens": 110}

func (a openAIAnswer) whole() map[string]any {
	msg := map[string]any{"role": "assistant", "content": a.text}
	if a.callID != "" {
		msg = map[string]any{"role": "assistant", "content": nil, "tool_calls": []any{a.toolCall(false)}}
	}
	return map[string]any{"id": "chatcmpl-standin", "object": "chat.completion", "created": 0, "model": a.model,
		"choices": []any{map[string]any{"index": 0, "message": msg, "finish_reason": a.finishReason()}}, "usage": usage}
}

// stream writes the answer as chat.completion.chunk events: the role, the
// content or the tool call (whole, at index 0), the finish reason, the
// usage, then [DONE].
func (a openAIAnswer) stream(e *sse) {
	chunk := func(choices []any) map[string]any {
		return map[string]any{"id": "chatcmpl-standin", "object": "chat.completion.chunk", "created": 0, "model": a.model, "choices": choices}
	}
	delta := func(d map[string]any, finish any) []any {
		return []any{map[string]any{"index": 0, "delta": d, "finish_reason": finish}}
	}
	e.event("", chunk(delta(map[string]any{"role": "assistant", "content": ""}, nil)))
	if a.callID != "" {
		e.event("", chunk(delta(map[string]any{"tool_calls": []any{a.toolCall(true)}}, nil)))
	} else {
		e.event("", chunk(delta(map[string]any{"content": a.text}, nil)))
	}
	e.event("", chunk(delta(map[string]any{}, a.finishReason())))
	last := chunk([]any{})
	last["usage"] = usage
	e.event("", last)
	e.event("", "[DONE]")
}
