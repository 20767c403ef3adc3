{{/*
Most helpers take a context dict: (dict "top" $ "values" <wsgate values>).
In this chart values is .Values; in an app chart that depends on this one
(sidecar mode) it is .Values.wsgate, the app chart's copy with this chart's
defaults merged in. So names never depend on .Chart: they come out the same
in both charts.
*/}}

{{/* Image tag used when image.tag is empty; keep equal to Chart.yaml appVersion. */}}
{{- define "wsgate.appVersion" -}}0.1.0{{- end -}}

{{- define "wsgate.name" -}}
{{- default "wsgate" .values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "wsgate.fullname" -}}
{{- if .values.fullnameOverride -}}
{{- .values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "wsgate.name" . -}}
{{- if contains $name .top.Release.Name -}}
{{- .top.Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .top.Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "wsgate.selectorLabels" -}}
app.kubernetes.io/name: {{ include "wsgate.name" . }}
app.kubernetes.io/instance: {{ .top.Release.Name }}
{{- end -}}

{{- define "wsgate.labels" -}}
helm.sh/chart: wsgate
{{ include "wsgate.selectorLabels" . }}
app.kubernetes.io/version: {{ include "wsgate.imageTag" . | quote }}
app.kubernetes.io/managed-by: {{ .top.Release.Service }}
app.kubernetes.io/component: websocket-gateway
{{- end -}}

{{- define "wsgate.imageTag" -}}
{{- .values.image.tag | default (include "wsgate.appVersion" .) -}}
{{- end -}}

{{- define "wsgate.sidecarMode" -}}
{{- if eq (toString .values.mode) "sidecar" -}}true{{- else if eq (toString .values.mode) "standalone" -}}{{- else -}}
{{- fail (printf "mode: %q: must be standalone or sidecar" (toString .values.mode)) -}}
{{- end -}}
{{- end -}}

{{/* Names of ports and volumes: prefixed in sidecar mode, where they share the app's pod. */}}
{{- define "wsgate.portPrefix" -}}
{{- if include "wsgate.sidecarMode" . -}}wsgate-{{- end -}}
{{- end -}}

{{/* The port of a host:port listen value (. is the value, non-empty). */}}
{{- define "wsgate.listenPort" -}}
{{- $port := regexFind "[0-9]+$" (toString .) -}}
{{- if not $port -}}{{- fail (printf "listen address %q has no port" (toString .)) -}}{{- end -}}
{{- $port -}}
{{- end -}}

{{- define "wsgate.listenIsLoopback" -}}
{{- $host := regexReplaceAll ":[0-9]+$" (toString .) "" | trimPrefix "[" | trimSuffix "]" -}}
{{- if or (eq $host "localhost") (hasPrefix "127." $host) (eq $host "::1") -}}true{{- end -}}
{{- end -}}

{{/* Ports read from the config; listen and metrics.listen are required and not loopback. */}}
{{- define "wsgate.wsPort" -}}
{{- $l := dig "listen" "" (default dict .values.config) -}}
{{- if not $l -}}{{- fail "config.listen must be set (e.g. \"0.0.0.0:8080\")" -}}{{- end -}}
{{- if include "wsgate.listenIsLoopback" $l -}}{{- fail (printf "config.listen %q is loopback: nothing outside the container could connect; use 0.0.0.0:<port>" $l) -}}{{- end -}}
{{- include "wsgate.listenPort" $l -}}
{{- end -}}

{{- define "wsgate.metricsPort" -}}
{{- $l := dig "metrics" "listen" "" (default dict .values.config) -}}
{{- if not $l -}}{{- fail "config.metrics.listen must be set: the probes use /healthz and /readyz there" -}}{{- end -}}
{{- if include "wsgate.listenIsLoopback" $l -}}{{- fail (printf "config.metrics.listen %q is loopback: the kubelet's probes and Prometheus could not reach it; use 0.0.0.0:<port>" $l) -}}{{- end -}}
{{- include "wsgate.listenPort" $l -}}
{{- end -}}

