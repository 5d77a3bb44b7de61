{{/* Names. */}}
{{- define "credbroker.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "credbroker.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "credbroker.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "credbroker.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | trunc 63 | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "credbroker.selectorLabels" -}}
app.kubernetes.io/name: {{ include "credbroker.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "credbroker.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "credbroker.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "credbroker.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* The Secret that holds tls.crt and tls.key. */}}
{{- define "credbroker.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "credbroker.fullname" .)) .Values.tls.secretName }}
{{- end }}

{{/* The Secret that holds the client CAs (mTLS). */}}
{{- define "credbroker.clientCASecretName" -}}
{{- default (include "credbroker.tlsSecretName" .) .Values.tls.clientCA.secretName }}
{{- end }}

{{/* "true" when config.issuers has a kubernetes: issuer. */}}
{{- define "credbroker.kubernetesIssuer" -}}
{{- range .Values.config.issuers }}
{{- if hasKey . "kubernetes" }}true{{ end }}
{{- end }}
{{- end }}

{{/* Whether the pod mounts its service-account token: "true" or "false". */}}
{{- define "credbroker.automountToken" -}}
{{- if kindIs "bool" .Values.serviceAccount.automountToken }}
{{- .Values.serviceAccount.automountToken }}
{{- else }}
{{- ne (include "credbroker.kubernetesIssuer" .) "" }}
{{- end }}
{{- end }}

{{/* Where the TLS files are mounted. */}}
{{- define "credbroker.tlsDir" -}}/etc/credbroker/tls{{- end }}
{{- define "credbroker.clientCADir" -}}/etc/credbroker/client-ca{{- end }}

{{/*
The broker's config file: config from values, with listen, tls and
metrics_listen set by the chart.
*/}}
{{- define "credbroker.config" -}}
{{- if not .Values.config.issuers }}
{{- fail "config.issuers: the broker needs at least one issuer (docs/identity/); e.g. a kubernetes: issuer for the cluster's service accounts" }}
{{- end }}
{{- range $k := list "listen" "tls" "metrics_listen" }}
{{- if hasKey $.Values.config $k }}
{{- fail (printf "config.%s: set by the chart (ports, tls, metrics); remove it from config" $k) }}
{{- end }}
{{- end }}
{{- $tls := dict "cert_file" (printf "%s/tls.crt" (include "credbroker.tlsDir" .)) "key_file" (printf "%s/tls.key" (include "credbroker.tlsDir" .)) }}
{{- if .Values.tls.clientCA.enabled }}
{{- $_ := set $tls "client_ca_file" (printf "%s/%s" (include "credbroker.clientCADir" .) .Values.tls.clientCA.key) }}
{{- $_ := set $tls "client_auth" .Values.tls.clientCA.clientAuth }}
{{- end }}
{{- $cfg := dict "listen" (printf ":%v" .Values.ports.api) "tls" $tls }}
{{- if .Values.metrics.enabled }}
{{- $_ := set $cfg "metrics_listen" (printf ":%v" .Values.ports.metrics) }}
{{- end }}
{{- toYaml (merge $cfg (deepCopy .Values.config)) }}
{{- end }}

{{/* mTLS with clientAuth require: the kubelet cannot finish a handshake. */}}
{{- define "credbroker.mtlsRequired" -}}
{{- if and .Values.tls.clientCA.enabled (eq .Values.tls.clientCA.clientAuth "require") }}true{{ end }}
{{- end }}
