package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/pbac-gateway/pbac/audit"
	"github.com/pbac-gateway/pbac/jsonrpc"
)

// subscriptions/listen (2026-07-28): one long-lived request on which a
// server pushes the change notifications the client opted in to. Through
// the gateway:
//   - the method is decided (pbac/method);
//   - of the opt-ins, the gateway passes on those it can vet: the three
//     list_changed flags, each resourceSubscriptions URI pbac/list lets
//     the caller see (as resources/subscribe would be decided), and each
//     taskIds id the caller owns (tasks.go); anything else is dropped, so
//     the backend's acknowledgement names exactly what will flow;
//   - every message on the stream is vetted again as it comes (keep),
//     with the policy active then: a resource's update reaches the
//     caller only while it may still see that resource, a task's status
//     only its owner;
//   - the stream ends with the backend's, at Shutdown, or when the
//     caller's token expires.
//
// The standalone GET stream of a session (earlier revisions'
// resources/subscribe) is vetted by the same rules.

// Bounds of one subscriptions/listen request.
const (
	maxListenResources = 100
	maxListenTasks     = 100
)

// listenOptIns are the opt-ins of a subscriptions/listen the gateway
// passes on; any other member of params.notifications is dropped.
type listenOptIns struct {
	ToolsListChanged      bool     `json:"toolsListChanged,omitempty"`
	PromptsListChanged    bool     `json:"promptsListChanged,omitempty"`
	ResourcesListChanged  bool     `json:"resourcesListChanged,omitempty"`
	ResourceSubscriptions []string `json:"resourceSubscriptions,omitempty"`
	TaskIDs               []string `json:"taskIds,omitempty"`
}

// readOptIns reads params.notifications of a subscriptions/listen.
func readOptIns(msg *jsonrpc.Message) (listenOptIns, error) {
	var o listenOptIns
	raw, ok := msg.Params["notifications"]
	if !ok || len(raw) == 0 || raw[0] != '{' {
		return o, errors.New("params.notifications must be an object")
	}
	members, err := jsonrpc.Members(raw)
	if err != nil {
		return o, fmt.Errorf("params.notifications: %w", err)
	}
	for _, mb := range members {
		var err error
		switch mb.Key {
		case "toolsListChanged":
			err = json.Unmarshal(mb.Raw, &o.ToolsListChanged)
		case "promptsListChanged":
			err = json.Unmarshal(mb.Raw, &o.PromptsListChanged)
		case "resourcesListChanged":
			err = json.Unmarshal(mb.Raw, &o.ResourcesListChanged)
		case "resourceSubscriptions":
			err = json.Unmarshal(mb.Raw, &o.ResourceSubscriptions)
		case "taskIds":
			err = json.Unmarshal(mb.Raw, &o.TaskIDs)
		}
		if err != nil {
			return o, fmt.Errorf("params.notifications.%s has the wrong type", mb.Key)
		}
	}
	if len(o.ResourceSubscriptions) > maxListenResources {
		return o, fmt.Errorf("params.notifications.resourceSubscriptions names more than %d resources", maxListenResources)
	}
	if len(o.TaskIDs) > maxListenTasks {
		return o, fmt.Errorf("params.notifications.taskIds names more than %d tasks", maxListenTasks)
	}
	for _, u := range o.ResourceSubscriptions {
		if u == "" || len(u) > maxURIBytes {
			return o, fmt.Errorf("params.notifications.resourceSubscriptions: a URI must be 1 to %d bytes", maxURIBytes)
		}
	}
	return o, nil
}

// maxURIBytes is the longest resource URI the gateway decides on (as
// policy's max_uri_bytes).
const maxURIBytes = 2048

// withOptIns is body with params.notifications replaced by o; every other
// byte stays as the client sent it.
func withOptIns(body []byte, msg *jsonrpc.Message, o listenOptIns) ([]byte, error) {
	nb, err := json.Marshal(o)
	if err != nil {
		return nil, err
	}
	return replaceIn(body, msg.Params["notifications"], nb)
}

// vetOptIns keeps the opt-ins the caller may have: the resources pbac/list
// lets it see, the tasks it owns. The reasons say what was dropped.
func (g *Gateway) vetOptIns(ctx context.Context, backend *Backend, cl *caller, o listenOptIns) (listenOptIns, []string, error) {
	var reasons []string
	if n := len(o.ResourceSubscriptions); n > 0 {
		names := make([]string, n)
		for i, u := range o.ResourceSubscriptions {
			names[i] = backend.Name + ".resource:" + u
		}
		allowed, _, err := g.allowedTools(ctx, backend, cl, "resources/subscribe", names, nil)
		if err != nil {
			return o, nil, err
		}
		var kept []string
		for i, u := range o.ResourceSubscriptions {
			if allowed[names[i]] {
				kept = append(kept, u)
			} else if len(reasons) < 10 {
				reasons = append(reasons, "resource "+u+" is not visible to this caller")
			}
		}
		reasons = append(reasons, fmt.Sprintf("%d of %d resource subscriptions passed", len(kept), n))
		o.ResourceSubscriptions = kept
	}
	if n := len(o.TaskIDs); n > 0 {
		var kept []string
		now, owner := time.Now(), cl.ownerKey()
		for _, id := range o.TaskIDs {
			if g.tasks.owns(owner, taskKey{backend.Name, id}, now) {
				kept = append(kept, id)
			}
		}
		reasons = append(reasons, fmt.Sprintf("%d of %d task subscriptions passed (a task is its creator's)", len(kept), n))
		o.TaskIDs = kept
	}
	return o, reasons, nil
}

