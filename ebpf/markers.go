package ebpf

// Markers are the marker functions (gateway/probe_markers.go) by stage.
// Each probed marker costs the gateway an entry uprobe's trap into the
// kernel per call, so the ones only the per-stage breakdown needs are
// attached with Options.Stages (probeReplyDone also without the socket
// stages, where it ends the call).
var markers = []struct {
	stage    Stage
	name     string
	required bool
	detail   bool
}{
	{StageStart, "probeRequestStart", true, false},
	{StageAuthenticated, "probeAuthenticated", false, true},
	{StageDecided, "probeDecided", false, true},
	{StageForward, "probeForwardStart", true, false},
	{StageBackendDone, "probeBackendDone", true, false},
	{StageReplyDone, "probeReplyDone", true, true},
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
