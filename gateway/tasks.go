package gateway

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/pbac-gateway/pbac/audit"
	"github.com/pbac-gateway/pbac/jsonrpc"
)

// The tasks extension (io.modelcontextprotocol/tasks; the 2025-11-25
// revision's experimental tasks alike): a backend may answer a tools/call
// with a task handle, and the client then asks after the task by its id
// (tasks/get, tasks/update, tasks/cancel; tasks/result in 2025-11-25). A
// task id is a bearer of the call's result: whoever holds it reads what the
// tool produced. The gateway therefore records who created each task (the
// agent and person, or for a caller without a token its address) when the
// task handle passes through it, and lets only that owner name the task
// again; policy (pbac/method) then decides the method as for any other.
// An id the gateway did not see created, or another owner's, is answered
// as unknown: the answer tells nobody whether the task exists.
//
// Tasks are recorded in memory, bounded per owner; a gateway restart, or
// another replica, does not know them, and their owners are told "unknown
// task" (a deny, never a pass). The aggregated server speaks an earlier
// revision to backends and creates no tasks.

// taskMethods are the methods that name a task by params.taskId.
var taskMethods = map[string]bool{"tasks/get": true, "tasks/update": true, "tasks/cancel": true, "tasks/result": true}

// Task limits: how many tasks one owner may hold recorded (a new one beyond
// pushes out the owner's oldest), how long a task is remembered at most
// (a backend's ttlMs shortens it, never lengthens it), and the longest
// task id taken.
const (
	DefaultTasksPerAgent = 1000
	maxTaskLife          = 24 * time.Hour
	maxTaskIDBytes       = 512
)

// maxTaskAnswer is the longest JSON answer read whole for a task handle.
const maxTaskAnswer = 64 << 10

// ExtensionTasks is the tasks extension's identifier.
const ExtensionTasks = "io.modelcontextprotocol/tasks"

type taskKey struct{ backend, id string }

type taskRecord struct {
	owner   string // the creator's ownerKey
	tool    string // "<backend>.<tool>" the task runs
	created time.Time
	expires time.Time
}

// tasks are the task ids the gateway saw created, by backend, with their
// owners.
type tasks struct {
	perOwner int

	mu    sync.Mutex
	m     map[taskKey]*taskRecord
	owned map[string]map[taskKey]struct{}
}

func newTasks(perOwner int) *tasks {
	if perOwner <= 0 {
		perOwner = DefaultTasksPerAgent
	}
	return &tasks{perOwner: perOwner, m: map[taskKey]*taskRecord{}, owned: map[string]map[taskKey]struct{}{}}
}

// maxTasks bounds the tasks recorded in all (owners without a token are
// keyed by address, so owners are many): past it a new task is not
// recorded, and its owner is told "unknown task" (a deny).
const maxTasks = 100_000

// add records task k as owner's. Past the owner's quota, its oldest task
// (the first to expire among ties) is forgotten; it reports false when
// the gateway holds maxTasks already.
func (t *tasks) add(k taskKey, r *taskRecord) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, known := t.m[k]; !known && len(t.m) >= maxTasks && len(t.owned[r.owner]) < t.perOwner {
		return false
	}
	if old, ok := t.m[k]; ok {
		// An id seen again is the first owner's: a backend that reuses ids
		// does not hand one owner's task to another.
		if old.owner != r.owner {
			return false
		}
		t.forget(k, old)
	}
	keys := t.owned[r.owner]
	if len(keys) >= t.perOwner {
		var oldest taskKey
		var found bool
		for other := range keys {
			if !found || t.m[other].created.Before(t.m[oldest].created) {
				oldest, found = other, true
			}
		}
		t.forget(oldest, t.m[oldest])
	}
	t.m[k] = r
	if t.owned[r.owner] == nil {
		t.owned[r.owner] = map[taskKey]struct{}{}
	}
	t.owned[r.owner][k] = struct{}{}
	return true
}

func (t *tasks) forget(k taskKey, r *taskRecord) {
	delete(t.m, k)
	if keys := t.owned[r.owner]; keys != nil {
		delete(keys, k)
		if len(keys) == 0 {
			delete(t.owned, r.owner)
		}
	}
}

// lookup is task k's record when it is known and not expired.
func (t *tasks) lookup(k taskKey, now time.Time) (*taskRecord, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	r, ok := t.m[k]
	if !ok {
		return nil, false
	}
	if now.After(r.expires) {
		t.forget(k, r)
		return nil, false
	}
	return r, true
}

