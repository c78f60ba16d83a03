package audit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Sink is a destination of audit records. The trail calls Write from a
// single goroutine, in record order; recs is only valid during the call (a
// sink must copy what it keeps). Close is called once, after the last Write.
type Sink interface {
	Write(ctx context.Context, recs []Record) error
	Close() error
}

// LineSink is a Sink that stores each record as its line (Encode): the
// trail encodes a batch once for all such sinks and calls WriteLines
// instead of Write. lines[i] is recs[i]'s line, or nil when it could not be
// encoded (the sink reports that record as Write would); lines, like recs,
// is only valid during the call.
type LineSink interface {
	Sink
	WriteLines(ctx context.Context, recs []Record, lines [][]byte) error
}

// LineOf is recs[i]'s line: lines[i] when lines holds the batch's lines
// (EncodeLines), else Encode's. A record that could not be encoded is an
// error naming it.
func LineOf(recs []Record, lines [][]byte, i int) ([]byte, error) {
	if i < len(lines) {
		if l := lines[i]; l != nil {
			return l, nil
		}
	}
	line, err := Encode(&recs[i])
	if err != nil {
		return nil, fmt.Errorf("encode record %q: %w", recs[i].RequestID, err)
	}
	return line, nil
}

// ErrLinesMismatch: a LineSink was given lines that cannot be its
// records' (another count); it writes none of them.
var ErrLinesMismatch = errors.New("audit: lines do not match the records")

// CheckLines is what a LineSink checks before it writes: lines is nil
// (none encoded) or one per record.
func CheckLines(recs []Record, lines [][]byte) error {
	if lines != nil && len(lines) != len(recs) {
		return fmt.Errorf("%w: %d lines for %d records", ErrLinesMismatch, len(lines), len(recs))
	}
	return nil
}

// EncodeLines is Encode for each of recs into lines (grown to len(recs)
// and returned): nil where a record could not be encoded, with the errors
// joined.
func EncodeLines(recs []Record, lines [][]byte) ([][]byte, error) {
	lines = slices.Grow(lines[:0], len(recs))[:len(recs)]
	var errs []error
	for i := range recs {
		line, err := LineOf(recs, nil, i)
		if err != nil {
			errs = append(errs, fmt.Errorf("audit: %w", err))
		}
		lines[i] = line
	}
	return lines, errors.Join(errs...)
}

// TrailOptions tune a Trail; zero fields take the defaults.
type TrailOptions struct {
	// QueueSize bounds the records waiting for the sinks (default 8192).
	QueueSize int
	// BatchSize bounds the records handed to one Sink.Write (default 512).
	// A full batch is written at once.
	BatchSize int
	// Linger is how long the writer waits, after a record arrives, for
	// more to write with it (default 20ms; negative: none, each record is
	// written as soon as nothing else is queued). Writing each record
	// alone costs every call a wake-up of the writer, a file write and a
	// store commit; lingering shares them among the calls of a few
	// milliseconds. While it lingers the writer sleeps: records wait in
	// the queue, and only a full batch, Flush or Close wakes it early.
	// Close writes what is queued without waiting.
	Linger time.Duration
	// EnqueueTimeout is the longest Record waits for room in a full queue
	// before the record is counted as dropped (default 5ms).
	EnqueueTimeout time.Duration
	// SinkTimeout bounds one Sink.Write through its context (default 30s).
	SinkTimeout time.Duration
}

// Defaults of TrailOptions.
const (
	DefaultQueueSize      = 8192
	DefaultBatchSize      = 512
	DefaultLinger         = 20 * time.Millisecond
	DefaultEnqueueTimeout = 5 * time.Millisecond
	DefaultSinkTimeout    = 30 * time.Second
)

func (o TrailOptions) withDefaults() TrailOptions {
	if o.QueueSize <= 0 {
		o.QueueSize = DefaultQueueSize
	}
	if o.BatchSize <= 0 {
		o.BatchSize = DefaultBatchSize
	}
	if o.Linger == 0 {
		o.Linger = DefaultLinger
	}
	if o.EnqueueTimeout <= 0 {
		o.EnqueueTimeout = DefaultEnqueueTimeout
	}
	if o.SinkTimeout <= 0 {
		o.SinkTimeout = DefaultSinkTimeout
	}
	return o
}

