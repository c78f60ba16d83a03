package gateway

import (
	"bufio"
	"bytes"
	"errors"
	"io"
)

// sseEvent is one event of a text/event-stream body, read as the W3C
// EventSource rules read it (what clients do): lines end with CRLF, LF or
// CR; a leading byte order mark is dropped; the data lines of an event are
// joined with "\n"; a blank line ends the event.
type sseEvent struct {
	fields  [][]byte // the lines other than data (event:, id:, retry:, comments), as read
	data    []byte
	hasData bool
}

// write writes the event back in one normal form (LF line ends, one data
// line per line of data) with data in place of its own.
func (e sseEvent) write(w io.Writer, data []byte) error {
	var b bytes.Buffer
	for _, f := range e.fields {
		b.Write(f)
		b.WriteByte('\n')
	}
	if e.hasData {
		for _, line := range bytes.Split(data, []byte("\n")) {
			b.WriteString("data: ")
			b.Write(line)
			b.WriteByte('\n')
		}
	}
	b.WriteByte('\n')
	_, err := w.Write(b.Bytes())
	return err
}

// plain is the event with, of its lines other than data, only comments
// and the event, id and retry fields: a line a parser might read another
// way (a byte order mark before "data:", an unknown field) is not passed
// on.
func (e sseEvent) plain() sseEvent {
	out := sseEvent{data: e.data, hasData: e.hasData}
	for _, f := range e.fields {
		if bytes.HasPrefix(f, []byte(":")) || bytes.HasPrefix(f, []byte("event:")) || bytes.HasPrefix(f, []byte("id:")) ||
			bytes.HasPrefix(f, []byte("retry:")) || bytes.Equal(f, []byte("event")) || bytes.Equal(f, []byte("id")) {
			out.fields = append(out.fields, f)
		}
	}
	return out
}

// errSSELine is an SSE line or event longer than the reader allows.
var errSSELine = errors.New("an event-stream event is too long")

// sseReader reads the events of an event-stream body, each at most max
// bytes.
type sseReader struct {
	r       *bufio.Reader
	max     int
	started bool
}

func newSSEReader(r io.Reader, max int) *sseReader {
	return &sseReader{r: bufio.NewReaderSize(r, 16<<10), max: max}
}

// line reads one line without its end (CRLF, LF or CR).
func (s *sseReader) line(budget int) ([]byte, error) {
	var out []byte
	for {
		b, err := s.r.ReadByte()
		if err != nil {
			if errors.Is(err, io.EOF) && len(out) > 0 {
				return out, nil
			}
			return out, err
		}
		switch b {
		case '\n':
			return out, nil
		case '\r':
			if next, err := s.r.Peek(1); err == nil && next[0] == '\n' {
				_, _ = s.r.ReadByte()
			}
			return out, nil
		}
		if len(out) >= budget {
			return nil, errSSELine
		}
		out = append(out, b)
	}
}

// next returns the next event; io.EOF after the last one. An event cut
// short by the end of the body is returned as it is (then io.EOF).
func (s *sseReader) next() (sseEvent, error) {
	var ev sseEvent
	size := 0
	for {
		line, err := s.line(s.max - size)
		if !s.started {
			s.started = true
			line = bytes.TrimPrefix(line, []byte("\xEF\xBB\xBF"))
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return sseEvent{}, err
		}
		if errors.Is(err, io.EOF) && line == nil {
			if ev.hasData || len(ev.fields) > 0 {
				return ev, nil
			}
			return sseEvent{}, io.EOF
		}
		size += len(line) + 1
		if len(line) == 0 {
			if ev.hasData || len(ev.fields) > 0 {
				return ev, nil
			}
			continue // blank lines between events
		}
		if value, ok := dataValue(line); ok {
			if ev.hasData {
				ev.data = append(ev.data, '\n')
			}
			ev.data = append(ev.data, value...)
			ev.hasData = true
			continue
		}
		ev.fields = append(ev.fields, line)
	}
}

// dataValue is the value of a "data" field line ("data", "data:" or
// "data: " and the value), and whether line is one.
func dataValue(line []byte) ([]byte, bool) {
	value, ok := bytes.CutPrefix(line, []byte("data"))
	if !ok || (len(value) > 0 && value[0] != ':') {
		return nil, false
	}
	return bytes.TrimPrefix(bytes.TrimPrefix(value, []byte(":")), []byte(" ")), true
}
