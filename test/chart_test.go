package test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/wsgate/wsgate/test/testenv"
)

// The Helm chart (charts/wsgate) is checked by rendering it with helm
// itself: lint --strict and template for every example values file, then
// the rendered objects are parsed and their fields checked, and the
// rendered wsgate config must pass `wsgate config check`, so the chart and
// the config struct cannot drift apart.

const (
	chartDir      = "../charts/wsgate"
	sidecarAppDir = "../charts/wsgate/examples/sidecar-app"
)

var (
	helmOnce sync.Once
	helmPath string
	helmErr  error
)

// helm returns the helm binary that test/setup-helm.sh found or built
// (`make test` starts that build first, in the background, so it never
// runs inside this package's -timeout; this waits for it). Without one
// the test is skipped, or failed under CI=true. Every test that needs it
// calls t.Parallel first: parallel tests run after the package's serial
// ones, so on a cold machine the e2e tests run while helm still builds
// instead of queueing behind a chart test that waits for it.
func helm(t *testing.T) string {
	t.Helper()
	helmOnce.Do(func() { helmPath, helmErr = findHelm() })
	if helmErr != nil {
		testenv.Missing(t, "helm", helmErr)
	}
	return helmPath
}

func findHelm() (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "setup-helm.sh", "--wait")
	cmd.Env = append(os.Environ(), "WSGATE_HELM_WAIT_SECONDS=690")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("bash test/setup-helm.sh --wait: %v\n%s", err, errb.String())
	}
	return strings.TrimSpace(out.String()), nil
}

