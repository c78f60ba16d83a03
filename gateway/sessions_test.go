package gateway

import (
	"testing"
	"time"
)

func TestSessionsExpire(t *testing.T) {
	s := newSessions(0)
	s.put("old", &session{clientID: "a"})
	s.put("new", &session{clientID: "b"})
	s.m["old"].lastUsed = time.Now().Add(-time.Hour)
	if gone := s.expire(time.Now().Add(-30 * time.Minute)); len(gone) != 1 || gone[0].clientID != "a" {
		t.Fatalf("expired %v, want the old one", gone)
	}
	if _, ok := s.get("old"); ok {
		t.Fatal("an idle session survived")
	}
	if _, ok := s.get("new"); !ok {
		t.Fatal("a live session was ended")
	}
}
