package audit

import (
	"bufio"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

type sseEvent struct {
	event, data, comment string
}

// readEvents parses an event stream into ev until the body ends.
func readEvents(body *bufio.Reader, ev chan<- sseEvent) {
	defer close(ev)
	var cur sseEvent
	for {
		line, err := body.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\n")
		switch {
		case line == "":
			if cur != (sseEvent{}) {
				ev <- cur
			}
			cur = sseEvent{}
		case strings.HasPrefix(line, ":"):
			cur.comment = strings.TrimSpace(line[1:])
		case strings.HasPrefix(line, "event: "):
			cur.event = line[len("event: "):]
		case strings.HasPrefix(line, "data: "):
			cur.data = line[len("data: "):]
		}
	}
}

func TestSSEHandler(t *testing.T) {
	tests := []struct {
		name  string
		query string
		opts  []SSEOption
		want  []string // request ids expected, in order
	}{
		{"all", "", nil, []string{"a1", "d1", "a2", "e1", "h1", "p1"}},
		{"by client", "?client_id=ci-bot", nil, []string{"d1", "e1", "h1", "p1"}},
		{"by decision", "?decision=deny", nil, []string{"d1"}},
		{"by client and decision", "?client_id=claude-code&decision=allow", nil, []string{"a1", "a2"}},
		{"one subject", "", []SSEOption{WithSSESubject("alice")}, []string{"a1", "e1", "h1", "p1"}},
		{"one subject, whatever the query", "?sub=bob&decision=error", []SSEOption{WithSSESubject("alice")}, []string{"e1"}},
		{"held calls", "?decision=hold", nil, []string{"h1"}},
		{"one approval's story", "?approval_id=apr_1", nil, []string{"h1", "p1"}},
	}
	records := []Record{
		{RequestID: "a1", ClientID: "claude-code", Subject: "alice", Decision: DecisionAllow, Method: "tools/call", Tool: "drive.read"},
		{RequestID: "d1", ClientID: "ci-bot", Decision: DecisionDeny, Method: "tools/call", Tool: "slack.post", Reasons: []string{"tier ci_agent may not use slack"}},
		{RequestID: "a2", ClientID: "claude-code", Subject: "bob", Decision: DecisionAllow, Method: "tools/list"},
		{RequestID: "e1", ClientID: "ci-bot", Subject: "alice", Decision: DecisionError, Method: "tools/call", Tool: "x"},
		{RequestID: "h1", ClientID: "ci-bot", Subject: "alice", Decision: DecisionHold, Method: "tools/call", Tool: "jenkins.deploy", ApprovalID: "apr_1"},
		{RequestID: "p1", Event: EventApproval, ClientID: "ci-bot", Subject: "alice", Decision: DecisionAllow, Method: ApprovalRequested, Tool: "jenkins.deploy", ApprovalID: "apr_1"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tr := NewTrail(testLogger())
			defer tr.Close(context.Background())
			srv := httptest.NewServer(SSEHandler(tr, append([]SSEOption{WithSSEHeartbeat(40 * time.Millisecond)}, tc.opts...)...))
			defer srv.Close()

			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+tc.query, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" || resp.StatusCode != 200 {
				t.Fatalf("status %d content type %q", resp.StatusCode, ct)
			}
			events := make(chan sseEvent, 64)
			go readEvents(bufio.NewReader(resp.Body), events)
			next := func() sseEvent {
				select {
				case e, ok := <-events:
					if !ok {
						t.Fatal("stream ended")
					}
					return e
				case <-time.After(5 * time.Second):
					t.Fatal("no event")
				}
				return sseEvent{}
			}
			if e := next(); e.comment != "connected" {
				t.Fatalf("first event %+v", e)
			}
			// The subscription exists once "connected" was sent.
			for _, r := range records {
				tr.Record(r)
			}
			var got []string
			sawHeartbeat := false
			for len(got) < len(tc.want) || !sawHeartbeat {
				e := next()
				switch {
				case e.comment == "heartbeat":
					sawHeartbeat = true
				case e.event == "audit":
					var r Record
					if err := json.Unmarshal([]byte(e.data), &r); err != nil {
						t.Fatalf("bad data %q: %v", e.data, err)
					}
					got = append(got, r.RequestID)
				default:
					t.Fatalf("unexpected event %+v", e)
				}
			}
			if strings.Join(got, ",") != strings.Join(tc.want, ",") {
				t.Fatalf("got %v want %v", got, tc.want)
			}
			// Cancelling the request ends the handler and its subscription.
			cancel()
			deadline := time.Now().Add(5 * time.Second)
			for tr.Stats().Subscribers != 0 {
				if time.Now().After(deadline) {
					t.Fatal("handler still subscribed after cancel")
				}
				time.Sleep(10 * time.Millisecond)
			}
		})
	}
}

func TestSSEHandlerEndsWhenTrailCloses(t *testing.T) {
	tr := NewTrail(testLogger())
	srv := httptest.NewServer(SSEHandler(tr))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	if _, err := br.ReadString('\n'); err != nil { // retry: line
		t.Fatal(err)
	}
	if err := tr.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		for {
			if _, err := br.ReadString('\n'); err != nil {
				close(done)
				return
			}
		}
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("stream did not end when the trail closed")
	}
}

func TestSSEHandlerReportsDrops(t *testing.T) {
	tr := NewTrail(testLogger())
	defer tr.Close(context.Background())
	h := SSEHandler(tr, WithSSEBuffer(1))
	// Drive the handler directly with a recorder-like writer that blocks
	// until we have recorded a burst, so the stream falls behind.
	pr := newPipeWriter()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req := httptest.NewRequestWithContext(ctx, http.MethodGet, "/", nil)
	go h.ServeHTTP(pr, req)
	pr.waitWrites(1) // "connected" written: subscribed
	pr.block()
	tr.Record(Record{RequestID: "first", Decision: DecisionAllow})
	pr.waitBlocked()
	for i := range 10 {
		tr.Record(Record{RequestID: "burst" + string(rune('a'+i)), Decision: DecisionAllow})
	}
	pr.unblock()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(pr.String(), `event: dropped`) {
		if time.Now().After(deadline) {
			t.Fatalf("no dropped event in %q", pr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(pr.String(), `data: {"dropped":9}`) {
		t.Fatalf("want 9 dropped: %q", pr.String())
	}
	r := httptest.NewRecorder()
	h.ServeHTTP(r, httptest.NewRequest(http.MethodGet, "/?decision=maybe", nil))
	if r.Code != http.StatusBadRequest {
		t.Fatalf("bad decision filter: %d", r.Code)
	}
	r = httptest.NewRecorder()
	h.ServeHTTP(r, httptest.NewRequest(http.MethodPost, "/", nil))
	if r.Code != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %d", r.Code)
	}
}

// TestSSEHandlerNoSubject: a stream of one subject's records with no
// subject to name is refused, not a stream of everyone's.
func TestSSEHandlerNoSubject(t *testing.T) {
	tr := NewTrail(testLogger())
	defer tr.Close(context.Background())
	rec := httptest.NewRecorder()
	SSEHandler(tr, WithSSESubject("")).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != http.StatusForbidden {
		t.Fatalf("status %d", rec.Code)
	}
}
