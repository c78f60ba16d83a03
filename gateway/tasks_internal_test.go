package gateway

import (
	"encoding/json"
	"testing"
	"time"
)

// TestTaskRecords: a task is its first owner's (a backend reusing an id
// does not hand it to another), an owner past its quota loses its oldest
// task, and a task past its life is unknown.
func TestTaskRecords(t *testing.T) {
	now := time.Now()
	ts := newTasks(2)
	rec := func(owner string, age time.Duration, life time.Duration) *taskRecord {
		return &taskRecord{owner: owner, tool: "b.t", created: now.Add(-age), expires: now.Add(life)}
	}
	a1, a2, a3 := taskKey{"b", "1"}, taskKey{"b", "2"}, taskKey{"b", "3"}
	if !ts.add(a1, rec("alice", 3*time.Second, time.Hour)) || !ts.add(a2, rec("alice", 2*time.Second, time.Hour)) {
		t.Fatal("alice's first two tasks were not recorded")
	}
	if ts.add(a1, rec("mallory", 0, time.Hour)) || ts.owns("mallory", a1, now) || !ts.owns("alice", a1, now) {
		t.Fatal("another owner took a task by its id")
	}
	ts.add(a3, rec("alice", time.Second, time.Hour))
	if ts.owns("alice", a1, now) || !ts.owns("alice", a2, now) || !ts.owns("alice", a3, now) {
		t.Fatal("past its quota, alice did not lose her oldest task (and only it)")
	}
	if !ts.owns("alice", taskKey{"b", "2"}, now) || ts.owns("alice", taskKey{"other", "2"}, now) {
		t.Fatal("a task id is the task on its own backend only")
	}
	ts.add(taskKey{"b", "old"}, rec("bob", 0, -time.Second))
	if ts.owns("bob", taskKey{"b", "old"}, now) || ts.expire(now) != 0 {
		t.Fatal("a task past its life is known")
	}
	if ts.count() != 2 {
		t.Fatalf("%d tasks recorded, want 2", ts.count())
	}
}

// TestCreatedTask reads task handles of both revisions and nothing else.
func TestCreatedTask(t *testing.T) {
	for _, tc := range []struct {
		result string
		id     string
		ttl    time.Duration
	}{
		{`{"resultType":"task","taskId":"t-1","status":"working","ttlMs":60000}`, "t-1", time.Minute},
		{`{"resultType":"task","taskId":"t-2","ttlMs":null}`, "t-2", maxTaskLife},
		{`{"task":{"taskId":"t-3","status":"working","ttl":1000}}`, "t-3", time.Second},
		{`{"resultType":"task","taskId":"t-4","ttlMs":1e12}`, "t-4", maxTaskLife},
		{`{"resultType":"complete","content":[],"taskId":"x"}`, "", 0},
		{`{"resultType":"complete","task":{"taskId":"y"}}`, "", 0},
		{`{"content":[{"type":"text","text":"hi"}]}`, "", 0},
		{`[]`, "", 0},
	} {
		id, ttl, ok := createdTask(json.RawMessage(tc.result))
		if id != tc.id || ok != (tc.id != "") || (ok && ttl != tc.ttl) {
			t.Errorf("%s: %q %v %v, want %q %v", tc.result, id, ttl, ok, tc.id, tc.ttl)
		}
	}
}

// TestPlainEvents: of an event's lines other than data, only comments and
// the event, id and retry fields are passed on.
func TestPlainEvents(t *testing.T) {
	ev := sseEvent{fields: [][]byte{[]byte(": hi"), []byte("event: message"), []byte("id: 3"), []byte("retry: 10"),
		[]byte("\xEF\xBB\xBFdata: {\"smuggled\":1}"), []byte("x-other: 1")}}
	got := ev.plain()
	if len(got.fields) != 4 {
		t.Fatalf("fields %q", got.fields)
	}
}
