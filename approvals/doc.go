// Package approvals holds what the gateway needs to let a person approve a
// tool call that policy holds (issue 20): for now the signed requestState
// that ties a client's retry to the approval it waits for and to the exact
// call that asked for it. The store and the service come in later slices.
package approvals
