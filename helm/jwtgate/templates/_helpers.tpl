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

{{/* The HTTP listener's scheme: HTTPS when it serves the TLS Secret. */}}
{{- define "jwtgate.httpScheme" -}}
{{- if and .Values.tls.existingSecret (has "http" .Values.tls.listeners) -}}HTTPS{{- else -}}HTTP{{- end -}}
{{- end -}}
