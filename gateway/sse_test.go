package gateway

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
)

func readEvents(t testing.TB, in string, max int) ([]sseEvent, error) {
	t.Helper()
	r := newSSEReader(strings.NewReader(in), max)
	var out []sseEvent
	for {
		ev, err := r.next()
		if errors.Is(err, io.EOF) {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, ev)
	}
}

// TestSSEReader: events are read as EventSource reads them.
func TestSSEReader(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		data     []string // each event's data ("-" for an event without)
	}{
		{"LF", "data: a\n\ndata: b\n\n", []string{"a", "b"}},
		{"CRLF", "data: a\r\n\r\ndata: b\r\n\r\n", []string{"a", "b"}},
		{"CR", "event: m\rdata: a\r\rdata: b\r\r", []string{"a", "b"}},
		{"a byte order mark", "\xEF\xBB\xBFdata: a\n\n", []string{"a"}},
		{"two data lines", "data: {\"a\":\ndata: 1}\n\n", []string{"{\"a\":\n1}"}},
		{"no space after the colon", "data:a\n\n", []string{"a"}},
		{"data alone", "data\n\n", []string{""}},
		{"not a data field", "database: x\ndata: a\n\n", []string{"a"}},
		{"no data", "id: 1\n\n", []string{"-"}},
		{"cut short", "data: a", []string{"a"}},
		{"blank lines between", "\n\n\ndata: a\n\n\n", []string{"a"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			evs, err := readEvents(t, tc.in, 1<<10)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, ev := range evs {
				if !ev.hasData {
					got = append(got, "-")
					continue
				}
				got = append(got, string(ev.data))
			}
			if strings.Join(got, "|") != strings.Join(tc.data, "|") {
				t.Fatalf("events %q, want %q", got, tc.data)
			}
		})
	}
	if _, err := readEvents(t, "data: "+strings.Repeat("x", 100)+"\n\n", 64); !errors.Is(err, errSSELine) {
		t.Fatalf("an event over the bound: %v", err)
	}
}

// TestStreamVettingDropsResponses: the standalone stream passes a
// server's requests and the notifications that carry nothing of another's,
// never a response, an unknown notification or a message that does not
// parse; a listen stream passes its own answer last.
func TestStreamVettingDropsResponses(t *testing.T) {
	g := &Gateway{cfg: Config{MaxJSONDepth: 64}, metrics: newMetrics(nil), tasks: newTasks(0), log: slog.New(slog.DiscardHandler)}
	b := &Backend{Name: "jira"}
	cl := &caller{anonymous: true, remote: "127.0.0.1"}
	in := "id: 1\rdata: {\"jsonrpc\":\"2.0\",\"id\":2,\"result\":{}}\r\r" +
		"id: 2\ndata: {\"jsonrpc\":\"2.0\",\"id\":\"x\",\"error\":{\"code\":1,\"message\":\"m\"}}\n\n" +
		"id: 3\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"sampling/createMessage\"}\n\n" +
		"data: {\"jsonrpc\":\"2.0\",\"id\":null,\"method\":\"notifications/resources/updated\",\"params\":{\"uri\":\"jira://admin/hidden\"}}\n\n" +
		"data: {\"jsonrpc\":\"2.0\",\"id\":{},\"method\":\"notifications/secret/things\"}\n\n" +
		"data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/secret/things\",\"params\":{}}\n\n" +
		"data: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tasks\",\"params\":{\"taskId\":\"not-yours\"}}\n\n" +
		"data: not json\n\n" +
		": a comment\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n"
	relay := func(listenID json.RawMessage, in string) string {
		var out bytes.Buffer
		w := bufio.NewWriter(&out)
		if err := relayVetted(t.Context(), w, io.NopCloser(strings.NewReader(in)), g.notificationVetter(b, cl, listenID)); err != nil {
			t.Fatal(err)
		}
		return out.String()
	}
	want := "id: 3\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"sampling/createMessage\"}\n\n" +
		": a comment\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/tools/list_changed\"}\n\n"
	if got := relay(nil, in); got != want {
		t.Fatalf("GET stream = %q\nwant %q", got, want)
	}
	// On the listen stream of request "x", its answer passes and ends the
	// relay: nothing after it is read.
	if got, want := relay(json.RawMessage(`"x"`), in), "id: 2\ndata: {\"jsonrpc\":\"2.0\",\"id\":\"x\",\"error\":{\"code\":1,\"message\":\"m\"}}\n\n"; got != want {
		t.Fatalf("listen stream = %q\nwant %q", got, want)
	}
}

// FuzzSSEReader: any body reads to the end or a bound error, and every
// event written back reads again as the same event.
func FuzzSSEReader(f *testing.F) {
	f.Add("data: a\r\n\r\nid: 1\rdata: b\r\r")
	f.Add("\xEF\xBB\xBFdata: {\"x\":\ndata: 1}\n\n: c\n")
	f.Fuzz(func(t *testing.T, in string) {
		evs, err := readEvents(t, in, 1<<12)
		if err != nil {
			return
		}
		for _, ev := range evs {
			var b bytes.Buffer
			if err := ev.write(&b, ev.data); err != nil {
				t.Fatal(err)
			}
			again, err := readEvents(t, b.String(), 1<<14)
			if err != nil || len(again) != 1 || string(again[0].data) != string(ev.data) || again[0].hasData != ev.hasData {
				t.Fatalf("event %+v written as %q reads as %+v, %v", ev, b.String(), again, err)
			}
		}
	})
}
