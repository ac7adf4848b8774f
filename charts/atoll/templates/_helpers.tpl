{{/* Names and labels shared by every template. */}}

{{- define "atoll.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 50 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "atoll.labels" -}}
app.kubernetes.io/part-of: atoll
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end -}}

{{- define "atoll.operator.name" -}}{{ include "atoll.fullname" . }}-operator{{- end -}}
{{- define "atoll.identity.name" -}}{{ include "atoll.fullname" . }}-identity{{- end -}}

{{- define "atoll.operator.selector" -}}
app.kubernetes.io/name: atoll-operator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "atoll.identity.selector" -}}
app.kubernetes.io/name: atoll-identity
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "atoll.operator.image" -}}
{{ .Values.operator.image.repository }}:{{ .Values.operator.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "atoll.identity.image" -}}
{{ .Values.identity.image.repository }}:{{ .Values.identity.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{/* Where the operator reaches identity inside the cluster. */}}
{{- define "atoll.identity.internalUrl" -}}
http://{{ include "atoll.identity.name" . }}.{{ .Release.Namespace }}.svc
{{- end -}}

{{/* The token issuer instances trust. */}}
{{- define "atoll.identity.issuer" -}}
{{- if .Values.identity.issuer -}}
{{ .Values.identity.issuer }}
{{- else if .Values.identity.ingress.enabled -}}
{{ if .Values.identity.ingress.tlsSecretName }}https{{ else }}http{{ end }}://{{ .Values.identity.ingress.host }}
{{- else -}}
{{ include "atoll.identity.internalUrl" . }}
{{- end -}}
{{- end -}}

{{- define "atoll.identity.adminSecret" -}}
{{- .Values.identity.firstAdmin.existingSecret | default (printf "%s-first-admin" (include "atoll.identity.name" .)) -}}
{{- end -}}

{{- define "atoll.identity.tokenSecret" -}}
{{- .Values.identity.serviceToken.existingSecret | default (printf "%s-service-token" (include "atoll.identity.name" .)) -}}
{{- end -}}

{{/* Pod and container security for Pod Security "restricted". */}}
{{- define "atoll.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "atoll.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
capabilities:
  drop: ["ALL"]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* A random value kept across upgrades: the existing Secret's, or new. */}}
{{- define "atoll.keptRandom" -}}
{{- $existing := lookup "v1" "Secret" .namespace .name -}}
{{- if and $existing (index $existing.data .key) -}}
{{- index $existing.data .key | b64dec -}}
{{- else -}}
{{- randAlphaNum 40 -}}
{{- end -}}
{{- end -}}
