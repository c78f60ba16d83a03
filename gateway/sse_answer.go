package gateway

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"time"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/pbac-gateway/pbac/jsonrpc"
)

// answerWatch follows the bytes of a backend's event-stream answer to one
// request, as they are passed on unchanged, and tells when the event that
// carries the JSON-RPC response to that request has gone through: after it
// the server has nothing more to send on this stream (it SHOULD close it,
// Streamable HTTP), so the gateway stops reading and lets the backend
// connection go instead of holding it, and a worker, until the backend
// closes. An event longer than maxWatched is not read (the stream then
// ends when the backend ends it, as before).
type answerWatch struct {
	id      string // jsonrpc.IDKey of the request
	buf     []byte // the current event so far
	skip    bool   // the current event is too long to read
	last    []byte // the last bytes seen, for a line end split between writes
	scanned int    // how far buf has been searched for the event's end
	later   bool   // an event has gone by: a BOM no longer starts the stream
}

var utf8BOM = []byte("\xEF\xBB\xBF")

// maxWatched bounds the event answerWatch reads.
const maxWatched = 1 << 20

func newAnswerWatch(id json.RawMessage) *answerWatch {
	key, ok := jsonrpc.IDKey(id)
	if !ok {
		return nil
	}
	return &answerWatch{id: key}
}

// feed reads p, the next bytes of the stream, and reports whether the
// response has now been passed on whole.
func (a *answerWatch) feed(p []byte) bool {
	for len(p) > 0 {
		if a.skip {
			// Drop bytes up to the end of the long event.
			joined := append(append([]byte(nil), a.last...), p...)
			end := eventEnd(joined, 0)
			if end < 0 {
				a.last = tail(joined, 3)
				return false
			}
			consumed := end - len(a.last)
			if consumed < 0 {
				consumed = 0
			}
			a.skip, a.last, a.later = false, nil, true
			p = p[min(consumed, len(p)):]
			continue
		}
		a.buf = append(a.buf, p...)
		p = nil
		for {
			end := eventEnd(a.buf, max(0, a.scanned-3))
			if end < 0 {
				a.scanned = len(a.buf)
				if len(a.buf) > maxWatched {
					a.skip, a.last, a.buf, a.scanned = true, tail(a.buf, 3), nil, 0
					a.later = true
				}
				break
			}
			ev := a.buf[:end]
			rest := a.buf[end:]
			if a.isAnswer(ev) {
				return true
			}
			a.buf, a.scanned, a.later = append([]byte(nil), rest...), 0, true
		}
	}
	return false
}

// isAnswer tells whether one whole event is the response to the request.
func (a *answerWatch) isAnswer(event []byte) bool {
	if a.later && bytes.HasPrefix(event, utf8BOM) {
		// Only the stream's first bytes may be a BOM; later it is part of
		// a field name no reader knows, so the event carries no data.
		return false
	}
	if len(event) > maxWatched {
		return false
	}
	data, ok := eventData(event)
	if !ok {
		return false
	}
	id, ok := responseID(data)
	if !ok {
		return false
	}
	key, ok := jsonrpc.IDKey(id)
	return ok && key == a.id
}

// eventData is the data of the first event in event, read as sseReader
// reads it (and as an EventSource does: lines end with CRLF, LF or CR, a
// leading byte order mark is dropped, data lines are joined with "\n", a
// blank line ends the event), and whether it has any. It reads the bytes in
// place: one data line, the usual answer, is returned without a copy.
func eventData(event []byte) (data []byte, hasData bool) {
	event = bytes.TrimPrefix(event, utf8BOM)
	var joined []byte // the data lines joined, once there are two
	fields := false
	for len(event) > 0 {
		line := event
		event = nil
		if i := bytes.IndexAny(line, "\r\n"); i >= 0 {
			end := i + 1
			if line[i] == '\r' && end < len(line) && line[end] == '\n' {
				end++
			}
			line, event = line[:i], line[end:]
		}
		if len(line) == 0 {
			if hasData || fields {
				return data, hasData
			}
			continue // blank lines before the event
		}
		value, ok := dataValue(line)
		if !ok {
			fields = true
			continue
		}
		switch {
		case !hasData:
			data, hasData = value, true
		default:
			if joined == nil {
				joined = append([]byte(nil), data...)
			}
			joined = append(append(joined, '\n'), value...)
			data = joined
		}
	}
	return data, hasData
}

