package gateway

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"

	"github.com/pbac-gateway/pbac/jsonrpc"
)

// feedAll feeds stream to a watch for id in chunks of size n and returns
// how many bytes had been fed when it said the answer had gone through
// (-1: never).
func feedAll(id, stream string, n int) int {
	w := newAnswerWatch([]byte(id))
	for i := 0; i < len(stream); i += n {
		j := min(i+n, len(stream))
		if w.feed([]byte(stream[i:j])) {
			return j
		}
	}
	return -1
}

func TestAnswerWatch(t *testing.T) {
	progress := "event: message\ndata: {\"jsonrpc\":\"2.0\",\"method\":\"notifications/progress\",\"params\":{\"progress\":1}}\n\n"
	answer := "event: message\ndata: {\"jsonrpc\":\"2.0\",\"id\":7,\"result\":{}}\n\n"
	other := "data: {\"jsonrpc\":\"2.0\",\"id\":8,\"result\":{}}\n\n"
	strID := "data: {\"jsonrpc\":\"2.0\",\"id\":\"a\",\"error\":{\"code\":1,\"message\":\"x\"}}\n\n"
	twoLines := "data: {\"jsonrpc\":\"2.0\",\n" + "data: \"id\":7,\"result\":{}}\n\n"
	tests := []struct {
		name, id, stream string
		done             int // bytes fed when done (-1 never)
	}{
		{"the answer", "7", answer, len(answer)},
		{"after a progress notification", "7", progress + answer, len(progress + answer)},
		{"another id's answer is not ours", "7", other, -1},
		{"an id spelt otherwise is ours", "7.0", answer, len(answer)},
		{"a string id", `"a"`, strID, len(strID)},
		{"CRLF line ends", "7", strings.ReplaceAll(answer, "\n", "\r\n"), len(answer) + 3},
		// A CR last may be the start of a CRLF: the event ends with the
		// next byte (or with the stream).
		{"CR line ends", "7", strings.ReplaceAll(answer, "\n", "\r") + ":", len(answer) + 1},
		{"data on two lines", "7", twoLines, len(twoLines)},
		{"a BOM first", "7", "\xEF\xBB\xBF" + answer, len(answer) + 3},
		{"a BOM later names no field", "7", progress + "\xEF\xBB\xBF" + answer, -1},
		{"an unfinished event", "7", strings.TrimSuffix(answer, "\n"), -1},
		{"a request from the server with our id", "7", "data: {\"jsonrpc\":\"2.0\",\"id\":7,\"method\":\"elicitation/create\"}\n\n", -1},
		{"a too long event, then the answer", "7", "data: " + strings.Repeat("x", maxWatched+10) + "\n\n" + answer, maxWatched + 18 + len(answer)},
	}
	for _, tt := range tests {
		for _, n := range []int{1, 2, 3, 7, 64, 1 << 16, 1 << 21} {
			if got := feedAll(tt.id, tt.stream, n); got != tt.done && !(tt.done > 0 && got >= tt.done && got-tt.done < n) {
				t.Errorf("%s, chunks of %d: done after %d bytes, want %d", tt.name, n, got, tt.done)
			}
		}
	}
}

// pipe, watching an answer, stops reading after it: a backend that keeps the
// stream open afterwards does not hold the gateway.
func TestPipeAnswerStopsAfterTheAnswer(t *testing.T) {
	pr, pw := io.Pipe()
	go func() {
		_, _ = io.WriteString(pw, "data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n")
		// then nothing, never closed
	}()
	var out bytes.Buffer
	bw := bufio.NewWriter(&out)
	done := make(chan struct{})
	go func() { pipe(bw, pr, newAnswerWatch([]byte("1"))); close(done) }()
	<-done
	_ = pw.Close()
	if !strings.Contains(out.String(), `"id":1`) {
		t.Fatalf("passed on %q", out.String())
	}
}

