package test

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// What cluster operators expect of the chart beyond rendering: the
// Ingress, the split of public and internal Services, pods that roll when
// their Secret changes, values that fail with a clear message, and the
// packaged chart installing like the source one.

func minimalArgs(extra ...string) []string {
	return append([]string{"template", "rel", chartDir, "-f", filepath.Join(chartDir, "ci", "standalone-minimal-values.yaml")}, extra...)
}

func TestChartIngress(t *testing.T) {
	t.Parallel() // runs after the serial tests: see helm
	helm(t)
	if objs := parseObjects(t, mustHelm(t, minimalArgs()...)); len(byKind(objs, "Ingress")) != 0 {
		t.Errorf("Ingress rendered by default")
	}
	host := []string{"--set", "ingress.enabled=true", "--set", "ingress.hosts[0].host=ws.example.com", "--set", "ingress.className=edge"}
	for _, tc := range []struct {
		preset string
		want   map[string]string
	}{
		{"nginx", map[string]string{
			"nginx.ingress.kubernetes.io/proxy-read-timeout": "3600",
			"nginx.ingress.kubernetes.io/proxy-send-timeout": "3600",
			"nginx.ingress.kubernetes.io/proxy-buffering":    "off",
		}},
		{"haproxy", map[string]string{"haproxy.org/timeout-tunnel": "3600s"}},
		{"traefik", map[string]string{}},
		{"", map[string]string{}},
	} {
		t.Run("preset-"+tc.preset, func(t *testing.T) {
			objs := parseObjects(t, mustHelm(t, minimalArgs(append(host, "--set", "ingress.preset="+tc.preset)...)...))
			ing := one(t, objs, "Ingress")
			ann, _ := get(ing, "metadata", "annotations").(map[string]any)
			if len(ann) != len(tc.want) {
				t.Errorf("annotations %v, want %v", ann, tc.want)
			}
			for k, v := range tc.want {
				if str(ann[k]) != v {
					t.Errorf("annotation %s = %q, want %q", k, ann[k], v)
				}
			}
			if got := str(get(ing, "spec", "ingressClassName")); got != "edge" {
				t.Errorf("ingressClassName %q", got)
			}
			rule := get(ing, "spec", "rules", "0")
			if str(get(rule, "host")) != "ws.example.com" {
				t.Errorf("rule host %v", get(rule, "host"))
			}
			path := get(rule, "http", "paths", "0")
			if str(get(path, "path")) != "/" || str(get(path, "pathType")) != "Prefix" {
				t.Errorf("default path %v", path)
			}
			dep := one(t, objs, "Deployment")
			if got := str(get(path, "backend", "service", "name")); got != dep.name() {
				t.Errorf("backend Service %q, want the public one %q", got, dep.name())
			}
			if got := str(get(path, "backend", "service", "port", "name")); got != "ws" {
				t.Errorf("backend port %q, want ws", got)
			}
		})
	}
	// The operator's annotations win over the preset's.
	objs := parseObjects(t, mustHelm(t, minimalArgs(append(host, "--set", "ingress.preset=nginx", "--set", "ingress.timeoutSeconds=900",
		"--set-string", `ingress.annotations.nginx\.ingress\.kubernetes\.io/proxy-send-timeout=120`)...)...))
	ann, _ := get(one(t, objs, "Ingress"), "metadata", "annotations").(map[string]any)
	if str(ann["nginx.ingress.kubernetes.io/proxy-read-timeout"]) != "900" || str(ann["nginx.ingress.kubernetes.io/proxy-send-timeout"]) != "120" {
		t.Errorf("annotations %v: want read 900 (timeoutSeconds) and send 120 (annotations)", ann)
	}
	// Enabled without a host is refused.
	if out, err := runHelm(t, minimalArgs("--set", "ingress.enabled=true")...); err == nil || !strings.Contains(out, "set ingress.hosts") {
		t.Errorf("ingress without hosts: want a failure saying so, got %v\n%s", err, out)
	}
}