{{/* Empty when the push API is off. */}}
{{- define "wsgate.apiPort" -}}
{{- $l := dig "api" "listen" "" (default dict .values.config) -}}
{{- if $l -}}{{- include "wsgate.listenPort" $l -}}{{- end -}}
{{- end -}}

{{- define "wsgate.apiLoopback" -}}
{{- $l := dig "api" "listen" "" (default dict .values.config) -}}
{{- if $l -}}{{- include "wsgate.listenIsLoopback" $l -}}{{- end -}}
{{- end -}}

{{- define "wsgate.sessionStore" -}}
{{- dig "session" "store" "files" (default dict .values.config) -}}
{{- end -}}

{{- define "wsgate.sessionFilesPath" -}}
{{- dig "session" "files" "path" "/var/lib/php/sessions" (default dict .values.config) -}}
{{- end -}}

{{- define "wsgate.upstreamSecretEnv" -}}
{{- printf "UPSTREAM_%s_SECRET" (upper (regexReplaceAll "[^A-Za-z0-9]" (toString .) "_")) -}}
{{- end -}}

{{/*
The wsgate config file: .values.config with the chart's two additions:
upstreamSecrets set upstreams.<name>.secret_env, and relative URLs of
upstreams and events are joined to the app's address.
*/}}
{{- define "wsgate.config" -}}
{{- $v := .values -}}
{{- $cfg := deepCopy (default dict $v.config) -}}
{{- $ups := default dict $cfg.upstreams -}}
{{- range $name, $key := default dict $v.upstreamSecrets -}}
{{- $u := get $ups $name -}}
{{- if not (kindIs "map" $u) -}}
{{- fail (printf "upstreamSecrets.%s: config.upstreams has no upstream %q to give the secret to" $name $name) -}}
{{- end -}}
{{- $_ := set $u "secret_env" (include "wsgate.upstreamSecretEnv" $name) -}}
{{- $_ := unset $u "secret" -}}
{{- end -}}
{{- $base := "" -}}
{{- if include "wsgate.sidecarMode" . -}}
{{- $base = printf "http://127.0.0.1:%d" (int $v.sidecar.appPort) -}}
{{- else -}}
{{- $base = trimSuffix "/" (toString (default "" $v.upstreamBaseURL)) -}}
{{- end -}}
{{- range $name, $u := $ups -}}
{{- if and (kindIs "map" $u) (kindIs "string" $u.url) (hasPrefix "/" $u.url) -}}
{{- if not $base -}}
{{- fail (printf "config.upstreams.%s.url %q is relative: set upstreamBaseURL (standalone mode) to the PHP app's address" $name $u.url) -}}
{{- end -}}
{{- $_ := set $u "url" (printf "%s%s" $base $u.url) -}}
{{- end -}}
{{- end -}}
{{- if $ups -}}
{{- $_ := set $cfg "upstreams" $ups -}}
{{- end -}}
{{- $ev := $cfg.events -}}
{{- if and (kindIs "map" $ev) (kindIs "string" $ev.url) (hasPrefix "/" $ev.url) -}}
{{- if not $base -}}
{{- fail (printf "config.events.url %q is relative: set upstreamBaseURL (standalone mode) to the PHP app's address" $ev.url) -}}
{{- end -}}
{{- $_ := set $ev "url" (printf "%s%s" $base $ev.url) -}}
{{- end -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* limits.drain_timeout in whole seconds (rounded up): a Go duration string or an integer of seconds, as wsgate reads it. */}}
{{- define "wsgate.drainSeconds" -}}
{{- $d := dig "limits" "drain_timeout" "20s" (default dict .values.config) -}}
{{- if kindIs "string" $d -}}
{{- if not (regexMatch "^([0-9]+(\\.[0-9]*)?(ns|us|µs|ms|s|m|h))+$" $d) -}}
{{- fail (printf "config.limits.drain_timeout %q: not a positive Go duration such as \"30s\"" $d) -}}
{{- end -}}
{{- $t0 := toDate "2006-01-02T15:04:05Z07:00" "1970-01-01T00:00:00Z" -}}
{{- $t1 := mustDateModify (printf "+%s" $d) $t0 -}}
{{- $secs := sub (unixEpoch $t1) (unixEpoch $t0) -}}
{{- if ne (date ".000000000" $t1) ".000000000" -}}{{- $secs = add1 $secs -}}{{- end -}}
{{- $secs -}}
{{- else -}}
{{- int64 $d -}}
{{- end -}}
{{- end -}}