// owns tells whether owner created task k (known, not expired).
func (t *tasks) owns(owner string, k taskKey, now time.Time) bool {
	r, ok := t.lookup(k, now)
	return ok && r.owner == owner
}

// expire forgets the tasks past their life.
func (t *tasks) expire(now time.Time) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for k, r := range t.m {
		if now.After(r.expires) {
			t.forget(k, r)
			n++
		}
	}
	return n
}

func (t *tasks) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.m)
}

// asksForTask tells whether a tools/call may be answered with a task: the
// 2026-07-28 client names the extension in its per-request capabilities,
// a 2025-11-25 client sends params.task.
func asksForTask(msg *jsonrpc.Message) bool {
	if msg.Method != "tools/call" {
		return false
	}
	if t, ok := msg.Params["task"]; ok && len(t) > 0 && t[0] == '{' {
		return true
	}
	var caps struct {
		Extensions map[string]json.RawMessage `json:"extensions"`
	}
	if msg.MetaClientCapabilities == nil || json.Unmarshal(msg.MetaClientCapabilities, &caps) != nil {
		return false
	}
	_, ok := caps.Extensions[ExtensionTasks]
	return ok
}

// createdTask reads a tools/call result for a task handle: the 2026-07-28
// CreateTaskResult (resultType "task", taskId, ttlMs) or the 2025-11-25 one
// (task.taskId, task.ttl). ok is false for any other result.
func createdTask(result json.RawMessage) (id string, ttl time.Duration, ok bool) {
	var r struct {
		ResultType string   `json:"resultType"`
		TaskID     string   `json:"taskId"`
		TTLMs      *float64 `json:"ttlMs"`
		Task       *struct {
			TaskID string   `json:"taskId"`
			TTL    *float64 `json:"ttl"`
		} `json:"task"`
	}
	if json.Unmarshal(result, &r) != nil {
		return "", 0, false
	}
	life := func(ms *float64) time.Duration {
		if ms == nil || *ms <= 0 || *ms >= float64(maxTaskLife/time.Millisecond) {
			return maxTaskLife
		}
		return time.Duration(*ms) * time.Millisecond
	}
	switch {
	case r.ResultType == "task" && r.TaskID != "":
		return r.TaskID, life(r.TTLMs), true
	case r.ResultType == "" && r.Task != nil && r.Task.TaskID != "":
		return r.Task.TaskID, life(r.Task.TTL), true
	}
	return "", 0, false
}

// noteTask records the task a call's answer (one JSON-RPC message) created,
// if any, as the caller's.
func (g *Gateway) noteTask(backend *Backend, cl *caller, tool string, answer []byte, rec *audit.Record) {
	var m struct {
		Result json.RawMessage `json:"result"`
	}
	if json.Unmarshal(answer, &m) != nil || len(m.Result) == 0 {
		return
	}
	id, ttl, ok := createdTask(m.Result)
	if !ok || len(id) > maxTaskIDBytes {
		return
	}
	now := time.Now()
	if !g.tasks.add(taskKey{backend.Name, id}, &taskRecord{owner: cl.ownerKey(), tool: tool, created: now, expires: now.Add(ttl)}) {
		g.log.Warn("a task was not recorded: the gateway holds as many as it may, or another owner's has its id", "backend", backend.Name)
		rec.Reasons = append(rec.Reasons, "task "+id+" created, not recorded (its owner will be told it is unknown)")
		return
	}
	rec.Reasons = append(rec.Reasons, "task "+id+" created")
}

