// Package modelapi is a stand-in model API on 127.0.0.1 for driving real
// agent CLIs (Claude Code, OpenCode, Codex, Gemini CLI) through the gateway
// without a model: it answers the Anthropic Messages API (POST
// /v1/messages, streaming or not, and /v1/messages/count_tokens), the
// OpenAI Chat Completions API (POST /v1/chat/completions, streaming or
// not), the OpenAI Responses API (POST /v1/responses, streaming or not)
// and the Gemini API (POST /v1beta/models/{model}:generateContent,
// :streamGenerateContent and :countTokens).
//
// Its answers depend only on the request, so side requests a CLI makes
// (titles, quota checks, summaries) need no scripting:
//   - a request whose last message carries tool results is answered with
//     text, and the results are recorded: what the client sent back is what
//     a model would have seen;
//   - a request whose last user text contains a planned call's Marker and
//     that offers a tool whose name ends with the call's Tool is answered
//     with a call of that tool (the name exactly as the client offered it);
//   - a Gemini request for JSON (responseMimeType application/json) is
//     answered with an object its response schema accepts;
//   - anything else is answered with a short text.
package modelapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"sync"
	"time"
)

// Call is a tool call the stand-in model makes when a prompt asks for it.
type Call struct {
	// Marker is a word of the prompt that asks for this call.
	Marker string
	// Tool is the end of the tool's name as the client offers it, compared
	// with every character but letters and digits read as "_" (Claude Code
	// offers the gateway's drive.read_file on server pbac as
	// mcp__pbac__drive_read_file, OpenCode as pbac_drive_read_file, Codex
	// as drive_read_file in namespace mcp__pbac, Gemini CLI as
	// mcp_pbac_drive.read_file).
	Tool string
	// Args are the call's arguments.
	Args map[string]any
	// Then, when set, is the call the stand-in answers this call's result
	// with (once), instead of text: a second tool call in the same turn of
	// the client. Its Marker names its result; its Tool is matched among
	// the tools the request with the result offers, then the first call's.
	Then *Call
	// Delay is how long the stand-in waits before answering with this
	// call when it is another's Then (to let a session or token of the
	// client expire between two calls of one run).
	Delay time.Duration
}

// ToolResult is what the client sent back for one of the stand-in's calls:
// what a model would have seen.
type ToolResult struct {
	// API is "anthropic", "openai", "responses" or "gemini".
	API    string `json:"api"`
	Marker string `json:"marker"`
	// Tool is the tool's name as the client offered it.
	Tool    string `json:"tool"`
	CallID  string `json:"call_id"`
	Content string `json:"content"`
	// IsError is the Anthropic tool_result's is_error, or a Gemini
	// function response with an "error" member (OpenAI's tool messages and
	// function call outputs have no such flag).
	IsError bool `json:"is_error,omitempty"`
}

// Request is a summary of one request the client made.
type Request struct {
	API    string `json:"api"`
	Path   string `json:"path"`
	Model  string `json:"model,omitempty"`
	Stream bool   `json:"stream,omitempty"`
	// Tools are the names of the tools the request offered.
	Tools []string `json:"tools,omitempty"`
	// LastUser is the start of the last user message's text.
	LastUser string `json:"last_user,omitempty"`
	// Answer is what the stand-in answered: "text", "tool:<name>",
	// "results", "tokens" or "not found".
	Answer string `json:"answer"`
}

// Server is the stand-in model API.
type Server struct {
	calls []Call
	ln    net.Listener
	srv   *http.Server
	done  chan struct{}

	mu       sync.Mutex
	seq      int
	issued   map[string]issued // call id → the call made
	results  []ToolResult
	seen     map[string]bool // call ids whose result was recorded
	followed map[string]bool // call ids whose Then was made
	requests []Request
}

type issued struct {
	call Call
	tool string
}

// Start serves the stand-in on 127.0.0.1 (a free port) until Close.
func Start(calls []Call) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen for the stand-in model API: %w", err)
	}
	s := &Server{calls: calls, ln: ln, done: make(chan struct{}), issued: map[string]issued{}, seen: map[string]bool{}, followed: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/messages", s.anthropicMessages)
	mux.HandleFunc("POST /v1/messages/count_tokens", s.anthropicCountTokens)
	mux.HandleFunc("POST /v1/chat/completions", s.openAIChat)
	mux.HandleFunc("POST /v1/responses", s.openAIResponses)
	mux.HandleFunc("POST /v1beta/models/{call}", s.geminiModels)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		s.note(Request{API: "unknown", Path: r.Method + " " + r.URL.Path, Answer: "not found"})
		http.NotFound(w, r)
	})
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(s.done)
		_ = s.srv.Serve(ln)
	}()
	return s, nil
}

