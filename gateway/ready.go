package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"github.com/gofiber/fiber/v2"
)

// readyTimeout bounds one readiness check (a store ping).
const readyTimeout = 2 * time.Second

// ReadyStatus is /readyz's answer: 200 when ready, 503 naming what is not.
func ReadyStatus(ctx context.Context, ready func(context.Context) error) (int, []byte) {
	var err error
	if ready != nil {
		rctx, cancel := context.WithTimeout(ctx, readyTimeout)
		err = ready(rctx)
		cancel()
	}
	if err == nil {
		return http.StatusOK, []byte(`{"ready":true}` + "\n")
	}
	var why []string
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			why = append(why, e.Error())
		}
	} else {
		why = []string{err.Error()}
	}
	body, _ := json.Marshal(map[string]any{"ready": false, "not_ready": why})
	return http.StatusServiceUnavailable, append(body, '\n')
}

// ReadyHandler serves ReadyStatus over net/http (the admin listener, pbac
// asrv).
func ReadyHandler(ready func(context.Context) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		code, body := ReadyStatus(r.Context(), ready)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(code)
		_, _ = w.Write(body)
	})
}

func (g *Gateway) serveReady(c *fiber.Ctx) error {
	code, body := ReadyStatus(c.UserContext(), g.cfg.Ready)
	c.Set(fiber.HeaderCacheControl, "no-store")
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	return c.Status(code).Send(body)
}