{{- define "wsgate.preStopSeconds" -}}
{{- int (default 0 .values.drain.preStopSleepSeconds) -}}
{{- end -}}

{{/* preStop sleep + drain + margin: the kubelet's SIGKILL never cuts the drain short. */}}
{{- define "wsgate.terminationGracePeriodSeconds" -}}
{{- add (include "wsgate.drainSeconds" . | int64) (include "wsgate.preStopSeconds" . | int64) (int64 (default 0 .values.drain.extraGraceSeconds)) -}}
{{- end -}}

{{- define "wsgate.checksum" -}}
{{- include "wsgate.config" . | sha256sum -}}
{{- end -}}

{{/* The Secret the container's secretKeyRefs read: existingSecret, else the chart's own (secret.create). */}}
{{- define "wsgate.secretName" -}}
{{- if .values.existingSecret -}}
{{- .values.existingSecret -}}
{{- else if and .values.secret .values.secret.create -}}
{{- include "wsgate.fullname" . -}}
{{- end -}}
{{- end -}}

{{/*
checksum/secret: the sha256 of the data of the Secret the pod reads, so a
changed secret rolls the pods on the next install/upgrade. The chart's own
Secret (secret.create) is hashed from the values; an existingSecret is read
from the cluster with lookup when secretChecksum.lookup is true (helm
install/upgrade only: helm template, lint and GitOps renderers without
cluster access get an empty lookup, and then no annotation is rendered).
Empty when there is nothing to hash.
*/}}
{{- define "wsgate.secretChecksum" -}}
{{- $v := .values -}}
{{- if $v.existingSecret -}}
{{- if and $v.secretChecksum $v.secretChecksum.lookup -}}
{{- $s := lookup "v1" "Secret" .top.Release.Namespace (toString $v.existingSecret) -}}
{{- if $s -}}
{{- toJson (default dict $s.data) | sha256sum -}}
{{- end -}}
{{- end -}}
{{- else if and $v.secret $v.secret.create -}}
{{- toJson (default dict $v.secret.data) | sha256sum -}}
{{- end -}}
{{- end -}}

{{- define "wsgate.env" -}}
{{- $v := .values -}}
{{- $secretEnv := default dict $v.secretEnv -}}
{{- $upSecrets := default dict $v.upstreamSecrets -}}
{{- $secretName := include "wsgate.secretName" . -}}
{{- if and (or $secretEnv $upSecrets) (not $secretName) -}}
{{- fail "secretEnv and upstreamSecrets read existingSecret: set existingSecret to the Secret's name (or secret.create: true with secret.data)" -}}
{{- end -}}
{{- range $path, $key := $secretEnv }}
- name: {{ printf "WSGATE_%s" (upper (replace "." "_" $path)) }}
  valueFrom:
    secretKeyRef:
      name: {{ $secretName }}
      key: {{ $key }}
{{- end }}
{{- range $name, $key := $upSecrets }}
- name: {{ include "wsgate.upstreamSecretEnv" $name }}
  valueFrom:
    secretKeyRef:
      name: {{ $secretName }}
      key: {{ $key }}
{{- end }}
{{- with $v.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "wsgate.preStop" -}}
{{- $v := .values -}}
{{- if $v.drain.preStopCommand -}}
exec:
  command:
    {{- toYaml $v.drain.preStopCommand | nindent 4 }}
{{- else if gt (include "wsgate.preStopSeconds" . | int) 0 -}}
sleep:
  seconds: {{ include "wsgate.preStopSeconds" . }}
{{- end -}}
{{- end -}}