// runHelm runs helm with its own empty config, cache and data directories.
func runHelm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	home := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, helm(t), args...)
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if err != nil {
		return out.String() + errb.String(), fmt.Errorf("helm %s: %v\n%s%s", strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String(), nil
}

func mustHelm(t *testing.T, args ...string) string {
	t.Helper()
	out, err := runHelm(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// obj is one rendered Kubernetes object.
type obj map[string]any

func (o obj) kind() string { return str(o["kind"]) }
func (o obj) name() string { return str(get(o, "metadata", "name")) }

// get walks nested maps and lists (a key of a list is an index).
func get(v any, path ...string) any {
	for _, p := range path {
		switch m := v.(type) {
		case obj:
			v = m[p]
		case map[string]any:
			v = m[p]
		case []any:
			i, err := strconv.Atoi(p)
			if err != nil || i < 0 || i >= len(m) {
				return nil
			}
			v = m[i]
		default:
			return nil
		}
	}
	return v
}

func str(v any) string {
	if v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

func list(v any) []any {
	l, _ := v.([]any)
	return l
}

func toInt(t *testing.T, what string, v any) int {
	t.Helper()
	switch n := v.(type) {
	case int:
		return n
	case int64:
		return int(n)
	case float64:
		return int(n)
	}
	t.Fatalf("%s: %v (%T) is not a number", what, v, v)
	return 0
}

// parseObjects splits helm template's output into objects.
func parseObjects(t *testing.T, out string) []obj {
	t.Helper()
	dec := yaml.NewDecoder(strings.NewReader(out))
	var objs []obj
	for {
		var m map[string]any
		err := dec.Decode(&m)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("rendered YAML does not parse: %v\n%s", err, out)
		}
		if m == nil {
			continue
		}
		objs = append(objs, obj(m))
	}
	if len(objs) == 0 {
		t.Fatalf("helm template rendered no objects:\n%s", out)
	}
	return objs
}

func byKind(objs []obj, kind string) []obj {
	var r []obj
	for _, o := range objs {
		if o.kind() == kind {
			r = append(r, o)
		}
	}
	return r
}

func one(t *testing.T, objs []obj, kind string) obj {
	t.Helper()
	r := byKind(objs, kind)
	if len(r) != 1 {
		t.Fatalf("want one %s, rendered %d", kind, len(r))
	}
	return r[0]
}

func readYAMLFile(t *testing.T, path string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := yaml.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if m == nil {
		m = map[string]any{}
	}
	return m
}

// valuesCase is a set of values the chart must lint and render with: its
// helm arguments and the values in effect (for the checks).
type valuesCase struct {
	name   string
	args   []string
	values map[string]any
}

// valuesCases is the chart's own defaults (values.yaml alone) and every
// example values file (ci/*.yaml).
func valuesCases(t *testing.T) []valuesCase {
	t.Helper()
	cases := []valuesCase{{"defaults", nil, readYAMLFile(t, filepath.Join(chartDir, "values.yaml"))}}
	for _, f := range exampleValues(t) {
		cases = append(cases, valuesCase{strings.TrimSuffix(filepath.Base(f), ".yaml"), []string{"-f", f}, readYAMLFile(t, f)})
	}
	return cases
}

// exampleValues lists the chart's example values files (ci/*.yaml).
func exampleValues(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(chartDir, "ci", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"standalone-minimal-values.yaml": false, "standalone-full-values.yaml": false, "sidecar-values.yaml": false}
	for _, f := range files {
		if _, ok := want[filepath.Base(f)]; ok {
			want[filepath.Base(f)] = true
		}
	}
	for name, found := range want {
		if !found {
			t.Errorf("example values %s missing from %s/ci", name, chartDir)
		}
	}
	return files
}

// wsgateConfig is the rendered wsgate config: the ConfigMap's wsgate.yaml.
type wsgateConfig struct {
	Raw    string
	Parsed map[string]any
	Name   string // the ConfigMap's
}

func renderedConfig(t *testing.T, objs []obj) wsgateConfig {
	t.Helper()
	var found []wsgateConfig
	for _, cm := range byKind(objs, "ConfigMap") {
		raw, ok := get(cm, "data", "wsgate.yaml").(string)
		if !ok {
			continue
		}
		var m map[string]any
		if err := yaml.Unmarshal([]byte(raw), &m); err != nil {
			t.Fatalf("ConfigMap %s: wsgate.yaml does not parse: %v", cm.name(), err)
		}
		found = append(found, wsgateConfig{Raw: raw, Parsed: m, Name: cm.name()})
	}
	if len(found) != 1 {
		t.Fatalf("want one ConfigMap with wsgate.yaml, rendered %d", len(found))
	}
	return found[0]
}

// drainSeconds reads limits.drain_timeout as wsgate does (Go duration or
// integer seconds; default 20s), rounded up.
func (c wsgateConfig) drainSeconds(t *testing.T) int {
	t.Helper()
	v := get(c.Parsed, "limits", "drain_timeout")
	switch d := v.(type) {
	case nil:
		return 20
	case int:
		return d
	case string:
		dur, err := time.ParseDuration(d)
		if err != nil {
			t.Fatalf("limits.drain_timeout %q: %v", d, err)
		}
		return int((dur + time.Second - 1) / time.Second)
	}
	t.Fatalf("limits.drain_timeout: unexpected %T", v)
	return 0
}

func listenPort(t *testing.T, what, addr string) int {
	t.Helper()
	i := strings.LastIndex(addr, ":")
	p, err := strconv.Atoi(addr[i+1:])
	if i < 0 || err != nil {
		t.Fatalf("%s %q: no port", what, addr)
	}
	return p
}

// podChecks is what every pod running wsgate must satisfy.
type podChecks struct {
	cfg            wsgateConfig
	existingSecret string
	portPrefix     string // "wsgate-" in sidecar mode
}

// checkPod checks the pod template of a Deployment that runs wsgate and
// returns the wsgate container's env for `config check`.
func (pc podChecks) checkPod(t *testing.T, dep obj, annotation string) []string {
	t.Helper()
	tmpl := get(dep, "spec", "template")
	pod := get(tmpl, "spec")
	if sum := str(get(tmpl, "metadata", "annotations", annotation)); !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(sum) {
		t.Errorf("pod annotation %s = %q, want a sha256", annotation, sum)
	}
	var c map[string]any
	for _, x := range list(get(pod, "containers")) {
		if str(get(x, "name")) == "wsgate" {
			c, _ = x.(map[string]any)
		}
	}
	if c == nil {
		t.Fatalf("%s: no wsgate container", dep.name())
	}

	// Non-root, read-only, no capabilities, RuntimeDefault seccomp.
	either := func(path ...string) any {
		if v := get(c, append([]string{"securityContext"}, path...)...); v != nil {
			return v
		}
		return get(pod, append([]string{"securityContext"}, path...)...)
	}
	if either("runAsNonRoot") != true {
		t.Errorf("runAsNonRoot not true")
	}
	if uid := either("runAsUser"); uid == nil || toInt(t, "runAsUser", uid) == 0 {
		t.Errorf("runAsUser %v, want a non-zero uid", uid)
	}
	if get(c, "securityContext", "readOnlyRootFilesystem") != true {
		t.Errorf("readOnlyRootFilesystem not true")
	}
	if get(c, "securityContext", "allowPrivilegeEscalation") != false {
		t.Errorf("allowPrivilegeEscalation not false")
	}
	if drop := list(get(c, "securityContext", "capabilities", "drop")); len(drop) != 1 || str(drop[0]) != "ALL" {
		t.Errorf("capabilities.drop = %v, want [ALL]", drop)
	}
	if str(either("seccompProfile", "type")) != "RuntimeDefault" {
		t.Errorf("seccompProfile not RuntimeDefault")
	}

	// Ports follow the config; probes hit the metrics listener.
	ports := map[string]int{}
	for _, p := range list(get(c, "ports")) {
		ports[str(get(p, "name"))] = toInt(t, "containerPort", get(p, "containerPort"))
	}
	if want := listenPort(t, "listen", str(get(pc.cfg.Parsed, "listen"))); ports[pc.portPrefix+"ws"] != want {
		t.Errorf("port %sws = %d, want %d (config listen)", pc.portPrefix, ports[pc.portPrefix+"ws"], want)
	}
	metricsPort := listenPort(t, "metrics.listen", str(get(pc.cfg.Parsed, "metrics", "listen")))
	for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz", "startupProbe": "/healthz"} {
		if got := str(get(c, probe, "httpGet", "path")); got != path {
			t.Errorf("%s path %q, want %q", probe, got, path)
		}
		port := get(c, probe, "httpGet", "port")
		if n, ok := ports[str(port)]; ok {
			port = n
		}
		if toInt(t, probe+" port", port) != metricsPort {
			t.Errorf("%s port %v, want the metrics port %d", probe, get(c, probe, "httpGet", "port"), metricsPort)
		}
	}

	// Drain: a preStop hook, and a grace period covering it and the drain.
	preStop := get(c, "lifecycle", "preStop")
	if preStop == nil {
		t.Fatalf("no preStop hook")
	}
	sleep := 0
	if s := get(preStop, "sleep", "seconds"); s != nil {
		sleep = toInt(t, "preStop sleep", s)
	}
	grace := toInt(t, "terminationGracePeriodSeconds", get(pod, "terminationGracePeriodSeconds"))
	if drain := pc.cfg.drainSeconds(t); grace < drain+sleep {
		t.Errorf("terminationGracePeriodSeconds %d < preStop %ds + drain_timeout %ds", grace, sleep, drain)
	}

	// The config comes from the rendered ConfigMap.
	volumes := map[string]map[string]any{}
	for _, v := range list(get(pod, "volumes")) {
		m, _ := v.(map[string]any)
		volumes[str(m["name"])] = m
	}
	mounts := map[string]map[string]any{}
	for _, m := range list(get(c, "volumeMounts")) {
		mm, _ := m.(map[string]any)
		mounts[str(mm["mountPath"])] = mm
	}
	cfgMount := mounts["/etc/wsgate"]
	if cfgMount == nil || cfgMount["readOnly"] != true {
		t.Errorf("config not mounted read-only at /etc/wsgate: %v", cfgMount)
	} else if got := str(get(volumes[str(cfgMount["name"])], "configMap", "name")); got != pc.cfg.Name {
		t.Errorf("config volume is ConfigMap %q, want %q", got, pc.cfg.Name)
	}
	if args := fmt.Sprint(get(c, "args")); !strings.Contains(args, "/etc/wsgate/wsgate.yaml") {
		t.Errorf("args %s do not name /etc/wsgate/wsgate.yaml", args)
	}

	// Files store: the session directory, read-only, from a pod volume.
	if store := str(get(pc.cfg.Parsed, "session", "store")); store == "" || store == "files" {
		path := str(get(pc.cfg.Parsed, "session", "files", "path"))
		if path == "" {
			path = "/var/lib/php/sessions"
		}
		m := mounts[path]
		if m == nil {
			t.Fatalf("files store: nothing mounted at session.files.path %s", path)
		}
		if m["readOnly"] != true {
			t.Errorf("session volume at %s not read-only", path)
		}
		if volumes[str(m["name"])] == nil {
			t.Errorf("session volume %q not in the pod's volumes", m["name"])
		}
	}

	// Secrets: every secretKeyRef reads existingSecret; the env goes to
	// config check with stand-in values.
	var env []string
	for _, e := range list(get(c, "env")) {
		name := str(get(e, "name"))
		if ref := get(e, "valueFrom", "secretKeyRef"); ref != nil {
			if got := str(get(ref, "name")); got != pc.existingSecret {
				t.Errorf("env %s: secretKeyRef name %q, want existingSecret %q", name, got, pc.existingSecret)
			}
			env = append(env, name+"="+standInSecret(name))
			continue
		}
		if v, ok := get(e, "value").(string); ok {
			env = append(env, name+"="+v)
		}
	}
	return env
}

// standInSecret is a plausible value for a variable a Secret fills.
func standInSecret(name string) string {
	switch name {
	case "WSGATE_SESSION_PDO_DSN":
		return "wsgate:secret@tcp(db:3306)/app"
	}
	return "0123456789abcdef0123456789abcdef"
}

// configCheck runs `wsgate config check` on the rendered config with env.
func configCheck(t *testing.T, cfg wsgateConfig, env []string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "wsgate.yaml")
	if err := os.WriteFile(path, []byte(cfg.Raw), 0o600); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := runWsgate(t, env, "config", "check", "--config", path)
	if code != 0 || !strings.Contains(out, "config ok") {
		t.Errorf("wsgate config check of the rendered config: exit %d\n%s%s\nenv %v\nconfig:\n%s", code, out, errOut, env, cfg.Raw)
	}
}

func TestChartExamples(t *testing.T) {
	t.Parallel() // runs after the serial tests: see helm
	helm(t)
	for _, vc := range valuesCases(t) {
		t.Run(vc.name, func(t *testing.T) {
			if out, err := runHelm(t, append([]string{"lint", "--strict", chartDir}, vc.args...)...); err != nil {
				t.Fatalf("helm lint --strict:\n%v", err)
			} else if !strings.Contains(out, "0 chart(s) failed") {
				t.Fatalf("helm lint --strict:\n%s", out)
			}
			values := vc.values
			objs := parseObjects(t, mustHelm(t, append([]string{"template", "rel", chartDir}, vc.args...)...))
			cfg := renderedConfig(t, objs)
			sidecar := str(values["mode"]) == "sidecar"
			enabled := func(key string) bool { return get(values, key, "enabled") == true }

			expect := map[string]bool{
				"Deployment":              !sidecar,
				"Ingress":                 !sidecar && enabled("ingress"),
				"PrometheusRule":          enabled("prometheusRule"),
				"ServiceMonitor":          !sidecar && enabled("serviceMonitor"),
				"PodMonitor":              enabled("podMonitor"),
				"PodDisruptionBudget":     !sidecar && enabled("podDisruptionBudget"),
				"HorizontalPodAutoscaler": !sidecar && enabled("autoscaling"),
			}
			if got, want := len(byKind(objs, "Service")), map[bool]int{true: 0, false: 2}[sidecar]; got != want {
				t.Errorf("%d Services, want %d (the public websocket one and the internal one)", got, want)
			}
			for kind, want := range expect {
				if got := len(byKind(objs, kind)) == 1; got != want {
					t.Errorf("%s rendered: %v, want %v", kind, got, want)
				}
			}
			if got, want := len(byKind(objs, "ConfigMap")), 1; enabled("grafanaDashboard") {
				if got != want+1 {
					t.Errorf("grafanaDashboard enabled: %d ConfigMaps, want the config's and the dashboard's", got)
				}
			} else if got != want {
				t.Errorf("%d ConfigMaps, want only the config's", got)
			}

			env := sidecarSecretEnv(values, cfg)
			if !sidecar {
				dep := one(t, objs, "Deployment")
				pc := podChecks{cfg: cfg, existingSecret: str(values["existingSecret"])}
				env = pc.checkPod(t, dep, "checksum/config")
				checkSecretEnv(t, values, env)
				if _, has := get(dep, "spec").(map[string]any)["replicas"]; has == enabled("autoscaling") {
					t.Errorf("Deployment replicas set: %v, want it only without the HPA", has)
				}
				checkServices(t, objs, dep.name(), cfg)
				if enabled("serviceMonitor") {
					if p := str(get(one(t, objs, "ServiceMonitor"), "spec", "endpoints", "0", "port")); p != "metrics" {
						t.Errorf("ServiceMonitor scrapes port %q, want metrics", p)
					}
				}
				if enabled("autoscaling") {
					hpa := one(t, objs, "HorizontalPodAutoscaler")
					if got := str(get(hpa, "apiVersion")); got != "autoscaling/v2" {
						t.Errorf("HPA apiVersion %s", got)
					}
					if got := str(get(hpa, "spec", "scaleTargetRef", "name")); got != dep.name() {
						t.Errorf("HPA targets %q, want %q", got, dep.name())
					}
				}
				if enabled("podDisruptionBudget") {
					sel := get(one(t, objs, "PodDisruptionBudget"), "spec", "selector", "matchLabels")
					if fmt.Sprint(sel) != fmt.Sprint(get(dep, "spec", "selector", "matchLabels")) {
						t.Errorf("PDB selector %v differs from the Deployment's", sel)
					}
				}
			}
			configCheck(t, cfg, env)
		})
	}
}

// sidecarSecretEnv stands in for the variables the container would get
// (secretEnv, and what the config's secret_env and token_env name), for a
// config rendered without its pod (sidecar mode).
func sidecarSecretEnv(values map[string]any, cfg wsgateConfig) []string {
	var env []string
	se, _ := values["secretEnv"].(map[string]any)
	for path := range se {
		name := "WSGATE_" + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
		env = append(env, name+"="+standInSecret(name))
	}
	ups, _ := get(cfg.Parsed, "upstreams").(map[string]any)
	for _, u := range ups {
		if name := str(get(u, "secret_env")); name != "" {
			env = append(env, name+"="+standInSecret(name))
		}
	}
	if name := str(get(cfg.Parsed, "api", "token_env")); name != "" {
		env = append(env, name+"="+standInSecret(name))
	}
	return env
}

// checkSecretEnv: every secretEnv and upstreamSecrets entry of the values
// reaches the container.
func checkSecretEnv(t *testing.T, values map[string]any, env []string) {
	t.Helper()
	have := map[string]bool{}
	for _, kv := range env {
		name, _, _ := strings.Cut(kv, "=")
		have[name] = true
	}
	se, _ := values["secretEnv"].(map[string]any)
	for path := range se {
		name := "WSGATE_" + strings.ToUpper(strings.ReplaceAll(path, ".", "_"))
		if !have[name] {
			t.Errorf("secretEnv %s: no %s in the container env", path, name)
		}
	}
	us, _ := values["upstreamSecrets"].(map[string]any)
	for up := range us {
		name := "UPSTREAM_" + strings.ToUpper(up) + "_SECRET"
		if !have[name] {
			t.Errorf("upstreamSecrets %s: no %s in the container env", up, name)
		}
	}
}

// servicePorts returns a Service's ports by name, checking that each
// targets the container port of the same name.
func servicePorts(t *testing.T, svc obj) map[string]int {
	t.Helper()
	ports := map[string]int{}
	for _, p := range list(get(svc, "spec", "ports")) {
		ports[str(get(p, "name"))] = toInt(t, "port", get(p, "port"))
		if tp := str(get(p, "targetPort")); tp != str(get(p, "name")) {
			t.Errorf("Service %s port %s targets %s", svc.name(), get(p, "name"), tp)
		}
	}
	return ports
}

// checkServices: the public Service (named like the Deployment) carries
// the websocket port only; <name>-internal, always a ClusterIP, carries
// metrics and the push API when it listens beyond loopback.
func checkServices(t *testing.T, objs []obj, name string, cfg wsgateConfig) {
	t.Helper()
	var public, internal obj
	for _, svc := range byKind(objs, "Service") {
		switch svc.name() {
		case name:
			public = svc
		case name + "-internal":
			internal = svc
		}
	}
	if public == nil || internal == nil {
		t.Fatalf("want Services %s and %s-internal", name, name)
	}
	pub := servicePorts(t, public)
	if len(pub) != 1 || pub["ws"] != listenPort(t, "listen", str(get(cfg.Parsed, "listen"))) {
		t.Errorf("public Service ports %v, want only ws on the listen port", pub)
	}
	if typ := str(get(internal, "spec", "type")); typ != "ClusterIP" {
		t.Errorf("internal Service type %q, want ClusterIP", typ)
	}
	in := servicePorts(t, internal)
	if in["metrics"] != listenPort(t, "metrics.listen", str(get(cfg.Parsed, "metrics", "listen"))) {
		t.Errorf("internal Service metrics port %d", in["metrics"])
	}
	if api := str(get(cfg.Parsed, "api", "listen")); api != "" && !strings.HasPrefix(api, "127.") {
		if in["api"] != listenPort(t, "api.listen", api) {
			t.Errorf("internal Service api port %d, want %s's", in["api"], api)
		}
	} else if _, has := in["api"]; has {
		t.Errorf("internal Service has an api port with api.listen %q", api)
	}
}

// sidecarApp copies the example app chart to a temporary directory with
// this chart unpacked as its dependency (what `helm dependency update`
// would do, without touching the tree).
func sidecarApp(t *testing.T) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "sidecar-app")
	copyTree(t, sidecarAppDir, dst, nil)
	copyTree(t, chartDir, filepath.Join(dst, "charts", "wsgate"), func(rel string) bool {
		return rel == "examples" || strings.HasPrefix(rel, "examples"+string(filepath.Separator))
	})
	return dst
}

