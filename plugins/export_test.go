package plugins

// MemoLenForTest is how many decisions the active version remembers.
func MemoLenForTest(r *Registry) int {
	v := r.active.Load()
	if v == nil || v.memo == nil {
		return 0
	}
	return v.memo.len()
}
