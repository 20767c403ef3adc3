package metrics

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// BuildInfo is what wsgate_build_info says about the running binary.
type BuildInfo struct {
	// Version is gateway.Version: the Makefile's `git describe` through
	// -ldflags, "dev" for a plain go build.
	Version string
	// GoVersion is the Go release that built the binary.
	GoVersion string
	// Revision is the VCS commit: the one -ldflags gave (the Makefile's
	// and Dockerfile's gateway.Revision), else the one go build stamped
	// (vcs.revision, with "-dirty" when the tree had local changes),
	// "unknown" when neither did (no .git in a container's build context
	// and no REVISION build argument, -buildvcs=false).
	Revision string
}

// ReadBuildInfo fills BuildInfo for the running binary: version and
// revision are the build's -ldflags values ("" revision: the VCS stamp).
func ReadBuildInfo(version, revisionFlag string) BuildInfo {
	b := BuildInfo{Version: version, GoVersion: runtime.Version(), Revision: revisionFlag}
	if b.Revision == "" {
		b.Revision = "unknown"
		if bi, ok := debug.ReadBuildInfo(); ok {
			b.Revision = revision(bi.Settings)
		}
	}
	return b
}

// revision is vcs.revision of the build settings, "-dirty" appended when
// vcs.modified is true, "unknown" without one.
func revision(settings []debug.BuildSetting) string {
	rev, modified := "", false
	for _, s := range settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if rev == "" {
		return "unknown"
	}
	if modified {
		rev += "-dirty"
	}
	return rev
}

// RegisterBuildInfo registers wsgate_build_info on reg: a gauge of 1 whose
// labels say which build runs, so that a dashboard can show the version of
// each replica during a rolling upgrade
// (count by (version) (wsgate_build_info)). Its three labels have one
// value per process, so cardinality stays 1.
func RegisterBuildInfo(reg prometheus.Registerer, b BuildInfo) {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "wsgate_build_info",
		Help:        "Always 1; the labels say which build runs: version (-ldflags), goversion, revision (VCS commit).",
		ConstLabels: prometheus.Labels{"version": b.Version, "goversion": b.GoVersion, "revision": b.Revision},
	})
	g.Set(1)
	reg.MustRegister(g)
}