// forwardTaskable forwards an allowed tools/call that may be answered with
// a task and reads the answer before it reaches the client, so that the
// task is recorded as the caller's before the client can name it. Events
// before the answer (progress, a server's requests) stream through as
// they come; the answer itself is held until read (at most
// maxFilteredResponse).
func (g *Gateway) forwardTaskable(c *fiber.Ctx, backend *Backend, cl *caller, msg *jsonrpc.Message, sess *session, rec *audit.Record, start time.Time) error {
	// The backend has its timeout to answer; a stream it answers with then
	// lasts until it ends, as on the forwarder's path, or until Shutdown.
	ctx, cancel := g.streamContext(c)
	resp, err := g.streamFromBackend(ctx, cancel, c, backend, cl, msg, nil, sess, rec, start)
	if resp == nil {
		cancel()
		return err
	}
	g.adoptSession(c, backend, cl, msg, resp.Header.Get(hdrSession))
	copyAnswerHeaders(c, resp.Header.Get)
	rec.Status = resp.StatusCode
	tool := backend.Name + "." + msg.Name
	if !isEventStream(resp.Header.Get(fiber.HeaderContentType)) {
		// Read whole (at most maxFilteredResponse) and passed on when it
		// answers this request (answer.go); a task handle is small, so an
		// answer longer than maxTaskAnswer is a result.
		defer cancel()
		defer resp.Body.Close()
		body, err := io.ReadAll(io.LimitReader(resp.Body, maxFilteredResponse+1))
		reason := ""
		switch {
		case err != nil:
			reason = "the backend's answer could not be read"
		case len(body) > maxFilteredResponse:
			reason = "the backend's answer is larger than the gateway reads"
		default:
			if err = checkJSONAnswer(body, msg.ID, resp.StatusCode); err != nil {
				reason = err.Error()
			}
		}
		if reason != "" {
			g.log.Warn("a backend's answer was not passed on", "backend", backend.Name, "request_id", rec.RequestID, "reason", reason, "err", err)
			return g.withheld(c, msg, rec, start, reason)
		}
		if len(body) <= maxTaskAnswer {
			g.noteTask(backend, cl, tool, body, rec)
		}
		g.finish(rec, start)
		c.Status(resp.StatusCode)
		g.sendAnswer(c, body)
		return nil
	}
	g.finish(rec, start)
	c.Status(resp.StatusCode)
	keep := g.notificationVetter(backend, cl, msg.ID)
	g.sendStream(c, func(w *bufio.Writer) {
		defer cancel()
		defer resp.Body.Close()
		// Each message held to what this request may bring back
		// (answer.go); the answer, once it passes, is recorded before the
		// client can read its task's id.
		noted := func(ctx context.Context, data []byte) (pass, last bool) {
			if pass, last = keep(ctx, data); last {
				g.noteTask(backend, cl, tool, data, &audit.Record{})
			}
			return pass, last
		}
		if _, err := relayAnswer(ctx, w, resp.Body, noted); err != nil {
			g.log.Warn("the backend's answer stream ended", "backend", backend.Name, "request_id", rec.RequestID, "err", err)
		}
	})
	return nil
}

// taskOf is the task a tasks/* request names: its params.taskId.
func taskOf(msg *jsonrpc.Message) (string, error) {
	raw, ok := msg.Params["taskId"]
	if !ok {
		return "", errors.New("params.taskId is required")
	}
	var id string
	if json.Unmarshal(raw, &id) != nil || id == "" {
		return "", errors.New("params.taskId must be a non-empty string")
	}
	if len(id) > maxTaskIDBytes {
		return "", fmt.Errorf("params.taskId is longer than %d bytes", maxTaskIDBytes)
	}
	return id, nil
}

// checkTaskOwner lets a tasks/* request through only for the task's
// owner. When it returns false the answer has been written and audited.
func (g *Gateway) checkTaskOwner(c *fiber.Ctx, backend *Backend, cl *caller, msg *jsonrpc.Message, rec *audit.Record, start time.Time) bool {
	id, err := taskOf(msg)
	if err != nil {
		rec.Decision, rec.Status, rec.Reasons = "deny", fiber.StatusBadRequest, []string{"refused before policy: " + err.Error()}
		g.finish(rec, start)
		_ = g.reply(c, fiber.StatusBadRequest, jsonrpc.ErrorBody(msg.ID, jsonrpc.CodeInvalidParams, err.Error(), nil))
		return false
	}
	r, known := g.tasks.lookup(taskKey{backend.Name, id}, time.Now())
	switch {
	case !known:
		rec.Reasons = []string{"task " + id + " was not created through this gateway (or has expired)"}
	case r.owner != cl.ownerKey():
		rec.Tool = r.tool
		rec.Reasons = []string{"task " + id + " belongs to another agent"}
	default:
		rec.Tool = r.tool
		return true
	}
	// The same answer either way: another owner's task is not confirmed
	// to exist.
	rec.Decision, rec.Status = "deny", fiber.StatusOK
	g.finish(rec, start)
	_ = g.reply(c, fiber.StatusOK, jsonrpc.ErrorBody(msg.ID, jsonrpc.CodeInvalidParams, "unknown task",
		map[string]any{"request_id": rec.RequestID}))
	return false
}