// listen forwards an allowed subscriptions/listen with the opt-ins the
// caller may have and relays the stream, vetting each message.
func (g *Gateway) listen(c *fiber.Ctx, backend *Backend, cl *caller, msg *jsonrpc.Message, sess *session, rec *audit.Record, start time.Time) error {
	refuse := func(err error) error {
		rec.Decision, rec.Status, rec.Reasons = "deny", fiber.StatusBadRequest, append(rec.Reasons, "refused: "+err.Error())
		g.finish(rec, start)
		return g.reply(c, fiber.StatusBadRequest, jsonrpc.ErrorBody(msg.ID, jsonrpc.CodeInvalidParams, err.Error(), nil))
	}
	o, err := readOptIns(msg)
	if err != nil {
		return refuse(err)
	}
	o, reasons, err := g.vetOptIns(c.UserContext(), backend, cl, o)
	if err != nil {
		rec.Decision, rec.Status, rec.Reasons = "error", fiber.StatusForbidden, []string{err.Error()}
		g.log.Error("policy could not decide", "request_id", rec.RequestID, "err", err)
		g.finish(rec, start)
		return g.reply(c, fiber.StatusForbidden, jsonrpc.ErrorBody(msg.ID, jsonrpc.CodeDenied, "denied: the policy could not decide", nil))
	}
	rec.Reasons = append(rec.Reasons, reasons...)
	body, err := withOptIns(msg.Raw, msg, o)
	if err != nil {
		return refuse(err)
	}
	owner := cl.ownerKey()
	if !g.listens.enter(owner) {
		rec.Decision, rec.Status, rec.Reasons = "deny", fiber.StatusTooManyRequests, append(rec.Reasons, "refused: too many subscriptions/listen streams open")
		g.finish(rec, start)
		return g.reply(c, fiber.StatusTooManyRequests, jsonrpc.ErrorBody(msg.ID, jsonrpc.CodeInvalidRequest, tooManyListens(c), nil))
	}
	ctx, cancel := g.callerStreamContext(c, cl)
	left := false
	done := func() {
		cancel()
		if !left {
			left = true
			g.listens.leave(owner)
		}
	}
	resp, err := g.streamFromBackend(ctx, cancel, c, backend, cl, msg, body, sess, rec, start)
	if resp == nil {
		done()
		return err
	}
	rec.Status = resp.StatusCode
	copyAnswerHeaders(c, resp.Header.Get)
	g.finish(rec, start)
	c.Status(resp.StatusCode)
	if !isEventStream(resp.Header.Get(fiber.HeaderContentType)) {
		// An answer at once (an error, or nothing to listen for): whole,
		// when it answers this request (answer.go).
		defer done()
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxFilteredResponse+1))
		if err != nil || len(b) > maxFilteredResponse {
			return g.reply(c, fiber.StatusBadGateway, jsonrpc.ErrorBody(msg.ID, jsonrpc.CodeInternalError, "backend "+backend.Name+" answered too much", nil))
		}
		if err := checkJSONAnswer(b, msg.ID, resp.StatusCode); err != nil {
			g.log.Warn("a backend's answer was withheld", "backend", backend.Name, "request_id", rec.RequestID, "err", err)
			return g.reply(c, fiber.StatusBadGateway, jsonrpc.ErrorBody(msg.ID, jsonrpc.CodeInternalError, "the backend's answer could not be checked", nil))
		}
		g.sendAnswer(c, b)
		return nil
	}
	keep := g.notificationVetter(backend, cl, msg.ID)
	g.sendStream(c, func(w *bufio.Writer) {
		defer done()
		if err := relayVetted(ctx, w, resp.Body, keep); err != nil {
			g.log.Info("a subscriptions/listen stream ended", "backend", backend.Name, "request_id", rec.RequestID, "err", err)
		}
	})
	return nil
}

// streamKeepAlive is how often a relayed stream gets a comment of the
// gateway's own when nothing else was written: a client that has gone is
// noticed only at a write.
const streamKeepAlive = 25 * time.Second

// vetted is one event of a relayed stream, or how the stream ended.
type vetted struct {
	ev   sseEvent
	last bool
	err  error
}