// TestChartPublicService: a LoadBalancer publishes the websocket port
// only; metrics and the push API stay on the internal ClusterIP Service,
// which the ServiceMonitor scrapes.
func TestChartPublicService(t *testing.T) {
	t.Parallel() // runs after the serial tests: see helm
	helm(t)
	full := filepath.Join(chartDir, "ci", "standalone-full-values.yaml") // api.listen 0.0.0.0:9091
	objs := parseObjects(t, mustHelm(t, "template", "rel", chartDir, "-f", full,
		"--set", "service.type=LoadBalancer", "--set", "service.externalTrafficPolicy=Local",
		"--set", "service.loadBalancerSourceRanges[0]=203.0.113.0/24"))
	cfg := renderedConfig(t, objs)
	checkServices(t, objs, "rel-wsgate", cfg)
	for _, svc := range byKind(objs, "Service") {
		ports := servicePorts(t, svc)
		switch svc.name() {
		case "rel-wsgate":
			if str(get(svc, "spec", "type")) != "LoadBalancer" || str(get(svc, "spec", "externalTrafficPolicy")) != "Local" {
				t.Errorf("public Service spec %v", get(svc, "spec"))
			}
			if len(ports) != 1 || ports["ws"] == 0 {
				t.Errorf("LoadBalancer publishes %v, want ws only", ports)
			}
		case "rel-wsgate-internal":
			if ports["api"] != 9091 || ports["metrics"] == 0 {
				t.Errorf("internal Service ports %v, want metrics and api 9091", ports)
			}
		}
	}
	sm := one(t, objs, "ServiceMonitor")
	if got := str(get(sm, "spec", "selector", "matchLabels", "wsgate/service")); got != "internal" {
		t.Errorf("ServiceMonitor selects wsgate/service=%q, want internal (the Service with the metrics port)", got)
	}
	var internal obj
	for _, svc := range byKind(objs, "Service") {
		if svc.name() == "rel-wsgate-internal" {
			internal = svc
		}
	}
	for k, v := range get(sm, "spec", "selector", "matchLabels").(map[string]any) {
		if str(get(internal, "metadata", "labels", k)) != str(v) {
			t.Errorf("ServiceMonitor selector %s=%v does not match the internal Service", k, v)
		}
	}
}

// TestChartSecretChecksum: the chart's own Secret rolls the pods through
// checksum/secret; an existingSecret has no cluster to be read from under
// helm template (lookup is empty), so no checksum, and podAnnotations is
// the hook for a secret manager's version.
func TestChartSecretChecksum(t *testing.T) {
	t.Parallel() // runs after the serial tests: see helm
	helm(t)
	own := []string{"template", "rel", chartDir, "--set", "existingSecret=", "--set", "secret.create=true",
		"--set", "secretEnv.api\\.token=api-token", "--set", "config.api.listen=0.0.0.0:9091"}
	render := func(args ...string) (obj, []obj) {
		objs := parseObjects(t, mustHelm(t, args...))
		return one(t, objs, "Deployment"), objs
	}
	sum := func(dep obj) string {
		return str(get(dep, "spec", "template", "metadata", "annotations", "checksum/secret"))
	}
	depA, objs := render(append(own, "--set", "secret.data.api-token=0123456789abcdef-one")...)
	sec := one(t, objs, "Secret")
	if got := str(get(sec, "stringData", "api-token")); got != "0123456789abcdef-one" {
		t.Errorf("Secret stringData api-token %q", got)
	}
	a := sum(depA)
	if !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(a) {
		t.Fatalf("checksum/secret %q, want a sha256", a)
	}
	env := list(get(depA, "spec", "template", "spec", "containers", "0", "env"))
	if len(env) != 1 || str(get(env[0], "valueFrom", "secretKeyRef", "name")) != sec.name() {
		t.Errorf("env %v: want WSGATE_API_TOKEN from the chart's Secret %s", env, sec.name())
	}
	depB, _ := render(append(own, "--set", "secret.data.api-token=0123456789abcdef-two")...)
	if b := sum(depB); b == a || b == "" {
		t.Errorf("checksum/secret %q did not change with the secret's value (was %q)", b, a)
	}
	depC, _ := render(append(own, "--set", "secret.data.api-token=0123456789abcdef-one")...)
	if c := sum(depC); c != a {
		t.Errorf("checksum/secret not stable: %q then %q", a, c)
	}

	// existingSecret: no Secret of the chart's; the lookup finds nothing
	// without a cluster, so no annotation; podAnnotations passes through.
	objs = parseObjects(t, mustHelm(t, minimalArgs("--set-string", "podAnnotations.wsgate/secret-version=42")...))
	if n := len(byKind(objs, "Secret")); n != 0 {
		t.Errorf("%d Secrets rendered with existingSecret", n)
	}
	ann := get(one(t, objs, "Deployment"), "spec", "template", "metadata", "annotations").(map[string]any)
	if _, has := ann["checksum/secret"]; has {
		t.Errorf("checksum/secret rendered without a cluster to read existingSecret from: %v", ann)
	}
	if str(ann["wsgate/secret-version"]) != "42" {
		t.Errorf("podAnnotations not on the pod: %v", ann)
	}

	// Sidecar: the app chart's pod gets checksum/wsgate-secret from
	// wsgate.sidecar.podAnnotations, and the Secret comes from this chart.
	app := sidecarApp(t)
	sidecarSum := func(value string) (string, []obj) {
		objs, dep, _ := renderSidecarApp(t, app, "--set", "wsgate.existingSecret=", "--set", "wsgate.secret.create=true",
			"--set", "wsgate.secret.data.wsgate-upstream-secret="+value)
		refs := 0
		for _, c := range list(get(dep, "spec", "template", "spec", "containers")) {
			for _, e := range list(get(c, "env")) {
				if ref := get(e, "valueFrom", "secretKeyRef", "name"); ref != nil {
					refs++
					if str(ref) != "demo-wsgate" {
						t.Errorf("env %v reads Secret %v, want demo-wsgate", get(e, "name"), ref)
					}
				}
			}
		}
		if refs == 0 {
			t.Errorf("no secretKeyRef in the sidecar pod")
		}
		return str(get(dep, "spec", "template", "metadata", "annotations", "checksum/wsgate-secret")), objs
	}
	s1, objs := sidecarSum("0123456789abcdef-one")
	sec = one(t, objs, "Secret")
	if sec.name() != "demo-wsgate" {
		t.Errorf("sidecar Secret %q, want demo-wsgate (the name the container's secretKeyRef uses)", sec.name())
	}
	if s2, _ := sidecarSum("0123456789abcdef-two"); !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(s1) || s1 == s2 {
		t.Errorf("checksum/wsgate-secret %q then %q: want a sha256 that changes with the secret", s1, s2)
	}
}

