// Package config owns pulse.yaml: strict loading (unknown fields rejected,
// durations must carry a unit), validation with every error reported at
// once as file:line: field: message, presets (profile: lan or wan), the
// conversion to the monitor's Spec, and watching the file for live reload
// (fsnotify on its directory, plus SIGHUP), where a bad file is rejected and
// the running configuration kept.
package config