// FuzzAnswerWatch: whatever the stream and however it is cut, the watch
// agrees with the EventSource reader on whether (and after which event)
// the response to the request went through.
func FuzzAnswerWatch(f *testing.F) {
	f.Add([]byte("data: {\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n\n"), uint8(3))
	f.Add([]byte("\xEF\xBB\xBFdata: {\"id\":1,\"result\":1}\r\n\r\n"), uint8(1))
	f.Add([]byte(": c\n\n\xEF\xBB\xBFdata: {\"id\":1,\"result\":1}\n\n"), uint8(4))
	f.Add([]byte(": c\n\ndata: {\"id\":2}\n\ndata:{\"id\":1,\"result\":1}\r\r"), uint8(5))
	f.Fuzz(func(t *testing.T, stream []byte, cut uint8) {
		n := int(cut%32) + 1
		if len(stream) > 1<<16 {
			return
		}
		// The reference: the events as the EventSource reader reads them.
		want := -1
		r := newSSEReader(bytes.NewReader(stream), maxWatched+8)
		w := newAnswerWatch([]byte("1"))
		for {
			ev, err := r.next()
			if err != nil {
				break
			}
			if ev.hasData && isResponse(ev.data) && w.isAnswer([]byte("data: "+strings.ReplaceAll(string(ev.data), "\n", "\ndata: ")+"\n\n")) {
				want = 1
				break
			}
		}
		got := feedAll("1", string(stream), n)
		if want < 0 && got >= 0 {
			t.Fatalf("done after %d bytes of %q, which carries no answer", got, stream)
		}
	})
}

func TestResponseID(t *testing.T) {
	tests := []struct {
		data string
		id   string // "" when not a response
	}{
		{`{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"x"}]}}`, "7"},
		{` {"result":{},"id":"a"} `, `"a"`},
		{`{"jsonrpc":"2.0","id":7,"error":{"code":1,"message":"m"}}`, "7"},
		{`{"jsonrpc":"2.0","id":7,"method":"elicitation/create","params":{}}`, ""},
		{`{"jsonrpc":"2.0","method":"notifications/progress"}`, ""},
		{`{"jsonrpc":"2.0","id":null,"error":{}}`, ""},
		{`{"jsonrpc":"2.0","ID":7,"result":{}}`, ""},
		{`{"jsonrpc":"2.0","id":7,"Method":"x","result":{}}`, ""},
		{`{"id":7,"id":8,"result":{}}`, ""},
		{`{"id":7,"result":{}} {"id":8}`, ""},
		{`{"id":7,"result":{`, ""},
		{`[{"id":7,"result":{}}]`, ""},
		{``, ""},
	}
	for _, tt := range tests {
		id, ok := responseID([]byte(tt.data))
		if ok != (tt.id != "") || string(id) != tt.id {
			t.Errorf("responseID(%s) = %s, %v; want %q", tt.data, id, ok, tt.id)
		}
	}
}

