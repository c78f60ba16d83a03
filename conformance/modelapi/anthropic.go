package modelapi

import (
	"encoding/json"
	"net/http"
	"strings"
)

// anthropicRequest is the part of a Messages API request the stand-in reads.
type anthropicRequest struct {
	Model    string `json:"model"`
	Stream   bool   `json:"stream"`
	Messages []struct {
		Role    string          `json:"role"`
		Content json.RawMessage `json:"content"`
	} `json:"messages"`
	Tools []struct {
		Name string `json:"name"`
	} `json:"tools"`
}

// anthropicBlock is a content block of a message: text, tool_use or
// tool_result (whose content is a string or text blocks).
type anthropicBlock struct {
	Type      string          `json:"type"`
	Text      string          `json:"text,omitempty"`
	ToolUseID string          `json:"tool_use_id,omitempty"`
	Content   json.RawMessage `json:"content,omitempty"`
	IsError   bool            `json:"is_error,omitempty"`
}

// anthropicBlocks reads a message's content: a string is one text block.
func anthropicBlocks(raw json.RawMessage) []anthropicBlock {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return []anthropicBlock{{Type: "text", Text: s}}
	}
	var bs []anthropicBlock
	_ = json.Unmarshal(raw, &bs)
	return bs
}

// textOf is the text of a tool result's content (a string or blocks).
func textOf(raw json.RawMessage) string {
	var parts []string
	for _, b := range anthropicBlocks(raw) {
		if b.Type == "text" {
			parts = append(parts, b.Text)
		}
	}
	return strings.Join(parts, "\n")
}

func (s *Server) anthropicCountTokens(w http.ResponseWriter, r *http.Request) {
	s.note(Request{API: "anthropic", Path: r.URL.Path, Answer: "tokens"})
	writeJSON(w, http.StatusOK, map[string]int{"input_tokens": 100})
}

func (s *Server) anthropicMessages(w http.ResponseWriter, r *http.Request) {
	var req anthropicRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 32<<20)).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]any{"type": "error",
			"error": map[string]string{"type": "invalid_request_error", "message": "read the request: " + err.Error()}})
		return
	}
	note := Request{API: "anthropic", Path: r.URL.Path, Model: req.Model, Stream: req.Stream}
	for _, t := range req.Tools {
		note.Tools = append(note.Tools, t.Name)
	}
	// The last user message: Claude Code may put system messages after it.
	var last []anthropicBlock
	for i := len(req.Messages) - 1; i >= 0; i-- {
		if req.Messages[i].Role == "user" {
			last = anthropicBlocks(req.Messages[i].Content)
			break
		}
		if req.Messages[i].Role == "assistant" {
			break
		}
	}
	var results, texts, ids []string
	for _, b := range last {
		switch b.Type {
		case "tool_result":
			c := textOf(b.Content)
			s.recordResult("anthropic", b.ToolUseID, c, b.IsError)
			results, ids = append(results, c), append(ids, b.ToolUseID)
		case "text":
			texts = append(texts, b.Text)
		}
	}
	note.LastUser = clipText(strings.Join(texts, "\n"))
	if n := len(req.Messages); n > 0 && note.LastUser == "" {
		note.LastUser = clipText(req.Messages[n-1].Role + ": " + string(req.Messages[n-1].Content))
	}
	msg := anthropicMessage{model: req.Model}
	call, tool, ok := s.plan(strings.Join(texts, "\n"), note.Tools)
	if c, t, then := s.followUp(r.Context(), ids, note.Tools); then {
		call, tool, ok, results = c, t, true, nil
	}
	switch {
	case len(results) > 0:
		note.Answer, msg.text = "results", summary(results)
	case ok:
		note.Answer = "tool:" + tool
		msg.toolID, msg.toolName, msg.toolInput = s.issue("toolu_", call, tool), tool, call.Args
	default:
		note.Answer, msg.text = "text", "ok"
	}
	s.note(note)
	if req.Stream {
		msg.stream(newSSE(w))
		return
	}
	writeJSON(w, http.StatusOK, msg.whole())
}

// anthropicMessage is one answer: text, or one tool_use.
type anthropicMessage struct {
	model     string
	text      string
	toolID    string
	toolName  string
	toolInput map[string]any
}

func (m anthropicMessage) stopReason() string {
	if m.toolID != "" {
		return "tool_use"
	}
	return "end_turn"
}

func (m anthropicMessage) input() map[string]any {
	if m.toolInput == nil {
		return map[string]any{}
	}
	return m.toolInput
}

func (m anthropicMessage) whole() map[string]any {
	block := map[string]any{"type": "text", "text": m.text}
	if m.toolID != "" {
		block = map[string]any{"type": "tool_use", "id": m.toolID, "name": m.toolName, "input": m.input()}
	}
	return map[string]any{"id": "msg_standin", "type": "message", "role": "assistant", "model": m.model,
		"content": []any{block}, "stop_reason": m.stopReason(), "stop_sequence": nil,
		"usage": map[string]int{"input_tokens": 100, "output_tokens": 10}}
}

// stream writes the answer as the Messages API's event stream:
// message_start, one content block (start, delta, stop), message_delta with
// the stop reason, message_stop.
func (m anthropicMessage) stream(e *sse) {
	e.event("message_start", map[string]any{"type": "message_start", "message": map[string]any{
		"id": "msg_standin", "type": "message", "role": "assistant", "model": m.model, "content": []any{},
		"stop_reason": nil, "stop_sequence": nil, "usage": map[string]int{"input_tokens": 100, "output_tokens": 1}}})
	if m.toolID != "" {
		args, _ := json.Marshal(m.input())
		e.event("content_block_start", map[string]any{"type": "content_block_start", "index": 0,
			"content_block": map[string]any{"type": "tool_use", "id": m.toolID, "name": m.toolName, "input": map[string]any{}}})
		e.event("content_block_delta", map[string]any{"type": "content_block_delta", "index": 0,
			"delta": map[string]any{"type": "input_json_delta", "partial_json": string(args)}})
	} else {
		e.event("content_block_start", map[string]any{"type": "content_block_start", "index": 0,
			"content_block": map[string]any{"type": "text", "text": ""}})
		e.event("content_block_delta", map[string]any{"type": "content_block_delta", "index": 0,
			"delta": map[string]any{"type": "text_delta", "text": m.text}})
	}
	e.event("content_block_stop", map[string]any{"type": "content_block_stop", "index": 0})
	e.event("message_delta", map[string]any{"type": "message_delta",
		"delta": map[string]any{"stop_reason": m.stopReason(), "stop_sequence": nil}, "usage": map[string]int{"output_tokens": 10}})
	e.event("message_stop", map[string]any{"type": "message_stop"})
}
