package wasm

// PoolStateForTest reports p's pool: slots in use (instances idle, busy or
// being created, and grants on their way), idle instances, and callers
// waiting.
func PoolStateForTest(p *Policy) (created, idle, waiting int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.created, len(p.idle), len(p.waiters)
}