func copyTree(t *testing.T, src, dst string, skip func(rel string) bool) {
	t.Helper()
	err := filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, path)
		if skip != nil && skip(rel) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			if d.Name() == "charts" && rel == "charts" {
				return filepath.SkipDir // a local `helm dependency update` result
			}
			return os.MkdirAll(target, 0o755)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// renderSidecarApp renders the example app chart with extra helm args and
// returns its objects, the app Deployment and the wsgate config.
func renderSidecarApp(t *testing.T, app string, args ...string) ([]obj, obj, wsgateConfig) {
	t.Helper()
	objs := parseObjects(t, mustHelm(t, append([]string{"template", "demo", app}, args...)...))
	return objs, one(t, objs, "Deployment"), renderedConfig(t, objs)
}

func TestChartSidecarApp(t *testing.T) {
	t.Parallel() // runs after the serial tests: see helm
	helm(t)
	app := sidecarApp(t)
	if out, err := runHelm(t, "lint", "--strict", app); err != nil || !strings.Contains(out, "0 chart(s) failed") {
		t.Fatalf("helm lint --strict of the example app chart:\n%v%s", err, out)
	}

	// The example as it is, then with ci/sidecar-values.yaml as its wsgate
	// values.
	ciValues := readYAMLFile(t, filepath.Join(chartDir, "ci", "sidecar-values.yaml"))
	wrapped, err := yaml.Marshal(map[string]any{"wsgate": ciValues})
	if err != nil {
		t.Fatal(err)
	}
	wrappedFile := filepath.Join(t.TempDir(), "wsgate-ci-values.yaml")
	if err := os.WriteFile(wrappedFile, wrapped, 0o644); err != nil {
		t.Fatal(err)
	}
	appValues := readYAMLFile(t, filepath.Join(sidecarAppDir, "values.yaml"))

	for _, tc := range []struct {
		name   string
		args   []string
		values map[string]any // the wsgate values in effect (for the checks)
	}{
		{"example", nil, get(appValues, "wsgate").(map[string]any)},
		{"ci-sidecar-values", []string{"-f", wrappedFile}, ciValues},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, dep, cfg := renderSidecarApp(t, app, tc.args...)
			for _, kind := range []string{"Service", "ServiceMonitor", "HorizontalPodAutoscaler", "PodDisruptionBudget"} {
				for _, o := range byKind(objs, kind) {
					if strings.Contains(o.name(), "wsgate") {
						t.Errorf("sidecar mode rendered wsgate's own %s %s", kind, o.name())
					}
				}
			}
			containers := list(get(dep, "spec", "template", "spec", "containers"))
			if len(containers) != 2 {
				t.Fatalf("app pod has %d containers, want the app and wsgate", len(containers))
			}
			pc := podChecks{cfg: cfg, existingSecret: str(tc.values["existingSecret"]), portPrefix: "wsgate-"}
			env := pc.checkPod(t, dep, "checksum/wsgate-config")
			checkSecretEnv(t, tc.values, env)

			// The app container and wsgate share the session volume.
			sessVol := str(get(tc.values, "sidecar", "sessionVolume", "name"))
			if sessVol == "" {
				sessVol = "php-sessions"
			}
			shared := false
			for _, m := range list(get(containers[0], "volumeMounts")) {
				if str(get(m, "name")) == sessVol {
					shared = true
				}
			}
			if str(get(containers[0], "name")) == "wsgate" || !shared {
				t.Errorf("the app container (first) does not mount the session volume %q", sessVol)
			}

			// Upstreams go to the app over loopback.
			appPort := toInt(t, "sidecar.appPort", get(tc.values, "sidecar", "appPort"))
			ups, _ := get(cfg.Parsed, "upstreams").(map[string]any)
			if len(ups) == 0 {
				t.Errorf("no upstreams in the sidecar config")
			}
			for name, u := range ups {
				if url := str(get(u, "url")); !strings.HasPrefix(url, fmt.Sprintf("http://127.0.0.1:%d/", appPort)) {
					t.Errorf("upstream %s url %q, want http://127.0.0.1:%d/...", name, url, appPort)
				}
			}
			configCheck(t, cfg, env)
		})
	}
}

