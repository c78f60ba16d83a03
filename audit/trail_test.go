package audit

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestTrailOrderingAndBatching(t *testing.T) {
	tests := []struct {
		name      string
		n         int
		batchSize int
		gated     bool // hold the first write so the rest queue up and batch
	}{
		{"single records", 50, 0, false},
		{"many records default batch", 5000, 0, false},
		{"gated batch 64", 1000, 64, true},
		{"gated batch 1", 100, 1, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sink := &memSink{}
			if tc.gated {
				sink.gate = make(chan struct{})
				sink.entered = make(chan struct{}, 1)
			}
			tr := NewTrailWithOptions(testLogger(), TrailOptions{BatchSize: tc.batchSize, QueueSize: tc.n + 1}, sink)
			for i := range tc.n {
				tr.Record(rec(i))
				if tc.gated && i == 0 {
					<-sink.entered // first record is in the writer's hands
				}
			}
			if tc.gated {
				close(sink.gate)
			}
			ctx, cancel := ctxTimeout(10 * time.Second)
			defer cancel()
			if err := tr.Close(ctx); err != nil {
				t.Fatal(err)
			}
			got, batches, closed := sink.snapshot()
			if !closed {
				t.Fatal("sink not closed")
			}
			if len(got) != tc.n || tr.Dropped() != 0 {
				t.Fatalf("got %d records, dropped %d, want %d, 0", len(got), tr.Dropped(), tc.n)
			}
			for i, r := range got {
				if r.RequestID != rec(i).RequestID {
					t.Fatalf("record %d is %s: order broken", i, r.RequestID)
				}
			}
			max := tc.batchSize
			if max == 0 {
				max = DefaultBatchSize
			}
			for _, b := range batches {
				if b < 1 || b > max {
					t.Fatalf("batch of %d outside [1,%d]", b, max)
				}
			}
			if tc.gated {
				want := 1 + (tc.n-1+max-1)/max // the lone first record, then full batches
				if len(batches) != want {
					t.Fatalf("%d batches %v, want %d", len(batches), batches[:min(10, len(batches))], want)
				}
			}
			if st := tr.Stats(); st.Written != uint64(tc.n) || st.Queued != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestTrailSetsTime(t *testing.T) {
	sink := &memSink{}
	tr := NewTrail(testLogger(), sink)
	before := time.Now()
	tr.Record(Record{RequestID: "x", Method: "tools/list", Decision: DecisionAllow})
	if err := tr.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, _, _ := sink.snapshot()
	if len(got) != 1 || got[0].Time.Before(before) || got[0].Time.Location() != time.UTC {
		t.Fatalf("time not stamped: %+v", got)
	}
}

func TestTrailDropsWhenSinkStuck(t *testing.T) {
	tests := []struct {
		name    string
		queue   int
		timeout time.Duration
		n       int
	}{
		{"tiny queue", 4, 5 * time.Millisecond, 40},
		{"small queue longer bound", 16, 20 * time.Millisecond, 60},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			sink := &memSink{gate: make(chan struct{}), entered: make(chan struct{}, 1)}
			tr := NewTrailWithOptions(testLogger(), TrailOptions{QueueSize: tc.queue, EnqueueTimeout: tc.timeout, BatchSize: 8}, sink)
			tr.Record(rec(0))
			<-sink.entered                             // the writer is now stuck in the sink
			bound := tc.timeout + 250*time.Millisecond // generous slack for -race and busy CI
			for i := 1; i < tc.n; i++ {
				start := time.Now()
				tr.Record(rec(i))
				if d := time.Since(start); d > bound {
					t.Fatalf("Record %d blocked %v (bound %v)", i, d, bound)
				}
			}
			wantDropped := uint64(tc.n - 1 - tc.queue) // one in the sink, queue full, rest dropped
			if got := tr.Dropped(); got != wantDropped {
				t.Fatalf("dropped %d, want %d", got, wantDropped)
			}
			close(sink.gate)
			ctx, cancel := ctxTimeout(5 * time.Second)
			defer cancel()
			if err := tr.Close(ctx); err != nil {
				t.Fatal(err)
			}
			got, _, _ := sink.snapshot()
			if uint64(len(got))+tr.Dropped() != uint64(tc.n) {
				t.Fatalf("written %d + dropped %d != %d", len(got), tr.Dropped(), tc.n)
			}
			// Delivered records are the oldest ones, in order.
			for i, r := range got {
				if r.RequestID != rec(i).RequestID {
					t.Fatalf("record %d is %s", i, r.RequestID)
				}
			}
			// After Close, records are counted, not lost silently.
			before := tr.Dropped()
			tr.Record(rec(tc.n))
			if tr.Dropped() != before+1 {
				t.Fatal("record after close not counted as dropped")
			}
		})
	}
}

func TestTrailCloseDeadlineWithStuckSink(t *testing.T) {
	sink := &memSink{gate: make(chan struct{}), entered: make(chan struct{}, 1)} // never opened
	tr := NewTrailWithOptions(testLogger(), TrailOptions{QueueSize: 100, BatchSize: 1}, sink)
	for i := range 10 {
		tr.Record(rec(i))
	}
	<-sink.entered
	ctx, cancel := ctxTimeout(50 * time.Millisecond)
	defer cancel()
	err := tr.Close(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Close = %v, want deadline exceeded", err)
	}
	// The stuck write is cancelled through its context; the rest is dropped
	// and the sinks are closed by the writer.
	select {
	case <-tr.done:
	case <-time.After(5 * time.Second):
		t.Fatal("writer did not finish after cancellation")
	}
	if got := tr.Dropped(); got != 9 {
		t.Fatalf("dropped %d, want 9", got)
	}
	if st := tr.Stats(); st.SinkFailed != 1 {
		t.Fatalf("sink failures %d, want 1", st.SinkFailed)
	}
	if _, _, closed := sink.snapshot(); !closed {
		t.Fatal("sink not closed")
	}
	if err := tr.Close(context.Background()); err != nil {
		t.Fatalf("second Close = %v", err)
	}
}

func TestTrailSubscribers(t *testing.T) {
	const n = 100
	tests := []struct {
		name     string
		buffer   int
		read     bool
		wantGot  int
		wantLost uint64
	}{
		{"fast subscriber", n, true, n, 0},
		{"slow subscriber buffer 5", 5, false, 5, n - 5},
		{"slow subscriber buffer 0 means 1", 0, false, 1, n - 1},
	}
	stuck := &memSink{gate: make(chan struct{})} // sinks stuck: subscribers must not care
	tr := NewTrailWithOptions(testLogger(), TrailOptions{QueueSize: 2 * n}, stuck)
	subs := make([]*Subscription, len(tests))
	for i, tc := range tests {
		subs[i] = tr.NewSubscription(tc.buffer)
	}
	ch, cancelExtra := tr.Subscribe(n)
	var wg sync.WaitGroup
	var extra []Record
	wg.Add(1)
	go func() {
		defer wg.Done()
		for r := range ch {
			extra = append(extra, r)
		}
	}()

	start := time.Now()
	for i := range n {
		tr.Record(rec(i))
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("recording took %v: subscribers blocked the trail", d)
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := subs[i]
			s.Cancel()
			s.Cancel() // idempotent
			var got []Record
			for r := range s.C {
				got = append(got, r)
			}
			if len(got) != tc.wantGot || s.Dropped() != tc.wantLost {
				t.Fatalf("got %d lost %d, want %d lost %d", len(got), s.Dropped(), tc.wantGot, tc.wantLost)
			}
			for j, r := range got {
				if r.RequestID != rec(j).RequestID {
					t.Fatalf("subscriber record %d is %s", j, r.RequestID)
				}
			}
		})
	}
	if st := tr.Stats(); st.SubscriberDropped != (n-5)+(n-1) || st.Subscribers != 1 {
		t.Fatalf("stats %+v", st)
	}
	close(stuck.gate)
	if err := tr.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	wg.Wait() // Close ends the remaining subscription
	cancelExtra()
	if len(extra) != n {
		t.Fatalf("extra subscriber got %d", len(extra))
	}
	late, cancelLate := tr.Subscribe(1)
	defer cancelLate()
	if _, ok := <-late; ok {
		t.Fatal("subscription on a closed trail is open")
	}
}

