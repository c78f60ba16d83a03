package audit

import (
	"net/http"
	"strings"
	"sync"
	"time"
)

// pipeWriter is an http.ResponseWriter + Flusher whose writes can be held.
type pipeWriter struct {
	mu      sync.Mutex
	cond    *sync.Cond
	hdr     http.Header
	sb      strings.Builder
	writes  int
	held    bool
	blocked bool
}

func newPipeWriter() *pipeWriter {
	p := &pipeWriter{hdr: http.Header{}}
	p.cond = sync.NewCond(&p.mu)
	return p
}

func (p *pipeWriter) Header() http.Header { return p.hdr }
func (p *pipeWriter) WriteHeader(int)     {}
func (p *pipeWriter) Flush()              {}

func (p *pipeWriter) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for p.held {
		p.blocked = true
		p.cond.Broadcast()
		p.cond.Wait()
	}
	p.blocked = false
	p.writes++
	p.sb.Write(b)
	p.cond.Broadcast()
	return len(b), nil
}

func (p *pipeWriter) String() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sb.String()
}

func (p *pipeWriter) block() {
	p.mu.Lock()
	p.held = true
	p.mu.Unlock()
}

func (p *pipeWriter) unblock() {
	p.mu.Lock()
	p.held = false
	p.cond.Broadcast()
	p.mu.Unlock()
}

func (p *pipeWriter) waitWrites(n int) { p.waitFor(func() bool { return p.writes >= n }) }
func (p *pipeWriter) waitBlocked()     { p.waitFor(func() bool { return p.blocked }) }

func (p *pipeWriter) waitFor(cond func() bool) {
	deadline := time.Now().Add(5 * time.Second)
	p.mu.Lock()
	defer p.mu.Unlock()
	for !cond() {
		if time.Now().After(deadline) {
			panic("pipeWriter: timed out")
		}
		p.mu.Unlock()
		time.Sleep(time.Millisecond)
		p.mu.Lock()
	}
}