// podChecksum renders and returns the config checksum annotation.
func podChecksum(t *testing.T, args ...string) string {
	t.Helper()
	objs := parseObjects(t, mustHelm(t, args...))
	dep := one(t, objs, "Deployment")
	ann, _ := get(dep, "spec", "template", "metadata", "annotations").(map[string]any)
	for k, v := range ann {
		if strings.HasPrefix(k, "checksum/") {
			return str(v)
		}
	}
	t.Fatalf("no checksum annotation")
	return ""
}

func TestChartConfigChecksum(t *testing.T) {
	t.Parallel() // runs after the serial tests: see helm
	helm(t)
	minimal := filepath.Join(chartDir, "ci", "standalone-minimal-values.yaml")
	base := []string{"template", "rel", chartDir, "-f", minimal}
	a := podChecksum(t, base...)
	if b := podChecksum(t, base...); a != b {
		t.Errorf("checksum not stable across renders: %s, %s", a, b)
	}
	if b := podChecksum(t, append(base, "--set", "config.limits.idle_timeout=10m")...); a == b {
		t.Errorf("checksum/config did not change with config.limits.idle_timeout")
	}
	if b := podChecksum(t, append(base, "--set", "upstreamBaseURL=http://other.example")...); a == b {
		t.Errorf("checksum/config did not change with the upstream base URL")
	}
	if b := podChecksum(t, append(base, "--set", "replicaCount=7")...); a != b {
		t.Errorf("checksum/config changed with replicaCount, which is not config")
	}

	app := sidecarApp(t)
	s := podChecksum(t, "template", "demo", app)
	if s2 := podChecksum(t, "template", "demo", app, "--set", "wsgate.config.log.level=debug"); s == s2 {
		t.Errorf("checksum/wsgate-config did not change with wsgate.config.log.level")
	}
}

