// Package approvals holds what the gateway needs to let a person approve a
// tool call that policy holds (issue 20): the approvals themselves (Approval,
// Store), their life (Service: asked, decided, used once, expired) and the
// signed requestState
// that ties a client's retry to the approval it waits for and to the exact
// call that asked for it. The stores are in approvals/store.
package approvals
