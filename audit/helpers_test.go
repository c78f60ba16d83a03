package audit

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"
)

func testLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// memSink records every batch it is given.
type memSink struct {
	mu      sync.Mutex
	recs    []Record
	batches []int
	closed  bool
	gate    chan struct{} // when non-nil, Write waits for it (or ctx)
	entered chan struct{} // signalled (non-blocking) when Write starts
}

func (s *memSink) Write(ctx context.Context, recs []Record) error {
	if s.entered != nil {
		select {
		case s.entered <- struct{}{}:
		default:
		}
	}
	if s.gate != nil {
		select {
		case <-s.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recs = append(s.recs, recs...)
	s.batches = append(s.batches, len(recs))
	return nil
}

func (s *memSink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	return nil
}

func (s *memSink) snapshot() ([]Record, []int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Record(nil), s.recs...), append([]int(nil), s.batches...), s.closed
}

func rec(i int) Record {
	return Record{
		Time:      time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Millisecond),
		RequestID: fmt.Sprintf("req-%06d", i),
		ClientID:  "client",
		Method:    "tools/call",
		Tool:      "drive.read",
		Decision:  DecisionAllow,
		Status:    200,
	}
}

func ctxTimeout(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

func ids(recs []Record) []string {
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.RequestID
	}
	return out
}
