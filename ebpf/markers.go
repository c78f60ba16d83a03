package ebpf

// Markers are the marker functions (gateway/probe_markers.go) by stage.
// Each probed marker costs the gateway an entry uprobe's trap into the
// kernel per call, so the ones only the per-stage breakdown needs are
// attached with Options.Stages (probeReplyDone also without the socket
// stages, where it ends the call). The backend's ends are the HTTP
// client's markers (split: request written, first byte of the answer
// read); the handler's (forward, response headers) stand in for them in
// an executable without those, and join the breakdown with Stages.
var markers = []struct {
	stage    Stage
	name     string
	required bool // required unless the split markers were attached
	detail   bool
	split    bool // one of the backend's ends, optional
	handler  bool // the handler's end of the backend call: needed without split
}{
	{StageStart, "probeRequestStart", true, false, false, false},
	{StageAuthenticated, "probeAuthenticated", false, true, false, false},
	{StageDecided, "probeDecided", false, true, false, false},
	{StageForward, "probeForwardStart", true, false, false, true},
	{StageBackendSent, "probeBackendSent", false, false, true, false},
	{StageBackendFirstByte, "probeBackendFirstByte", false, false, true, false},
	{StageBackendDone, "probeBackendDone", true, false, false, true},
	{StageReplyDone, "probeReplyDone", true, true, false, false},
}

// MarkerNames are the names of the gateway's marker functions the probe
// attaches to (in the executable: MarkerPrefix + name).
func MarkerNames() []string {
	names := make([]string, 0, len(markers))
	for _, mk := range markers {
		names = append(names, mk.name)
	}
	return names
}