// TestChartSchema: bad values fail lint (and install) with a message that
// names the value and what is allowed.
func TestChartSchema(t *testing.T) {
	t.Parallel() // runs after the serial tests: see helm
	helm(t)
	for _, tc := range []struct {
		set  []string
		want string
	}{
		{[]string{"mode=daemonset"}, "at '/mode': value must be one of 'standalone', 'sidecar'"},
		{[]string{"service.type=Ingress"}, "at '/service/type': value must be one of 'ClusterIP', 'NodePort', 'LoadBalancer'"},
		{[]string{"replicas=3"}, "additional properties 'replicas' not allowed"},
		{[]string{"ingress.preset=istio"}, "at '/ingress/preset': value must be one of '', 'nginx', 'traefik', 'haproxy'"},
		{[]string{"config.listen=8080"}, "at '/config/listen': got number, want string"},
		{[]string{"config.listen=everywhere"}, "at '/config/listen': 'everywhere' does not match pattern"},
		{[]string{"replicaCount=-1"}, "at '/replicaCount': minimum: got -1, want 0"},
		{[]string{"sessionVolume=null"}, "missing property 'sessionVolume'"},
		{[]string{"sidecar.appPort=70000"}, "at '/sidecar/appPort': maximum: got 70,000, want 65,535"},
	} {
		args := []string{"lint", "--strict", chartDir}
		for _, s := range tc.set {
			args = append(args, "--set", s)
		}
		out, err := runHelm(t, args...)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("helm lint --set %v: want a failure saying %q, got err %v:\n%s", tc.set, tc.want, err, out)
		}
	}
	// What the schema refuses is refused by helm template (install) too.
	if out, err := runHelm(t, "template", "rel", chartDir, "--set", "mode=daemonset"); err == nil || !strings.Contains(out, "value must be one of 'standalone', 'sidecar'") {
		t.Errorf("helm template with a bad mode: err %v\n%s", err, out)
	}
}

// TestChartPackage: `helm package` (what `make chart-package` leaves in
// bin/charts) holds the schema and lints and renders like the source.
func TestChartPackage(t *testing.T) {
	t.Parallel() // runs after the serial tests: see helm
	helm(t)
	dir := t.TempDir()
	out := mustHelm(t, "package", chartDir, "--destination", dir)
	chart := readYAMLFile(t, filepath.Join(chartDir, "Chart.yaml"))
	tgz := filepath.Join(dir, "wsgate-"+str(chart["version"])+".tgz")
	if _, err := os.Stat(tgz); err != nil {
		t.Fatalf("helm package: %v\n%s", err, out)
	}
	if out, err := runHelm(t, "lint", "--strict", tgz); err != nil || !strings.Contains(out, "0 chart(s) failed") {
		t.Errorf("helm lint --strict %s: %v\n%s", filepath.Base(tgz), err, out)
	}
	src := mustHelm(t, "template", "rel", chartDir)
	if pkg := mustHelm(t, "template", "rel", tgz); pkg != src {
		t.Errorf("the packaged chart renders differently from charts/wsgate")
	}
	if out, err := runHelm(t, "template", "rel", tgz, "--set", "mode=daemonset"); err == nil || !strings.Contains(out, "value must be one of") {
		t.Errorf("the packaged chart does not carry values.schema.json: %v\n%s", err, out)
	}
	files := mustHelm(t, "show", "chart", tgz)
	if !strings.Contains(files, "name: wsgate") {
		t.Errorf("helm show chart: %s", files)
	}
}