{{/* The wsgate container, one list item; used by the Deployment and by wsgate.sidecar.container. */}}
{{- define "wsgate.container" -}}
{{- $v := .values -}}
{{- $p := include "wsgate.portPrefix" . -}}
{{- $apiPort := include "wsgate.apiPort" . -}}
- name: wsgate
  image: "{{ $v.image.repository }}:{{ include "wsgate.imageTag" . }}"
  imagePullPolicy: {{ $v.image.pullPolicy }}
  args: ["serve", "--config", "/etc/wsgate/wsgate.yaml"]
  ports:
    - name: {{ $p }}ws
      containerPort: {{ include "wsgate.wsPort" . }}
      protocol: TCP
    - name: {{ $p }}metrics
      containerPort: {{ include "wsgate.metricsPort" . }}
      protocol: TCP
    {{- if $apiPort }}
    - name: {{ $p }}api
      containerPort: {{ $apiPort }}
      protocol: TCP
    {{- end }}
  {{- $env := include "wsgate.env" . | trim }}
  {{- if $env }}
  env:
    {{- $env | nindent 4 }}
  {{- end }}
  {{- with $v.extraEnvFrom }}
  envFrom:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  startupProbe:
    httpGet:
      path: /healthz
      port: {{ $p }}metrics
    {{- toYaml $v.startupProbe | nindent 4 }}
  livenessProbe:
    httpGet:
      path: /healthz
      port: {{ $p }}metrics
    {{- toYaml $v.livenessProbe | nindent 4 }}
  readinessProbe:
    httpGet:
      path: /readyz
      port: {{ $p }}metrics
    {{- toYaml $v.readinessProbe | nindent 4 }}
  {{- $preStop := include "wsgate.preStop" . }}
  {{- if $preStop }}
  lifecycle:
    preStop:
      {{- $preStop | nindent 6 }}
  {{- end }}
  {{- with $v.resources }}
  resources:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  securityContext:
    {{- toYaml $v.containerSecurityContext | nindent 4 }}
  volumeMounts:
    - name: wsgate-config
      mountPath: /etc/wsgate
      readOnly: true
    - name: wsgate-tmp
      mountPath: /tmp
    {{- if eq (include "wsgate.sessionStore" .) "files" }}
    - name: {{ include "wsgate.sessionVolumeName" . }}
      mountPath: {{ include "wsgate.sessionFilesPath" . }}
      readOnly: true
    {{- end }}
    {{- with $v.extraVolumeMounts }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}

{{- define "wsgate.sessionVolumeName" -}}
{{- if include "wsgate.sidecarMode" . -}}
{{- .values.sidecar.sessionVolume.name -}}
{{- else -}}
php-sessions
{{- end -}}
{{- end -}}

{{/* The pod volumes the container needs, list items. */}}
{{- define "wsgate.volumes" -}}
{{- $v := .values -}}
- name: wsgate-config
  configMap:
    name: {{ include "wsgate.fullname" . }}