func TestChartDrainGrace(t *testing.T) {
	t.Parallel() // runs after the serial tests: see helm
	helm(t)
	minimal := filepath.Join(chartDir, "ci", "standalone-minimal-values.yaml")
	for _, tc := range []struct {
		set  string
		want int // preStop 5 + drain + 10
	}{
		{"config.limits.drain_timeout=20s", 35},
		{"config.limits.drain_timeout=120", 135}, // integer seconds, as wsgate reads them
		{"config.limits.drain_timeout=1m30s", 105},
		{"config.limits.drain_timeout=1500ms", 17},
		{"drain.preStopSleepSeconds=0", 30},
	} {
		objs := parseObjects(t, mustHelm(t, "template", "rel", chartDir, "-f", minimal, "--set", tc.set))
		dep := one(t, objs, "Deployment")
		grace := toInt(t, "grace", get(dep, "spec", "template", "spec", "terminationGracePeriodSeconds"))
		if grace != tc.want {
			t.Errorf("--set %s: terminationGracePeriodSeconds %d, want %d", tc.set, grace, tc.want)
		}
		cfg := renderedConfig(t, objs)
		if grace < cfg.drainSeconds(t) {
			t.Errorf("--set %s: grace %d below drain %d", tc.set, grace, cfg.drainSeconds(t))
		}
	}
}

