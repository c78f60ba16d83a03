package gateway

import (
	"io"
	"time"
)

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
