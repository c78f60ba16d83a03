package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// AttackShape is one pathological argument object: a string argument
// built to make path handling work hard (many segments, and a character
// that sends the policy down its slow path).
type AttackShape struct {
	Name      string
	Arguments json.RawMessage
}

// Limits of an attack.
const (
	// MaxAttackers caps the hostile connections of one run.
	MaxAttackers = 64
	// MaxAttackBytes caps one pathological string.
	MaxAttackBytes = 1 << 20
)

// AttackShapes returns pathological values, each about size bytes, for
// the string argument arg: the "/a"×n + "/%", and the other ways a
// path can defeat a fast path (backslashes, "." and ".." segments, encoded
// separators, empty segments).
func AttackShapes(arg string, size int) ([]AttackShape, error) {
	if arg == "" {
		return nil, errors.New("bench: an attack needs the name of a string argument")
	}
	if size < 16 || size > MaxAttackBytes {
		return nil, fmt.Errorf("bench: attack size %d is outside 16..%d bytes", size, MaxAttackBytes)
	}
	rep := func(unit, tail string) string {
		return strings.Repeat(unit, max(1, (size-len(tail))/len(unit))) + tail
	}
	values := []struct{ name, v string }{
		{`"/a"×n + "/%"`, rep("/a", "/%")},
		{`"\a"×n`, rep(`\a`, "")},
		{`"/a/."×n`, rep("/a/.", "")},
		{`"/a/.."×n`, rep("/a/..", "")},
		{`"%2fa"×n`, rep("%2fa", "")},
		{`"/a/"×n`, rep("/a/", "")},
	}
	out := make([]AttackShape, 0, len(values))
	for _, v := range values {
		b, err := json.Marshal(map[string]string{arg: v.v})
		if err != nil {
			return nil, err
		}
		out = append(out, AttackShape{Name: v.name, Arguments: b})
	}
	return out, nil
}

// CanonicalAttackShape returns the costliest argument that is not refused
// before policy: a canonical path (lower-case ASCII segments, no dots, no
// encodings) of about size bytes in exactly segments segments. With the
// gateway's argument limits in place (a path of at most 1 KiB and 64
// segments by default) this, not AttackShapes' spellings, is what reaches
// the policy's path rules on every call.
func CanonicalAttackShape(arg string, size, segments int) (AttackShape, error) {
	if arg == "" {
		return AttackShape{}, errors.New("bench: an attack needs the name of a string argument")
	}
	if segments < 1 || size < 2*segments || size > MaxAttackBytes {
		return AttackShape{}, fmt.Errorf("bench: a canonical path of %d bytes cannot have %d segments (2 bytes each at least, %d bytes at most)", size, segments, MaxAttackBytes)
	}
	var b strings.Builder
	per := size / segments
	for i := range segments {
		b.WriteByte('/')
		name := fmt.Sprintf("s%d", i)
		b.WriteString(name)
		b.WriteString(strings.Repeat("a", max(0, per-1-len(name))))
	}
	args, err := json.Marshal(map[string]string{arg: b.String()})
	if err != nil {
		return AttackShape{}, err
	}
	return AttackShape{Name: fmt.Sprintf("canonical, %d segments", segments), Arguments: args}, nil
}

// AttackResult is what the hostile connections of a run got.
type AttackResult struct {
	// Requests counts the calls answered (or failed) before the end.
	Requests int64
	// Outcomes counts the calls by Outcome.
	Outcomes map[string]int64
	// Latency holds every counted call's latency in nanoseconds, whatever
	// its outcome.
	Latency *hdrhistogram.Histogram
}

// RunAttack calls on every connection of the pool in a closed loop — each
// calls again as soon as it has an answer — until ctx ends or limit has
// passed, and counts the outcomes. Calls cut off by the end are not
// counted.
func (p *Pool) RunAttack(ctx context.Context, limit time.Duration) (*AttackResult, error) {
	if limit <= 0 {
		return nil, errors.New("bench: an attack needs a positive time limit")
	}
	if len(p.conns) == 0 {
		return nil, errors.New("bench: the pool is closed")
	}
	runCtx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	res := &AttackResult{Outcomes: map[string]int64{}, Latency: newHistogram()}
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for _, c := range p.conns {
		wg.Go(func() {
			for runCtx.Err() == nil {
				sent := time.Now()
				err := c.Call(runCtx)
				took := time.Since(sent)
				if runCtx.Err() != nil {
					return
				}
				o := Outcome(err)
				mu.Lock()
				if res.Requests >= MaxRequestsPerRun {
					mu.Unlock()
					return
				}
				res.Requests++
				if _, ok := res.Outcomes[o]; !ok && len(res.Outcomes) >= maxErrorKinds {
					o = "other outcomes"
				}
				res.Outcomes[o]++
				_ = res.Latency.RecordValue(int64(min(max(took, 1), highestLatency)))
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	return res, nil
}

// Outcome names what a call got, for counting: "ok", "denied by policy
// (tool result)", "tool error",
// "HTTP <status>: <the JSON-RPC or OAuth error message>", "timed out", or
// "failed: <error>".
func Outcome(err error) string {
	if err == nil {
		return "ok"
	}
	if errors.Is(err, ErrDenied) {
		return "denied by policy (tool result)"
	}
	if errors.Is(err, ErrTool) {
		return "tool error"
	}
	var se *StatusError
	if errors.As(err, &se) {
		if msg := errorMessage(se.Body); msg != "" {
			return fmt.Sprintf("HTTP %d: %s", se.Code, truncate(msg, 80))
		}
		return fmt.Sprintf("HTTP %d", se.Code)
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return "timed out"
	}
	return "failed: " + truncate(err.Error(), 80)
}

// errorMessage is a JSON-RPC error's message or an OAuth error's code and
// description; "" when the body is neither.
func errorMessage(body []byte) string {
	var m struct {
		Error json.RawMessage `json:"error"`
		Desc  string          `json:"error_description"`
	}
	if json.Unmarshal(body, &m) != nil || len(m.Error) == 0 {
		return ""
	}
	var rpc struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(m.Error, &rpc) == nil && rpc.Message != "" {
		return rpc.Message
	}
	var code string
	if json.Unmarshal(m.Error, &code) == nil {
		if m.Desc != "" {
			return code + " (" + m.Desc + ")"
		}
		return code
	}
	return ""
}

// truncate cuts s to at most n bytes, on a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
