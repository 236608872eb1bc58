{{/* The release's resource name. */}}
{{- define "jwtgate.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "jwtgate.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* The labels that select the pods. */}}
{{- define "jwtgate.selector" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* jwtgate's config: values.config with the listeners (and their TLS), drain and grace the chart owns. */}}
{{- define "jwtgate.config" -}}
{{- $owned := dict
  "listen" (dict
    "grpc" (printf "0.0.0.0:%v" .Values.ports.grpc)
    "http" (printf "0.0.0.0:%v" .Values.ports.http)
    "admin" (printf "0.0.0.0:%v" .Values.ports.admin))
  "shutdown_drain" (printf "%vs" .Values.shutdownDrainSeconds)
  "shutdown_grace" (printf "%vs" .Values.shutdownGraceSeconds) -}}
{{- if .Values.ports.introspection -}}
{{- $_ := set $owned.listen "introspection" (printf "0.0.0.0:%v" .Values.ports.introspection) -}}
{{- end -}}
{{- if .Values.tls.existingSecret -}}
{{- range .Values.tls.listeners -}}
{{- $files := dict "cert" "/tls/tls.crt" "key" "/tls/tls.key" -}}
{{- if and $.Values.tls.clientAuth (ne . "http") -}}
{{- $_ := set $files "client_ca" "/tls/ca.crt" -}}
{{- end -}}
{{- $_ := set $owned.listen (printf "%s_tls" .) $files -}}
{{- end -}}
{{- end -}}
{{- $revocation := deepCopy (default dict .Values.config.revocation) -}}
{{- if and (eq (default "embedded" $revocation.store) "embedded") (not $revocation.path) -}}
{{- $_ := set $owned "revocation" (mustMergeOverwrite $revocation (dict "path" "/var/lib/jwtgate")) -}}
{{- end -}}
{{- if not (default dict .Values.config.key_cache).dir -}}
{{- $_ := set $owned "key_cache" (dict "dir" "/var/lib/jwtgate/keys") -}}
{{- end -}}
{{- if .Values.redis.url -}}
{{- $_ := set $owned "redis" (mustMergeOverwrite (deepCopy (default dict .Values.config.redis)) (dict "url" .Values.redis.url)) -}}
{{- end -}}
{{- toYaml (mustMergeOverwrite (deepCopy .Values.config) $owned) -}}
{{- end -}}

{{/* Whether more than one pod may run: several replicas, or an HPA. */}}
{{- define "jwtgate.multiplePods" -}}
{{- if or .Values.autoscaling.enabled (gt (int .Values.replicaCount) 1) -}}true{{- end -}}
{{- end -}}

{{/* Whether a PodDisruptionBudget can let a node drain: at least two pods to keep one of. */}}
{{- define "jwtgate.pdbUseful" -}}
{{- if .Values.autoscaling.enabled -}}
{{- if gt (int .Values.autoscaling.minReplicas) 1 -}}true{{- end -}}
{{- else if gt (int .Values.replicaCount) 1 -}}true{{- end -}}
{{- end -}}

{{/*
Refuses several pods on the embedded revocation store: each pod has its own store on its own
emptyDir, so a revocation made through one pod is enforced by that pod only.
*/}}
{{- define "jwtgate.checkRevocationStore" -}}
{{- $store := toString (default "embedded" (default dict .Values.config.revocation).store) -}}
{{- if and (include "jwtgate.multiplePods" .) (ne $store "redis") (not (default dict .Values.revocation).acknowledgeInconsistentReplicas) -}}
{{- fail (printf "%s with the embedded revocation store (the default) is inconsistent: each pod keeps its own revocations, so a token revoked through one pod is still allowed by the others. Set config.revocation.store: redis (and redis.url), or replicaCount: 1 with autoscaling.enabled: false, or revocation.acknowledgeInconsistentReplicas: true to accept per-pod revocations." (ternary "autoscaling.enabled: true" (printf "replicaCount: %v" .Values.replicaCount) .Values.autoscaling.enabled)) -}}
{{- end -}}
{{- end -}}

{{/* The HTTP listener's scheme: HTTPS when it serves the TLS Secret. */}}
{{- define "jwtgate.httpScheme" -}}
{{- if and .Values.tls.existingSecret (has "http" .Values.tls.listeners) -}}HTTPS{{- else -}}HTTP{{- end -}}
{{- end -}}
