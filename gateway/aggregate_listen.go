package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/pbac-gateway/pbac/audit"
	"github.com/pbac-gateway/pbac/jsonrpc"
)

// subscriptions/listen on the aggregated server: the client names
// resources as the aggregated lists do ("<backend>+<uri>"), and the
// gateway fans the subscription out. For each backend with a resource the
// caller may see (pbac/list, as on /mcp/<backend>), it opens a backend
// session of the listen's own, subscribes there (resources/subscribe, the
// revision it speaks to backends) and reads that session's event stream.
// Each notifications/resources/updated is vetted as it comes (the policy
// active then) and reaches the client under the aggregated URI, marked
// with the listen's subscription id; nothing else from the backends does.
// The aggregated server announces no list changes, so the list_changed
// opt-ins are acknowledged as not honoured.
//
// The stream ends when every backend's has, at Shutdown, when the token
// expires, or when the client goes (noticed at the next write); the
// listen's backend sessions are then ended. An agent holds at most
// maxListensPerAgent such streams at once.

// Bounds on the aggregated listens open at once.
const (
	maxListensPerAgent = 8
	maxListens         = 512
)

// tooManyListens answers a listen over the agent's bound, on /mcp and on
// /mcp/<backend> alike: it sets Retry-After and returns the reason.
func tooManyListens(c *fiber.Ctx) string {
	c.Set(fiber.HeaderRetryAfter, "5")
	return fmt.Sprintf("this agent has %d subscriptions/listen streams open here already", maxListensPerAgent)
}

// aggregateListen serves a subscriptions/listen on /mcp.
func (g *Gateway) aggregateListen(c *fiber.Ctx, cl *caller, msg *jsonrpc.Message, rec *audit.Record, start time.Time) error {
	refuse := func(status, code int, text string) error {
		rec.Decision, rec.Status, rec.Reasons = "deny", status, append(rec.Reasons, "refused: "+text)
		g.finish(rec, start)
		return g.reply(c, status, jsonrpc.ErrorBody(msg.ID, code, text, nil))
	}
	o, err := readOptIns(msg)
	if err != nil {
		return refuse(fiber.StatusBadRequest, jsonrpc.CodeInvalidParams, err.Error())
	}
	// The resources asked for, by backend; the local URI and the name
	// policy decides.
	wanted := map[string][]string{}
	for _, u := range o.ResourceSubscriptions {
		name, local, ok := strings.Cut(u, "+")
		if _, known := g.backends[name]; !ok || !known || local == "" {
			rec.Reasons = append(rec.Reasons, "resource "+u+" names no backend (resources are named <backend>+<uri>)")
			continue
		}
		wanted[name] = append(wanted[name], local)
	}
	var reasons []string
	for _, name := range slices.Sorted(maps.Keys(wanted)) {
		b := g.backends[name]
		vetted, why, err := g.vetOptIns(c.UserContext(), b, cl, listenOptIns{ResourceSubscriptions: wanted[name]})
		if err != nil {
			rec.Decision, rec.Status, rec.Reasons = "error", fiber.StatusForbidden, []string{err.Error()}
			g.log.Error("policy could not decide", "request_id", rec.RequestID, "err", err)
			g.finish(rec, start)
			return g.reply(c, fiber.StatusForbidden, jsonrpc.ErrorBody(msg.ID, jsonrpc.CodeDenied, "denied: the policy could not decide", nil))
		}
		reasons = append(reasons, name+": "+strings.Join(why, "; "))
		wanted[name] = vetted.ResourceSubscriptions
	}
	rec.Reasons = append(rec.Reasons, reasons...)
	owner := cl.ownerKey()
	if !g.listens.enter(owner) {
		return refuse(fiber.StatusTooManyRequests, jsonrpc.CodeInvalidRequest, tooManyListens(c))
	}
	ctx, cancel := g.callerStreamContext(c, cl)
	own := &aggSession{backends: map[string]string{}, owner: owner}
	done := func() {
		cancel()
		g.endAtBackends(&session{agg: own})
		g.listens.leave(owner)
	}
	var (
		acked   []string
		streams []*backendStream
	)
	for _, name := range slices.Sorted(maps.Keys(wanted)) {
		b := g.backends[name]
		var subscribed []string
		for _, u := range wanted[name] {
			sctx, scancel := context.WithTimeout(ctx, b.Timeout)
			_, err := g.backendCall(sctx, b, own, "resources/subscribe", map[string]any{"uri": u})
			scancel()
			if err != nil {
				rec.Reasons = append(rec.Reasons, name+": resources/subscribe "+u+": "+err.Error())
				continue
			}
			subscribed = append(subscribed, u)
		}
		if len(subscribed) == 0 {
			continue
		}
		st, err := g.openBackendStream(ctx, b, own)
		if err != nil {
			rec.Reasons = append(rec.Reasons, name+": no event stream: "+err.Error())
			continue
		}
		streams = append(streams, st)
		for _, u := range subscribed {
			acked = append(acked, name+"+"+u)
		}
	}
	rec.Reasons = append(rec.Reasons, fmt.Sprintf("%d of %d resource subscriptions open", len(acked), len(o.ResourceSubscriptions)))
	rec.Status = fiber.StatusOK
	g.finish(rec, start)

	meta := map[string]any{"io.modelcontextprotocol/subscriptionId": msg.ID}
	ack, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged",
		"params": map[string]any{"notifications": listenOptIns{ResourceSubscriptions: acked}, "_meta": meta}})
	final := rpcResult(msg.ID, map[string]any{"resultType": "complete", "_meta": meta})
	c.Set(fiber.HeaderContentType, "text/event-stream")
	c.Set(fiber.HeaderCacheControl, "no-store")
	c.Status(fiber.StatusOK)
	g.sendStream(c, func(w *bufio.Writer) {
		defer done()
		if writeEvent(w, ack) != nil {
			return
		}
		msgs := make(chan []byte)
		var wg sync.WaitGroup
		for _, st := range streams {
			wg.Go(func() {
				defer st.body.Close()
				g.readBackendStream(ctx, st, cl, owner, msg.ID, msgs)
			})
		}
		ended := make(chan struct{})
		go func() { wg.Wait(); close(ended) }()
		defer func() { cancel(); <-ended }()
		ping := time.NewTicker(streamKeepAlive)
		defer ping.Stop()
		for {
			select {
			case m := <-msgs:
				if writeEvent(w, m) != nil {
					return
				}
			case <-ping.C:
				// A client that has gone is noticed only at a write.
				if writeKeepAlive(w) != nil {
					return
				}
			case <-ended:
				// Every backend's stream has ended: so does the listen.
				_ = writeEvent(w, final)
				return
			case <-ctx.Done():
				return
			}
		}
	})
	return nil
}

