package modelapi

import (
	"encoding/json"
	"net/http"
	"strings"
)

// geminiRequest is the part of a Gemini API generateContent request the
// stand-in reads (Gemini CLI, through GOOGLE_GEMINI_BASE_URL).
type geminiRequest struct {
	Contents []struct {
		Role  string       `json:"role"`
		Parts []geminiPart `json:"parts"`
	} `json:"contents"`
	Tools []struct {
		FunctionDeclarations []struct {
			Name string `json:"name"`
		} `json:"functionDeclarations"`
	} `json:"tools"`
	GenerationConfig struct {
		ResponseMimeType   string          `json:"responseMimeType"`
		ResponseJSONSchema json.RawMessage `json:"responseJsonSchema"`
		ResponseSchema     json.RawMessage `json:"responseSchema"`
	} `json:"generationConfig"`
}

// geminiPart is a part of a content: text, a function call or a function
// response.
type geminiPart struct {
	Text             string `json:"text,omitempty"`
	FunctionResponse *struct {
		ID       string          `json:"id"`
		Name     string          `json:"name"`
		Response json.RawMessage `json:"response"`
	} `json:"functionResponse,omitempty"`
}

// geminiResult is what a function response says: its "output" when that
// is its only text, else the response as JSON; an "error" member makes it
// an error.
func geminiResult(raw json.RawMessage) (string, bool) {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return string(raw), false
	}
	_, isErr := m["error"]
	var out string
	if len(m) == 1 && json.Unmarshal(m["output"], &out) == nil {
		return out, false
	}
	return string(raw), isErr
}

// geminiModels answers POST /v1beta/models/{model}:{method}: generateContent,
// streamGenerateContent (alt=sse: data lines) and countTokens.
func (s *Server) geminiModels(w http.ResponseWriter, r *http.Request) {
	model, method, _ := strings.Cut(r.PathValue("call"), ":")
	if method == "countTokens" {
		s.note(Request{API: "gemini", Path: r.URL.Path, Model: model, Answer: "tokens"})
		writeJSON(w, http.StatusOK, map[string]int{"totalTokens": 100})
		return
	}
	if method != "generateContent" && method != "streamGenerateContent" {
		s.note(Request{API: "gemini", Path: r.URL.Path, Answer: "not found"})
		writeJSON(w, http.StatusNotFound, geminiError(http.StatusNotFound, "NOT_FOUND", "unknown method "+method))
		return
	}
	var req geminiRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 32<<20)).Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, geminiError(http.StatusBadRequest, "INVALID_ARGUMENT", "read the request: "+err.Error()))
		return
	}
	note := Request{API: "gemini", Path: r.URL.Path, Model: model, Stream: method == "streamGenerateContent"}
	for _, t := range req.Tools {
		for _, f := range t.FunctionDeclarations {
			note.Tools = append(note.Tools, f.Name)
		}
	}
	// The last content is the user's: its function responses answer the
	// model's last calls, else its text is the prompt.
	var results, texts, ids []string
	if n := len(req.Contents); n > 0 && req.Contents[n-1].Role == "user" {
		for _, p := range req.Contents[n-1].Parts {
			if fr := p.FunctionResponse; fr != nil {
				c, isErr := geminiResult(fr.Response)
				s.recordResult("gemini", fr.ID, c, isErr)
				results, ids = append(results, c), append(ids, fr.ID)
			} else if p.Text != "" {
				texts = append(texts, p.Text)
			}
		}
	}
	note.LastUser = clipText(strings.Join(texts, "\n"))
	var part map[string]any
	call, tool, ok := s.plan(strings.Join(texts, "\n"), note.Tools)
	wantsJSON := req.GenerationConfig.ResponseMimeType == "application/json"
	if !wantsJSON {
		if c, t, then := s.followUp(r.Context(), ids, note.Tools); then {
			call, tool, ok, results = c, t, true, nil
		}
	}
	switch {
	case wantsJSON:
		// A side request asking for JSON (Gemini CLI's model router and
		// next-speaker check): an object its schema accepts.
		schema := req.GenerationConfig.ResponseJSONSchema
		if len(schema) == 0 {
			schema = req.GenerationConfig.ResponseSchema
		}
		raw, _ := json.Marshal(fromSchema(schema))
		note.Answer, part = "json", map[string]any{"text": string(raw)}
	case len(results) > 0:
		note.Answer, part = "results", map[string]any{"text": summary(results)}
	case ok:
		note.Answer = "tool:" + tool
		args := call.Args
		if args == nil {
			args = map[string]any{}
		}
		part = map[string]any{"functionCall": map[string]any{"id": s.issue("call_", call, tool), "name": tool, "args": args}}
	default:
		note.Answer, part = "text", map[string]any{"text": "ok"}
	}
	s.note(note)
	ans := map[string]any{
		"candidates": []any{map[string]any{"index": 0, "finishReason": "STOP",
			"content": map[string]any{"role": "model", "parts": []any{part}}}},
		"usageMetadata": map[string]int{"promptTokenCount": 100, "candidatesTokenCount": 10, "totalTokenCount": 110},
		"modelVersion":  model,
	}
	if note.Stream {
		// One chunk carries the whole answer.
		newSSE(w).event("", ans)
		return
	}
	writeJSON(w, http.StatusOK, ans)
}

func geminiError(code int, status, msg string) map[string]any {
	return map[string]any{"error": map[string]any{"code": code, "status": status, "message": msg}}
}

// fromSchema is a value a JSON schema (or the Gemini API's Schema, whose
// types are upper case) accepts: an object with every property, the first
// of an enum, a string, the minimum of a number (or 1), false, an empty
// array.
func fromSchema(raw json.RawMessage) any {
	var sc struct {
		Type       string                     `json:"type"`
		Enum       []json.RawMessage          `json:"enum"`
		Properties map[string]json.RawMessage `json:"properties"`
		Minimum    *float64                   `json:"minimum"`
	}
	if json.Unmarshal(raw, &sc) != nil {
		return map[string]any{}
	}
	if len(sc.Enum) > 0 {
		return sc.Enum[0]
	}
	switch strings.ToLower(sc.Type) {
	case "string":
		return "stand-in"
	case "integer", "number":
		if sc.Minimum != nil && *sc.Minimum > 1 {
			return *sc.Minimum
		}
		return 1
	case "boolean":
		return false
	case "array":
		return []any{}
	default:
		out := map[string]any{}
		for name, p := range sc.Properties {
			out[name] = fromSchema(p)
		}
		return out
	}
}