// Trail fans audit records out to its sinks asynchronously and to live
// subscribers synchronously-but-never-blocking. See the package doc.
type Trail struct {
	log   *slog.Logger
	opts  TrailOptions
	sinks []Sink

	// mu guards closed and the sending side of queue: Record holds it for
	// reading while it sends, Close takes it for writing before closing the
	// queue, so no send can race the close.
	mu     sync.RWMutex
	closed bool
	queue  chan Record

	// wctx is cancelled when Close's context expires: in-flight sink writes
	// are abandoned and whatever is still queued is counted as dropped.
	wctx    context.Context
	wcancel context.CancelFunc
	done    chan struct{}      // closed when the writer has finished and closed the sinks
	flushes chan chan struct{} // Flush's requests to the writer, each closed when done
	// kick ends the writer's linger early: a full batch is queued, or the
	// queue is closed. While it lingers the writer does not receive from
	// the queue, so a call's Record does not wake it.
	kick chan struct{}

	closeOnce sync.Once
	closeErr  error // set by the writer before done is closed

	subMu      sync.RWMutex
	subs       map[*Subscription]struct{}
	subsClosed bool

	dropped     atomic.Uint64 // records that never reached the sinks
	written     atomic.Uint64 // records handed to every sink (successfully or not)
	sinkFailed  atomic.Uint64 // records a sink reported an error for (per sink)
	subDropped  atomic.Uint64 // records lost by slow subscribers (all subscribers)
	lastDropLog atomic.Int64  // unix nanos of the last drop warning
	lastErrLog  atomic.Int64  // unix nanos of the last sink error log
}

// NewTrail starts a trail with the default options writing to sinks.
func NewTrail(logger *slog.Logger, sinks ...Sink) *Trail {
	return NewTrailWithOptions(logger, TrailOptions{}, sinks...)
}

// NewTrailWithOptions starts a trail with the given options.
func NewTrailWithOptions(logger *slog.Logger, opts TrailOptions, sinks ...Sink) *Trail {
	if logger == nil {
		logger = slog.Default()
	}
	opts = opts.withDefaults()
	var ss []Sink
	for _, s := range sinks {
		if s != nil {
			ss = append(ss, s)
		}
	}
	wctx, cancel := context.WithCancel(context.Background())
	t := &Trail{
		log:     logger.With("component", "audit"),
		opts:    opts,
		sinks:   ss,
		queue:   make(chan Record, opts.QueueSize),
		wctx:    wctx,
		wcancel: cancel,
		done:    make(chan struct{}),
		flushes: make(chan chan struct{}),
		kick:    make(chan struct{}, 1),
		subs:    make(map[*Subscription]struct{}),
	}
	go t.run()
	return t
}