- name: wsgate-tmp
  emptyDir:
    sizeLimit: 64Mi
{{- if eq (include "wsgate.sessionStore" .) "files" }}
{{- if include "wsgate.sidecarMode" . }}
{{- if $v.sidecar.sessionVolume.create }}
- name: {{ $v.sidecar.sessionVolume.name }}
  emptyDir: {}
{{- end }}
{{- else }}
{{- /* helm lint does not stop at fail (it logs it and renders on), so
the volume is only written in the else branch: lint then still sees valid
YAML, and values.schema.json reports the missing sessionVolume. */}}
{{- if not $v.sessionVolume }}
{{- fail "session.store is files: set sessionVolume to the volume holding the PHP session files, shared with the PHP pods (e.g. persistentVolumeClaim: {claimName: php-sessions}), or run wsgate as a sidecar (mode: sidecar)" }}
{{- else }}
- name: php-sessions
  {{- toYaml $v.sessionVolume | nindent 2 }}
{{- end }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Sidecar mode checks, run by the ConfigMap and by every sidecar helper. */}}
{{- define "wsgate.sidecarChecks" -}}
{{- if include "wsgate.sidecarMode" . -}}
{{- $app := int .values.sidecar.appPort -}}
{{- range $port := list (include "wsgate.wsPort" .) (include "wsgate.metricsPort" .) (include "wsgate.apiPort" .) -}}
{{- if and $port (eq (int $port) $app) -}}
{{- fail (printf "sidecar.appPort %d is also a wsgate listen port: they share the pod's network namespace" $app) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Sidecar API for the PHP app's chart (see examples/sidecar-app and
docs/kubernetes.md). Each takes (dict "top" $) — the wsgate values are then
$.Values.wsgate — or (dict "top" $ "values" $.Values.<alias>) when the
dependency has an alias.
*/}}
{{- define "wsgate.sidecar.ctx" -}}
{{- $values := .values | default (index .top.Values "wsgate") -}}
{{- if not $values -}}{{- fail "wsgate.sidecar.*: no wsgate values: pass (dict \"top\" $ \"values\" .Values.<alias>)" -}}{{- end -}}
{{- if ne (toString $values.mode) "sidecar" -}}{{- fail "wsgate.sidecar.*: set wsgate.mode: sidecar in the app chart's values" -}}{{- end -}}
{{- end -}}

{{/* The wsgate container: one list item for the pod's containers. */}}
{{- define "wsgate.sidecar.container" -}}
{{- include "wsgate.sidecar.ctx" . -}}
{{- $ctx := dict "top" .top "values" (.values | default (index .top.Values "wsgate")) -}}
{{- include "wsgate.sidecarChecks" $ctx -}}
{{- include "wsgate.container" $ctx -}}
{{- end -}}

{{/* The volumes it needs: list items for the pod's volumes. */}}
{{- define "wsgate.sidecar.volumes" -}}
{{- include "wsgate.sidecar.ctx" . -}}
{{- include "wsgate.volumes" (dict "top" .top "values" (.values | default (index .top.Values "wsgate"))) -}}
{{- end -}}

{{/* Pod annotations: checksum/wsgate-config rolls the pod when the wsgate config changes, checksum/wsgate-secret when its Secret does (see wsgate.secretChecksum). */}}
{{- define "wsgate.sidecar.podAnnotations" -}}
{{- include "wsgate.sidecar.ctx" . -}}
{{- $ctx := dict "top" .top "values" (.values | default (index .top.Values "wsgate")) -}}
checksum/wsgate-config: {{ include "wsgate.checksum" $ctx }}
{{- with include "wsgate.secretChecksum" $ctx }}
checksum/wsgate-secret: {{ . }}
{{- end }}
{{- end -}}

{{/* The pod's terminationGracePeriodSeconds for wsgate's drain (take the max with the app's own). */}}
{{- define "wsgate.sidecar.terminationGracePeriodSeconds" -}}
{{- include "wsgate.sidecar.ctx" . -}}
{{- include "wsgate.terminationGracePeriodSeconds" (dict "top" .top "values" (.values | default (index .top.Values "wsgate"))) -}}
{{- end -}}

{{/* Seconds the PHP container must keep serving after SIGTERM (its own preStop sleep), so upstream calls of draining clients still get answers. */}}
{{- define "wsgate.sidecar.drainSeconds" -}}
{{- include "wsgate.sidecar.ctx" . -}}
{{- $ctx := dict "top" .top "values" (.values | default (index .top.Values "wsgate")) -}}
{{- add (include "wsgate.drainSeconds" $ctx | int64) (include "wsgate.preStopSeconds" $ctx | int64) -}}
{{- end -}}

{{- define "wsgate.sidecar.configMapName" -}}
{{- include "wsgate.sidecar.ctx" . -}}
{{- include "wsgate.fullname" (dict "top" .top "values" (.values | default (index .top.Values "wsgate"))) -}}
{{- end -}}
