package host

import (
	"testing"
	"time"
)

func TestSessionsExpire(t *testing.T) {
	s := newSessions()
	s.put("old", &session{clientID: "a"})
	s.put("new", &session{clientID: "b"})
	s.m["old"].lastUsed = time.Now().Add(-time.Hour)
	if n := s.expire(time.Now().Add(-30 * time.Minute)); n != 1 {
		t.Fatalf("expired %d, want 1", n)
	}
	if _, ok := s.get("old"); ok {
		t.Fatal("an idle session survived")
	}
	if _, ok := s.get("new"); !ok {
		t.Fatal("a live session was ended")
	}
}