// Record hands r to the trail. It publishes r to the live subscribers
// (never waiting for them), then queues it for the sinks; when the queue is
// full it waits at most TrailOptions.EnqueueTimeout for room, then counts r
// as dropped and logs (rate limited). A zero r.Time is set to now (UTC).
// Records after Close are counted as dropped.
func (t *Trail) Record(r Record) {
	if r.Time.IsZero() {
		r.Time = time.Now().UTC()
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.closed {
		t.drop(1, "trail closed")
		return
	}
	t.publish(&r)
	select {
	case t.queue <- r:
		t.kickIfFull()
		return
	default:
	}
	timer := time.NewTimer(t.opts.EnqueueTimeout)
	defer timer.Stop()
	select {
	case t.queue <- r:
		t.kickIfFull()
	case <-timer.C:
		t.drop(1, "queue full")
	}
}

// kickIfFull ends the writer's linger once a full batch waits in the queue.
func (t *Trail) kickIfFull() {
	if len(t.queue) >= t.opts.BatchSize {
		t.kickWriter()
	}
}

func (t *Trail) kickWriter() {
	select {
	case t.kick <- struct{}{}:
	default:
	}
}

// Dropped is the number of records that did not reach the sinks: the queue
// stayed full for longer than the enqueue bound, the trail was closed, or
// Close's context expired before they were written.
func (t *Trail) Dropped() uint64 { return t.dropped.Load() }

// TrailStats is a snapshot of the trail's counters.
type TrailStats struct {
	Queued            int    // records waiting for the sinks now
	Written           uint64 // records handed to the sinks
	Dropped           uint64 // see Trail.Dropped
	SinkFailed        uint64 // records a sink's Write failed for (counted per sink)
	Subscribers       int    // live subscribers now
	SubscriberDropped uint64 // records lost by slow subscribers (all of them)
}

// Stats returns the trail's counters (for metrics).
func (t *Trail) Stats() TrailStats {
	t.subMu.RLock()
	n := len(t.subs)
	t.subMu.RUnlock()
	return TrailStats{
		Queued:            len(t.queue),
		Written:           t.written.Load(),
		Dropped:           t.dropped.Load(),
		SinkFailed:        t.sinkFailed.Load(),
		Subscribers:       n,
		SubscriberDropped: t.subDropped.Load(),
	}
}

func (t *Trail) drop(n int, why string) {
	total := t.dropped.Add(uint64(n))
	if rateOK(&t.lastDropLog, time.Second) {
		t.log.Warn("audit records dropped", "reason", why, "count", n, "dropped_total", total)
	}
}

// rateOK reports whether at least every has passed since the last time it
// returned true for last.
func rateOK(last *atomic.Int64, every time.Duration) bool {
	now := time.Now().UnixNano()
	prev := last.Load()
	if prev != 0 && now-prev < int64(every) {
		return false
	}
	return last.CompareAndSwap(prev, now)
}

// run is the single writer: from a record's arrival it gathers what comes
// within Linger (up to BatchSize, what is queued first) and writes it to
// every sink; a Flush has what is queued written at once. It runs until the
// queue is closed and empty; then it closes the sinks.
func (t *Trail) run() {
	batch := make([]Record, 0, t.opts.BatchSize)
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	var acks []chan struct{} // Flush calls waiting for this batch
	var lines [][]byte       // the batch's encoding, for the LineSinks
	// add takes what a receive from the queue gave: a record into the
	// batch, or the end of a closed and empty queue, which clears open.
	open := true
	add := func(r Record, ok bool) {
		if !ok {
			open = false
			return
		}
		batch = append(batch, r)
	}
	// take moves what is queued into the batch, without waiting, up to
	// BatchSize.
	take := func() {
		for open && len(batch) < t.opts.BatchSize {
			select {
			case r, ok := <-t.queue:
				add(r, ok)
			default:
				return
			}
		}
	}
	for open {
		batch = batch[:0]
		select {
		case r, ok := <-t.queue:
			add(r, ok)
			// The linger: the records of the next few milliseconds wait in
			// the queue, and the writer sleeps until the linger ends, a
			// full batch is queued (kick), the queue is closed (kick) or a
			// Flush asks. Receiving each record as it came would wake the
			// writer once per call.
			if open && t.opts.Linger > 0 {
				timer.Reset(t.opts.Linger)
				take()
			linger:
				for open && len(batch) < t.opts.BatchSize {
					select {
					case <-timer.C:
						break linger
					case <-t.kick:
						take()
					case ack := <-t.flushes:
						acks = append(acks, ack)
						break linger
					}
				}
				timer.Stop()
			}
			take()
		case ack := <-t.flushes:
			acks = append(acks, ack)
		}
		// A Flush is answered once everything queued when it came is
		// written, batch after batch.
		for {
			if len(acks) > 0 {
				take()
			}
			if len(batch) > 0 {
				t.flush(batch, &lines)
				clear(batch) // do not pin the records' memory until the next batch
				batch = batch[:0]
			}
			if len(acks) == 0 || !open || len(t.queue) == 0 {
				break
			}
		}
		for _, a := range acks {
			close(a)
		}
		acks = acks[:0]
	}
	var errs []error
	for _, s := range t.sinks {
		if err := s.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	t.closeErr = errors.Join(errs...)
	close(t.done)
}

// queryFlushWait bounds how long FlushForQuery waits for the writer.
const queryFlushWait = 2 * time.Second

// FlushForQuery is Flush before a query of a sink (the index): the query
// then sees every decision made before it. It waits at most queryFlushWait
// and ctx; a writer that takes longer is not waited for, and the query
// answers with what is written. A nil trail has nothing to write.
func (t *Trail) FlushForQuery(ctx context.Context) {
	if t == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, queryFlushWait)
	defer cancel()
	_ = t.Flush(ctx)
}

// Flush returns once every record recorded before it was called has been
// written to the sinks (a sink that failed has counted them as failed), so
// that a query of the index sees them; or when ctx ends first (its error),
// or the trail is closed (Close writes them).
func (t *Trail) Flush(ctx context.Context) error {
	ack := make(chan struct{})
	select {
	case t.flushes <- ack:
	case <-t.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("audit: flush: %w", ctx.Err())
	}
	select {
	case <-ack:
		return nil
	case <-t.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("audit: flush: %w", ctx.Err())
	}
}

// flush writes batch to every sink; buf is the writer's to hold the
// batch's lines between batches.
func (t *Trail) flush(batch []Record, buf *[][]byte) {
	if t.wctx.Err() != nil {
		t.drop(len(batch), "shutdown deadline passed")
		return
	}
	// Every LineSink gets the lines of one encoding of the batch (nil
	// until the first needs them).
	var lines [][]byte
	for _, s := range t.sinks {
		ctx, cancel := context.WithTimeout(t.wctx, t.opts.SinkTimeout)
		var err error
		if ls, ok := s.(LineSink); ok {
			if lines == nil {
				// An error here is a record the sinks report themselves.
				*buf, _ = EncodeLines(batch, *buf)
				lines = *buf
			}
			err = ls.WriteLines(ctx, batch, lines)
		} else {
			err = s.Write(ctx, batch)
		}
		cancel()
		if err != nil {
			t.sinkFailed.Add(uint64(len(batch)))
			if rateOK(&t.lastErrLog, time.Second) {
				t.log.Error("audit sink write failed", "sink", fmt.Sprintf("%T", s), "records", len(batch), "err", err)
			}
		}
	}
	clear(lines) // do not pin the lines' memory until the next batch
	t.written.Add(uint64(len(batch)))
}

// Close stops accepting records, waits for everything queued to be written,
// then closes the sinks and ends every subscription. If ctx expires first,
// in-flight sink writes are cancelled, records still queued are counted as
// dropped, and Close returns ctx's error (the sinks are then closed in the
// background as soon as the writer gets free). Close is idempotent.
func (t *Trail) Close(ctx context.Context) error {
	t.closeOnce.Do(func() {
		t.mu.Lock()
		t.closed = true
		close(t.queue)
		t.mu.Unlock()
		t.kickWriter() // a lingering writer writes what is queued now

		t.subMu.Lock()
		t.subsClosed = true
		for s := range t.subs {
			delete(t.subs, s)
			close(s.ch)
		}
		t.subMu.Unlock()
	})
	select {
	case <-t.done:
		return t.closeErr
	case <-ctx.Done():
		t.wcancel()
		return fmt.Errorf("audit: close: records still queued (%d) counted as dropped: %w", len(t.queue), ctx.Err())
	}
}

// --- live subscribers --------------------------------------------------------

// Subscription is one live view of the trail (e.g. a dashboard SSE stream).
// C receives every record recorded after Subscribe, in order, unless the
// subscriber falls behind by more than its buffer: then records are skipped
// and counted in Dropped. C is closed by Cancel or when the trail closes.
type Subscription struct {
	C       <-chan Record
	ch      chan Record
	t       *Trail
	dropped atomic.Uint64
	once    sync.Once
}

// Dropped is how many records this subscriber lost by being slow.
func (s *Subscription) Dropped() uint64 { return s.dropped.Load() }

// Cancel ends the subscription and closes C. It is idempotent.
func (s *Subscription) Cancel() {
	s.once.Do(func() {
		s.t.subMu.Lock()
		defer s.t.subMu.Unlock()
		if _, ok := s.t.subs[s]; ok {
			delete(s.t.subs, s)
			close(s.ch)
		}
	})
}

// NewSubscription registers a live subscriber with room for buffer records
// (at least 1). On a closed trail the subscription's C is already closed.
func (t *Trail) NewSubscription(buffer int) *Subscription {
	if buffer < 1 {
		buffer = 1
	}
	ch := make(chan Record, buffer)
	s := &Subscription{C: ch, ch: ch, t: t}
	t.subMu.Lock()
	defer t.subMu.Unlock()
	if t.subsClosed {
		close(ch)
		return s
	}
	t.subs[s] = struct{}{}
	return s
}

// Subscribe is NewSubscription returning the channel and the cancel func.
// Slow subscribers lose records (see Subscription); they never block the
// trail.
func (t *Trail) Subscribe(buffer int) (<-chan Record, func()) {
	s := t.NewSubscription(buffer)
	return s.C, s.Cancel
}

func (t *Trail) publish(r *Record) {
	t.subMu.RLock()
	defer t.subMu.RUnlock()
	for s := range t.subs {
		select {
		case s.ch <- *r:
		default:
			s.dropped.Add(1)
			t.subDropped.Add(1)
		}
	}
}