// writeEvent writes one SSE event of data and flushes it.
func writeEvent(w *bufio.Writer, data []byte) error {
	return writeSSE(w, sseEvent{hasData: true}, data)
}

// backendStream is the event stream of an aggregated listen's session at
// one backend.
type backendStream struct {
	b    *Backend
	body io.ReadCloser
}

// openBackendStream opens the GET event stream of the listen's session at
// b (which resources/subscribe opened).
func (g *Gateway) openBackendStream(ctx context.Context, b *Backend, own *aggSession) (*backendStream, error) {
	own.mu.Lock()
	sid := own.backends[b.Name]
	own.mu.Unlock()
	// The backend has its timeout to answer; the stream then lasts as long
	// as the listen's ctx.
	sctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(sctx, http.MethodGet, b.URL, nil)
	if err != nil {
		cancel()
		return nil, err
	}
	setPostHeaders(req.Header.Set, b, own.owner, sid)
	req.Header.Del("Content-Type")
	req.Header.Set("Accept", "text/event-stream")
	headers := time.AfterFunc(b.Timeout, cancel)
	resp, err := g.client.Do(req)
	if !headers.Stop() && err == nil {
		resp.Body.Close()
		err = context.DeadlineExceeded
	}
	if err != nil {
		cancel()
		return nil, err
	}
	if resp.StatusCode != http.StatusOK || !isEventStream(resp.Header.Get("Content-Type")) {
		resp.Body.Close()
		cancel()
		return nil, fmt.Errorf("HTTP %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	resp.Body = &closeFunc{ReadCloser: resp.Body, after: cancel}
	return &backendStream{b: b, body: resp.Body}, nil
}

// readBackendStream sends to out each resource update of st the caller may
// see now, rewritten for the aggregated server, until the stream or ctx
// ends.
func (g *Gateway) readBackendStream(ctx context.Context, st *backendStream, cl *caller, owner string, listenID json.RawMessage, out chan<- []byte) {
	events := newSSEReader(st.body, maxFilteredResponse)
	for {
		ev, err := events.next()
		if err != nil {
			return
		}
		if !ev.hasData {
			continue
		}
		m, err := jsonrpc.Parse(ev.data, g.cfg.MaxJSONDepth)
		if err != nil || m.Method != "notifications/resources/updated" || !g.vetNotification(ctx, st.b, cl, owner, m) {
			g.metrics.notification(st.b.Name, "withheld")
			continue
		}
		g.metrics.notification(st.b.Name, "passed")
		b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "method": m.Method, "params": map[string]any{
			"uri": st.b.Name + "+" + m.URI, "_meta": map[string]any{"io.modelcontextprotocol/subscriptionId": listenID}}})
		select {
		case out <- b:
		case <-ctx.Done():
			return
		}
	}
}