// URL is the stand-in's base URL (http://127.0.0.1:PORT).
func (s *Server) URL() string { return "http://" + s.ln.Addr().String() }

// Close stops the stand-in and waits for it.
func (s *Server) Close(ctx context.Context) error {
	err := s.srv.Shutdown(ctx)
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		err = s.srv.Close()
	}
	<-s.done
	return err
}

// Results are the tool results recorded so far, in the order they came.
func (s *Server) Results() []ToolResult {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]ToolResult(nil), s.results...)
}

// Requests are the requests seen so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

func (s *Server) note(r Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, r)
}

var notWord = regexp.MustCompile(`[^A-Za-z0-9]`)

// plan picks the call the last user text asks for, and the offered tool it
// names; ok is false when there is none.
func (s *Server) plan(lastUserText string, tools []string) (Call, string, bool) {
	for _, c := range s.calls {
		if c.Marker == "" || !strings.Contains(lastUserText, c.Marker) {
			continue
		}
		want := notWord.ReplaceAllString(c.Tool, "_")
		for _, t := range tools {
			if strings.HasSuffix(notWord.ReplaceAllString(t, "_"), want) {
				return c, t, true
			}
		}
	}
	return Call{}, "", false
}

// followUp is the Then of the first call among ids (the calls whose
// results a request carries) that has one not yet made, and the offered
// tool it names, after waiting its Delay; ok is false when there is none,
// or the request ended during the wait.
func (s *Server) followUp(ctx context.Context, ids, tools []string) (Call, string, bool) {
	var then *Call
	var first string
	s.mu.Lock()
	for _, id := range ids {
		if is, ok := s.issued[id]; ok && is.call.Then != nil && !s.followed[id] {
			s.followed[id], then, first = true, is.call.Then, is.tool
			break
		}
	}
	s.mu.Unlock()
	if then == nil {
		return Call{}, "", false
	}
	want := notWord.ReplaceAllString(then.Tool, "_")
	tool := ""
	// A request that offers no tools (some clients send them only once)
	// may still be answered with the first call's tool.
	for _, t := range append(slices.Clone(tools), first) {
		if strings.HasSuffix(notWord.ReplaceAllString(t, "_"), want) {
			tool = t
			break
		}
	}
	if tool == "" {
		return Call{}, "", false
	}
	select {
	case <-ctx.Done():
		return Call{}, "", false
	case <-time.After(then.Delay):
	}
	return *then, tool, true
}

// issue records a call the stand-in makes and returns its id.
func (s *Server) issue(prefix string, c Call, tool string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.seq++
	id := fmt.Sprintf("%s%s_%d", prefix, notWord.ReplaceAllString(c.Marker, "_"), s.seq)
	s.issued[id] = issued{call: c, tool: tool}
	return id
}

// recordResult records the client's result of call id once; a result of a
// call the stand-in never made is recorded with an empty marker.
func (s *Server) recordResult(api, id, content string, isError bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen[id] {
		return
	}
	s.seen[id] = true
	is := s.issued[id]
	s.results = append(s.results, ToolResult{API: api, Marker: is.call.Marker, Tool: is.tool, CallID: id, Content: content, IsError: isError})
}

// summary is the text answer after tool results: it repeats them, so the
// CLI's own output shows what the model saw.
func summary(results []string) string {
	return "The tool answered: " + strings.Join(results, " | ")
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// sse writes Server-Sent Events and flushes after each.
type sse struct {
	w http.ResponseWriter
	f http.Flusher
}

func newSSE(w http.ResponseWriter) *sse {
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
	f, _ := w.(http.Flusher)
	return &sse{w: w, f: f}
}

// event writes one event; name may be empty (OpenAI sends data lines only).
func (e *sse) event(name string, data any) {
	raw, ok := data.(string)
	if !ok {
		b, _ := json.Marshal(data)
		raw = string(b)
	}
	if name != "" {
		fmt.Fprintf(e.w, "event: %s\n", name)
	}
	fmt.Fprintf(e.w, "data: %s\n\n", raw)
	if e.f != nil {
		e.f.Flush()
	}
}

// clipText keeps the first 2000 bytes of s for a Request's summary.
func clipText(s string) string {
	if len(s) > 2000 {
		return s[:2000] + "…"
	}
	return s
}