// TestChartRefusals: values that cannot work stop the render with a message.
func TestChartRefusals(t *testing.T) {
	t.Parallel() // runs after the serial tests: see helm
	helm(t)
	minimal := filepath.Join(chartDir, "ci", "standalone-minimal-values.yaml")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--set", "config.listen=127.0.0.1:8080"}, "is loopback"},
		{[]string{"--set", "config.metrics.listen="}, "at '/config/metrics/listen': '' does not match pattern"},
		{[]string{"--set", "sessionVolume=null"}, "missing property 'sessionVolume'"},
		{[]string{"--set", "existingSecret="}, "set existingSecret"},
		{[]string{"--set", "upstreamBaseURL="}, "set upstreamBaseURL"},
		{[]string{"--set", "upstreamSecrets.nosuch=key"}, "no upstream"},
		{[]string{"--set", "config.limits.drain_timeout=soon"}, "not a positive Go duration"},
		{[]string{"--set", "mode=daemonset"}, "value must be one of 'standalone', 'sidecar'"},
		{[]string{"--set", "mode=sidecar", "--set", "sidecar.appPort=8080"}, "also a wsgate listen port"},
	} {
		out, err := runHelm(t, append([]string{"template", "rel", chartDir, "-f", minimal}, tc.args...)...)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("helm template %v: want a failure saying %q, got err %v:\n%s", tc.args, tc.want, err, out)
		}
	}
}