// responseID is the id of a JSON-RPC response: one object with an "id"
// that is not null and no method. It is read in one pass that skips the
// result unparsed. Anything doubtful is not a response (a name that is
// "id" or "method" but for case, a name twice, bytes after the object):
// the stream then goes on to its end, as it would without the watch.
func responseID(data []byte) (json.RawMessage, bool) {
	dec := jsontext.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.ReadToken(); err != nil || tok.Kind() != '{' {
		return nil, false
	}
	var id jsontext.Value
	for {
		switch dec.PeekKind() {
		case '}':
			if _, err := dec.ReadToken(); err != nil {
				return nil, false
			}
			if _, err := dec.ReadToken(); err != io.EOF {
				return nil, false
			}
			if len(id) == 0 || string(id) == "null" {
				return nil, false
			}
			return json.RawMessage(id), true
		case 0:
			return nil, false
		}
		name, err := dec.ReadToken()
		if err != nil {
			return nil, false
		}
		switch n := name.String(); {
		case n == "id":
			v, err := dec.ReadValue()
			if err != nil {
				return nil, false
			}
			id = v.Clone()
		case strings.EqualFold(n, "id") || strings.EqualFold(n, "method"):
			return nil, false
		default:
			if dec.SkipValue() != nil {
				return nil, false
			}
		}
	}
}

// eventEnd is the index just past the blank line that ends the first
// event in b (searching from from), or -1: an event ends at two line ends
// in a row, each CRLF, LF or CR.
func eventEnd(b []byte, from int) int {
	for i := from; i < len(b); i++ {
		var first int // length of the line end at i
		switch {
		case b[i] == '\r' && i+1 < len(b) && b[i+1] == '\n':
			first = 2
		case b[i] == '\r' && i+1 == len(b):
			return -1 // a CR at the end may be the start of a CRLF
		case b[i] == '\n' || b[i] == '\r':
			first = 1
		default:
			continue
		}
		j := i + first
		switch {
		case j < len(b) && b[j] == '\r' && j+1 < len(b) && b[j+1] == '\n':
			return j + 2
		case j < len(b) && b[j] == '\r' && j+1 == len(b):
			return -1
		case j < len(b) && (b[j] == '\n' || b[j] == '\r'):
			return j + 1
		}
		i = j - 1
	}
	return -1
}

func tail(b []byte, n int) []byte {
	if len(b) <= n {
		return append([]byte(nil), b...)
	}
	return append([]byte(nil), b[len(b)-n:]...)
}

// After the answer, what a backend still sends on the stream (its end,
// usually within a millisecond) is read and dropped in the background,
// so that the client's response ends at once and the connection goes back
// to the pool. A backend that sends more than drainBytes or keeps the
// stream open past drainWait loses the connection; so does every stream
// beyond maxDraining at once.
const (
	maxDraining = 256
	drainWait   = 250 * time.Millisecond
	drainBytes  = 64 << 10
)

// drainAnswered reads body to its end in the background (bounded as
// above), then closes it. A close when drainWait is up ends a read in
// flight (forwardBody).
func (g *Gateway) drainAnswered(body io.ReadCloser) {
	select {
	case g.draining <- struct{}{}:
	default:
		body.Close()
		return
	}
	g.bg.Go(func() {
		defer func() { <-g.draining }()
		defer body.Close()
		t := time.AfterFunc(drainWait, func() { _ = body.Close() })
		defer t.Stop()
		_, _ = io.Copy(io.Discard, io.LimitReader(body, drainBytes))
	})
}