func TestTrailConcurrentRecordAndClose(t *testing.T) {
	sink := &memSink{}
	tr := NewTrailWithOptions(testLogger(), TrailOptions{QueueSize: 64, EnqueueTimeout: time.Millisecond}, sink)
	ch, cancel := tr.Subscribe(8)
	defer cancel()
	go func() {
		for range ch {
		}
	}()
	var wg sync.WaitGroup
	const workers, per = 8, 500
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				tr.Record(rec(w*per + i))
			}
		}()
	}
	time.Sleep(5 * time.Millisecond)
	if err := tr.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	got, _, _ := sink.snapshot()
	if uint64(len(got))+tr.Dropped() != workers*per {
		t.Fatalf("written %d + dropped %d != %d", len(got), tr.Dropped(), workers*per)
	}
}

// TestTrailLinger: a record waits for others to be written with it; a full
// batch is written at once, and Close writes what waits without waiting
// out the linger.
func TestTrailLinger(t *testing.T) {
	sink := &memSink{}
	tr := NewTrailWithOptions(testLogger(), TrailOptions{BatchSize: 3, Linger: time.Hour}, sink)
	for i := range 7 {
		tr.Record(rec(i))
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, batches, _ := sink.snapshot()
		if len(got) == 6 {
			if len(batches) != 2 || batches[0] != 3 || batches[1] != 3 {
				t.Fatalf("batches %v, want two full ones", batches)
			}
			break
		}
		if len(got) > 6 || time.Now().After(deadline) {
			t.Fatalf("%d records written in batches %v: want the two full batches, and the seventh waiting", len(got), batches)
		}
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := ctxTimeout(10 * time.Second)
	defer cancel()
	closed := time.Now()
	if err := tr.Close(ctx); err != nil {
		t.Fatal(err)
	}
	got, batches, _ := sink.snapshot()
	if len(got) != 7 || len(batches) != 3 || batches[2] != 1 {
		t.Fatalf("after Close: %d records in batches %v, want the seventh written alone", len(got), batches)
	}
	if waited := time.Since(closed); waited > 5*time.Second {
		t.Fatalf("Close waited %v: it waited out the linger", waited)
	}
}

// TestTrailWithoutLinger: a negative linger writes a record as soon as
// nothing else is queued.
func TestTrailWithoutLinger(t *testing.T) {
	sink := &memSink{}
	tr := NewTrailWithOptions(testLogger(), TrailOptions{Linger: -1}, sink)
	defer func() {
		ctx, cancel := ctxTimeout(10 * time.Second)
		defer cancel()
		_ = tr.Close(ctx)
	}()
	tr.Record(rec(0))
	deadline := time.Now().Add(10 * time.Second)
	for {
		if got, _, _ := sink.snapshot(); len(got) == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the record was not written while the trail was open")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestTrailFlush: Flush returns once every record recorded before it is
// with the sinks, batch after batch, without waiting out the linger; on a
// closed trail it returns at once.
func TestTrailFlush(t *testing.T) {
	sink := &memSink{}
	tr := NewTrailWithOptions(testLogger(), TrailOptions{BatchSize: 2, Linger: time.Hour}, sink)
	ctx, cancel := ctxTimeout(10 * time.Second)
	defer cancel()
	if err := tr.Flush(ctx); err != nil {
		t.Fatalf("Flush of an empty trail: %v", err)
	}
	for round := range 3 {
		for i := range 5 {
			tr.Record(rec(round*5 + i))
		}
		if round == 1 {
			tr.FlushForQuery(ctx) // the same, bounded, for a query
		} else if err := tr.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		got, batches, _ := sink.snapshot()
		if len(got) != (round+1)*5 {
			t.Fatalf("round %d: after Flush the sink has %d records (batches %v), want %d", round, len(got), batches, (round+1)*5)
		}
		for i, r := range got {
			if r.RequestID != rec(i).RequestID {
				t.Fatalf("record %d is %s: order broken", i, r.RequestID)
			}
		}
	}
	if err := tr.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tr.Flush(ctx); err != nil {
		t.Fatalf("Flush of a closed trail: %v", err)
	}
	var none *Trail
	none.FlushForQuery(ctx) // no trail: nothing to write, no panic
}

// lineSink is a LineSink keeping the lines it was given (copies) and the
// address of each line's first byte, to tell one encoding from two.
type lineSink struct {
	memSink
	lines [][]byte
	addrs []*byte
}

func (s *lineSink) WriteLines(ctx context.Context, recs []Record, lines [][]byte) error {
	s.mu.Lock()
	for _, l := range lines {
		if len(l) == 0 {
			s.mu.Unlock()
			return errors.New("lineSink: an empty line")
		}
		s.lines = append(s.lines, bytes.Clone(l))
		s.addrs = append(s.addrs, &l[0])
	}
	s.mu.Unlock()
	return s.Write(ctx, recs)
}

// TestTrailEncodesOnceForLineSinks: the trail encodes a batch once and every
// LineSink gets those bytes, each record's Encode; a plain Sink beside them
// still gets the records.
func TestTrailEncodesOnceForLineSinks(t *testing.T) {
	a, b, plain := &lineSink{}, &lineSink{}, &memSink{}
	tr := NewTrailWithOptions(testLogger(), TrailOptions{BatchSize: 16}, a, plain, b)
	const n = 40
	for i := range n {
		tr.Record(rec(i))
	}
	if err := tr.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, _, _ := plain.snapshot()
	if len(got) != n || len(a.lines) != n || len(b.lines) != n {
		t.Fatalf("plain sink got %d records, line sinks %d and %d lines, want %d each", len(got), len(a.lines), len(b.lines), n)
	}
	for i := range n {
		want, err := Encode(&got[i])
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a.lines[i], want) || !bytes.Equal(b.lines[i], want) {
			t.Fatalf("record %d: line sinks got %s and %s, want %s", i, a.lines[i], b.lines[i], want)
		}
		if a.addrs[i] != b.addrs[i] {
			t.Fatalf("record %d was encoded once per line sink, not once for both", i)
		}
	}
}

// TestLineOf: a batch's line when there is one, else the record encoded
// there and then.
func TestLineOf(t *testing.T) {
	recs := []Record{rec(1), rec(2)}
	lines, err := EncodeLines(recs, nil)
	if err != nil || len(lines) != 2 {
		t.Fatalf("EncodeLines: %d lines, %v", len(lines), err)
	}
	for _, tc := range []struct {
		name  string
		lines [][]byte
	}{{"encoded lines", lines}, {"none", nil}, {"a nil line", [][]byte{lines[0], nil}}, {"too few lines", lines[:1]}} {
		for i := range recs {
			got, err := LineOf(recs, tc.lines, i)
			want, _ := Encode(&recs[i])
			if err != nil || !bytes.Equal(got, want) {
				t.Errorf("%s: LineOf(%d) = %s, %v; want %s", tc.name, i, got, err, want)
			}
		}
	}
}