func TestChartDashboard(t *testing.T) {
	t.Parallel() // runs after the serial tests: see helm
	raw, err := os.ReadFile(filepath.Join(chartDir, "files", "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string `json:"uid"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("dashboard JSON: %v", err)
	}
	// What the gateway exports, from metrics.New's collectors (the same
	// source as the alert rules' check, chart_rules_test.go).
	series := exportedSeries(t)
	used := map[string]bool{}
	nameRe := regexp.MustCompile(`\b(wsgate|go|process)_[a-z0-9_]+`)
	for _, p := range dash.Panels {
		if p.Type != "row" && len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			for _, name := range nameRe.FindAllString(tg.Expr, -1) {
				used[name] = true
				if series[name] == nil {
					t.Errorf("panel %q queries %s, which the gateway does not export", p.Title, name)
				}
			}
		}
	}
	// The areas the dashboard must show.
	for _, m := range []string{"wsgate_connections", "wsgate_handshakes_total", "wsgate_session_lookup_duration_seconds_bucket",
		"wsgate_messages_received_total", "wsgate_messages_sent_total", "wsgate_dropped_messages_total",
		"wsgate_rpc_duration_seconds_bucket", "wsgate_session_store_lookup_duration_seconds_bucket",
		"wsgate_session_revalidations_total", "wsgate_anonymous_handshakes_total", "wsgate_pushes_total", "go_goroutines", "process_resident_memory_bytes"} {
		if !used[m] {
			t.Errorf("the dashboard does not query %s", m)
		}
	}
	unused := map[string]bool{}
	for n := range series {
		base := n
		if series[n]["le"] || strings.HasSuffix(n, "_sum") || strings.HasSuffix(n, "_count") && series[strings.TrimSuffix(n, "_count")+"_sum"] != nil {
			base = strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(n, "_bucket"), "_sum"), "_count")
		}
		if strings.HasPrefix(n, "wsgate_") && !used[base] && !used[base+"_bucket"] && !used[base+"_count"] && !used[base+"_sum"] {
			unused[base] = true
		}
	}
	var names []string
	for n := range unused {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) > 0 {
		t.Logf("metrics without a dashboard panel (not an error): %v", names)
	}

	// Shipped in the chart, as is, when enabled.
	helm(t)
	full := filepath.Join(chartDir, "ci", "standalone-full-values.yaml")
	objs := parseObjects(t, mustHelm(t, "template", "rel", chartDir, "-f", full))
	var shipped string
	for _, cm := range byKind(objs, "ConfigMap") {
		if s, ok := get(cm, "data", "wsgate.json").(string); ok {
			shipped = s
			if str(get(cm, "metadata", "labels", "grafana_dashboard")) != "1" {
				t.Errorf("dashboard ConfigMap lacks the grafana_dashboard label")
			}
		}
	}
	if strings.TrimSpace(shipped) != strings.TrimSpace(string(raw)) {
		t.Errorf("the dashboard ConfigMap does not hold files/grafana-dashboard.json")
	}
}

// TestChartAppVersion: the image tag the sidecar helpers default to is the
// chart's appVersion.
func TestChartAppVersion(t *testing.T) {
	chart := readYAMLFile(t, filepath.Join(chartDir, "Chart.yaml"))
	tpl, err := os.ReadFile(filepath.Join(chartDir, "templates", "_helpers.tpl"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`define "wsgate.appVersion" -}}([^{]*){{`).FindSubmatch(tpl)
	if m == nil {
		t.Fatal(`no define "wsgate.appVersion" in _helpers.tpl`)
	}
	if got, want := string(m[1]), str(chart["appVersion"]); got != want {
		t.Errorf(`_helpers.tpl wsgate.appVersion %q, Chart.yaml appVersion %q`, got, want)
	}
}
