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

{{/* jwtgate's config: values.config with the listeners, drain and grace the chart owns. */}}
{{- define "jwtgate.config" -}}
{{- $owned := dict
  "listen" (dict
    "grpc" (printf "0.0.0.0:%v" .Values.ports.grpc)
    "http" (printf "0.0.0.0:%v" .Values.ports.http)
    "admin" (printf "0.0.0.0:%v" .Values.ports.admin))
  "shutdown_drain" (printf "%vs" .Values.shutdownDrainSeconds)
  "shutdown_grace" (printf "%vs" .Values.shutdownGraceSeconds) -}}
{{- $revocation := deepCopy (default dict .Values.config.revocation) -}}
{{- if and (eq (default "embedded" $revocation.store) "embedded") (not $revocation.path) -}}
{{- $_ := set $owned "revocation" (mustMergeOverwrite $revocation (dict "path" "/var/lib/jwtgate")) -}}
{{- end -}}
{{- if .Values.redis.url -}}
{{- $_ := set $owned "redis" (mustMergeOverwrite (deepCopy (default dict .Values.config.redis)) (dict "url" .Values.redis.url)) -}}
{{- end -}}
{{- toYaml (mustMergeOverwrite (deepCopy .Values.config) $owned) -}}
{{- end -}}