// relayVetted copies an event stream to w event by event, each message
// only when keep lets it (and of an event's other lines only comments and
// the event, id and retry fields), with a keep-alive comment when the
// stream is quiet, until the stream ends, ctx is done, the client goes, or
// keep reports the request answered (a clean end). body is closed on
// return, which ends its reader.
func relayVetted(ctx context.Context, w *bufio.Writer, body io.ReadCloser, keep func(ctx context.Context, data []byte) (pass bool, last bool)) error {
	ctx, cancel := context.WithCancel(ctx)
	items := make(chan vetted)
	read := make(chan struct{})
	go func() {
		defer close(read)
		events := newSSEReader(body, maxFilteredResponse)
		for {
			ev, err := events.next()
			it := vetted{err: err}
			if err == nil {
				if ev.hasData {
					var pass bool
					if pass, it.last = keep(ctx, ev.data); !pass {
						continue
					}
				}
				it.ev = ev.plain()
			}
			select {
			case items <- it:
			case <-ctx.Done():
				return
			}
			if err != nil || it.last {
				return
			}
		}
	}()
	defer func() {
		cancel()
		body.Close()
		<-read
	}()
	ping := time.NewTicker(streamKeepAlive)
	defer ping.Stop()
	for {
		select {
		case it := <-items:
			switch {
			case errors.Is(it.err, io.EOF):
				return nil
			case it.err != nil:
				if ctx.Err() != nil {
					return context.Cause(ctx)
				}
				return fmt.Errorf("read the backend's event stream: %w", it.err)
			}
			if err := writeSSE(w, it.ev, it.ev.data); err != nil {
				return err
			}
			if it.last {
				return nil
			}
		case <-ping.C:
			if err := writeKeepAlive(w); err != nil {
				return err
			}
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	}
}

// notificationVetter decides each message a backend pushes to this caller
// on a stream: on the answer to a request (a subscriptions/listen stream,
// or any request's answer: listenID that request's id), the request's own
// response (the last message) passes and a response to any other id does
// not; on the GET stream and a notification's answer (listenID nil) no
// response does — a response belongs on the stream of the request it
// answers (answer.go). Requests of the server (sampling,
// elicitation, roots, ping) pass: the client's answers are decided on
// their way back. Of notifications:
//   - notifications/resources/updated passes while pbac/list lets the
//     caller see the resource it names;
//   - notifications/tasks (notifications/tasks/status in 2025-11-25)
//     passes for a task the caller owns;
//   - the list_changed notifications, the subscription's acknowledgement,
//     progress, log messages, cancellations and a URL elicitation's
//     completion pass: they carry nothing of another's;
//   - any other is withheld, as is a message that does not parse.
func (g *Gateway) notificationVetter(backend *Backend, cl *caller, listenID json.RawMessage) func(ctx context.Context, data []byte) (pass, last bool) {
	owner := cl.ownerKey()
	return func(ctx context.Context, data []byte) (pass, last bool) {
		// A response is placed by its id alone (readEnvelope: a result's
		// own names may repeat); the server's requests and notifications
		// are read strictly, as a client's are.
		method := ""
		switch env, err := readEnvelope(data); {
		case err != nil:
		case !env.method:
			pass = env.answer && listenID != nil && sameID(env.id, listenID)
			last = pass
		default:
			if m, err := jsonrpc.Parse(data, g.cfg.MaxJSONDepth); err == nil {
				method = m.Method
				pass = g.vetNotification(ctx, backend, cl, owner, m)
			}
		}
		if pass {
			g.metrics.notification(backend.Name, "passed")
		} else {
			g.metrics.notification(backend.Name, "withheld")
			g.log.Debug("a backend's message was withheld from its stream", "backend", backend.Name, "method", method)
		}
		return pass, last
	}
}

// vetNotification decides one message of a stream (see notificationVetter).
// A response is never one: readers of a stream place responses themselves.
func (g *Gateway) vetNotification(ctx context.Context, backend *Backend, cl *caller, owner string, m *jsonrpc.Message) bool {
	if m.IsResponse {
		return false
	}
	if m.ID != nil {
		// A request of the server's, when its id is one (a string or a
		// number): a method beside a null or other id is read by some
		// clients as a notification, which this would pass unvetted.
		_, ok := jsonrpc.IDKey(m.ID)
		return ok
	}
	switch m.Method {
	case "notifications/resources/updated":
		if m.URI == "" || len(m.URI) > maxURIBytes {
			return false
		}
		name := backend.Name + ".resource:" + m.URI
		allowed, _, err := g.allowedTools(ctx, backend, cl, "resources/subscribe", []string{name}, nil)
		if err != nil {
			g.log.Error("policy could not decide on a resource update; withheld", "backend", backend.Name, "err", err)
			return false
		}
		return allowed[name]
	case "notifications/tasks", "notifications/tasks/status":
		id, err := taskOf(m)
		return err == nil && g.tasks.owns(owner, taskKey{backend.Name, id}, time.Now())
	case "notifications/tools/list_changed", "notifications/prompts/list_changed", "notifications/resources/list_changed",
		"notifications/subscriptions/acknowledged", "notifications/progress", "notifications/message", "notifications/cancelled",
		"notifications/elicitation/complete":
		return true
	}
	return false
}
