package wasm

import (
	"log/slog"
	"runtime"
	"time"
)

// Config holds the engine's limits. It is an immutable value: every With…
// method returns a modified copy, so a Config can be shared and extended
// without surprises.
type Config struct {
	maxInstances   int
	maxMemoryPages uint32
	evalTimeout    time.Duration
	maxInputBytes  int
	cacheDir       string
	logger         *slog.Logger
}

// NewConfig returns the defaults: one instance per CPU (at least two), a
// 64 MiB memory cap per instance, 100 ms of CPU per evaluation, 1 MiB of
// input, and no on-disk compilation cache.
func NewConfig() Config {
	return Config{
		maxInstances:   max(2, runtime.GOMAXPROCS(0)),
		maxMemoryPages: 1024, // 64 KiB pages: 64 MiB
		evalTimeout:    100 * time.Millisecond,
		maxInputBytes:  1 << 20,
		logger:         slog.New(slog.DiscardHandler),
	}
}

// WithMaxInstances bounds the Wasm instances of one policy, and so the number
// of decisions it evaluates at once.
func (c Config) WithMaxInstances(n int) Config {
	c.maxInstances = max(1, n)
	return c
}

// WithMaxMemoryPages caps each instance's linear memory (64 KiB pages).
func (c Config) WithMaxMemoryPages(pages uint32) Config {
	c.maxMemoryPages = max(pages, minMemoryPages)
	return c
}

// WithEvalTimeout sets the time one evaluation may run: a policy that has
// used that much of its thread's CPU is stopped and the evaluation fails
// with ErrTimeout. One that a busy machine holds up is stopped at ten times
// that in wall-clock time (or at its context's deadline). Without a
// per-thread CPU clock (only Linux has one here) it is wall-clock time.
func (c Config) WithEvalTimeout(d time.Duration) Config {
	if d > 0 {
		c.evalTimeout = d
	}
	return c
}

// EvalTimeout is the time one evaluation may run (see WithEvalTimeout).
func (c Config) EvalTimeout() time.Duration { return c.evalTimeout }

// WithMaxInputBytes bounds the size of one evaluation's input JSON.
func (c Config) WithMaxInputBytes(n int) Config {
	if n > 0 {
		c.maxInputBytes = n
	}
	return c
}

// WithCacheDir keeps compiled machine code in dir, so a restart does not
// recompile a policy it has seen. An empty dir keeps the cache in memory.
func (c Config) WithCacheDir(dir string) Config {
	c.cacheDir = dir
	return c
}

// WithLogger sets the logger for instance lifecycle events.
func (c Config) WithLogger(l *slog.Logger) Config {
	if l != nil {
		c.logger = l
	}
	return c
}