// FuzzResponseID is differential: whatever responseID takes for a
// response, encoding/json's reading (isResponse, then the id) takes for
// the same response.
func FuzzResponseID(f *testing.F) {
	f.Add([]byte(`{"jsonrpc":"2.0","id":7,"result":{}}`))
	f.Add([]byte(`{"id":"a","error":{"code":1}}`))
	f.Add([]byte(`{"id":7,"method":"x"}`))
	f.Add([]byte(`{"id":1.0e0,"result":[1,{"a":"\u0000"}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		id, ok := responseID(data)
		if !ok {
			return
		}
		var m struct {
			ID json.RawMessage `json:"id"`
		}
		if !isResponse(data) || json.Unmarshal(data, &m) != nil {
			t.Fatalf("responseID takes %q for a response (id %s), encoding/json does not", data, id)
		}
		k1, ok1 := jsonrpc.IDKey(id)
		k2, ok2 := jsonrpc.IDKey(m.ID)
		if ok1 != ok2 || k1 != k2 {
			t.Fatalf("%q: id %s (%q %v), encoding/json %s (%q %v)", data, id, k1, ok1, m.ID, k2, ok2)
		}
	})
}

// BenchmarkResponseID: telling the answer to a tools/call (a 2 KiB result)
// from other messages, in one pass (responseID) and, as the baseline of
// the same run, with encoding/json as the watch did before (isResponse,
// then the id).
func BenchmarkResponseID(b *testing.B) {
	text := strings.Repeat(`{"key":"SEC-12","summary":"Rotate production AWS credentials automatically"},`, 26)
	data := []byte(`{"jsonrpc":"2.0","id":42,"result":{"content":[{"type":"text","text":"x"}],"structuredContent":{"issues":[` + strings.TrimSuffix(text, ",") + `]}}}`)
	b.Run("one-pass", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := responseID(data); !ok {
				b.Fatal("not a response")
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.SetBytes(int64(len(data)))
		b.ReportAllocs()
		for b.Loop() {
			var m struct {
				ID json.RawMessage `json:"id"`
			}
			if !isResponse(data) || json.Unmarshal(data, &m) != nil {
				b.Fatal("not a response")
			}
		}
	})
}

// eventDataCases are events as a backend may spell them.
var eventDataCases = []string{
	"data: {\"id\":1}\n\n",
	"data:{\"id\":1}\r\n\r\n",
	"data:  two spaces\r\r",
	"\xEF\xBB\xBFdata: x\n\n",
	"event: message\nid: 7\ndata: a\ndata: b\n\n",
	"data\ndata:\ndata: c\n\n",
	"\n\n: comment\ndata: x\n\n",
	": only a comment\n\n",
	"datax: not data\n\n",
	"Data: not data either\n\n",
	"data: cut short",
	"data: a\rdata: b\r\n\n",
	"",
}

// TestEventData: the answer watch's in-place read of one event gives the
// data the event-stream reader gives.
func TestEventData(t *testing.T) {
	for _, c := range eventDataCases {
		ev, err := newSSEReader(strings.NewReader(c), maxWatched+8).next()
		data, ok := eventData([]byte(c))
		if ok != (err == nil && ev.hasData) || !bytes.Equal(data, ev.data) {
			t.Errorf("%q: eventData = %q %v, the reader %q %v (%v)", c, data, ok, ev.data, ev.hasData, err)
		}
	}
}

// FuzzEventData is differential: eventData and sseReader.next agree on the
// first event of any bytes.
func FuzzEventData(f *testing.F) {
	for _, c := range eventDataCases {
		f.Add([]byte(c))
	}
	f.Fuzz(func(t *testing.T, event []byte) {
		if len(event) > 1<<16 {
			return
		}
		ev, err := newSSEReader(bytes.NewReader(event), maxWatched+8).next()
		data, ok := eventData(event)
		if ok != (err == nil && ev.hasData) || !bytes.Equal(data, ev.data) {
			t.Fatalf("%q: eventData = %q %v, the reader %q %v (%v)", event, data, ok, ev.data, ev.hasData, err)
		}
	})
}

// BenchmarkIsAnswer: telling whether one event (a 2 KiB tools/call
// answer) is the answer, as the watch does (eventData, then responseID),
// and, as the baseline of the same run, reading the event with the
// event-stream reader as the watch did before.
func BenchmarkIsAnswer(b *testing.B) {
	text := strings.Repeat(`{"key":"SEC-12","summary":"Rotate production AWS credentials automatically"},`, 26)
	event := []byte("event: message\ndata: " + `{"jsonrpc":"2.0","id":42,"result":{"content":[{"type":"text","text":"x"}],"structuredContent":{"issues":[` + strings.TrimSuffix(text, ",") + `]}}}` + "\n\n")
	w := newAnswerWatch([]byte("42"))
	b.Run("in-place", func(b *testing.B) {
		b.SetBytes(int64(len(event)))
		b.ReportAllocs()
		for b.Loop() {
			if !w.isAnswer(event) {
				b.Fatal("not the answer")
			}
		}
	})
	b.Run("event-stream-reader", func(b *testing.B) {
		b.SetBytes(int64(len(event)))
		b.ReportAllocs()
		for b.Loop() {
			ev, err := newSSEReader(bytes.NewReader(event), maxWatched+8).next()
			if err != nil || !ev.hasData {
				b.Fatal(err)
			}
			if id, ok := responseID(ev.data); !ok || string(id) != "42" {
				b.Fatal("not the answer")
			}
		}
	})
}
