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

{{- define "atoll.activityRole" -}}{{ include "atoll.fullname" . }}-instance-activity{{- end -}}
{{- define "atoll.taskPodsRole" -}}{{ include "atoll.fullname" . }}-task-pods{{- end -}}
{{- define "atoll.operator.name" -}}{{ include "atoll.fullname" . }}-operator{{- end -}}
{{- define "atoll.wakeGate.name" -}}{{ include "atoll.fullname" . }}-wake-gate{{- end -}}
{{- define "atoll.wakeGate.selector" -}}
app.kubernetes.io/name: atoll-wake-gate
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
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

{{/* The token issuer instances trust, as configured (unchecked). */}}
{{- define "atoll.identity.issuerUrl" -}}
{{- if .Values.identity.issuer -}}
{{ .Values.identity.issuer }}
{{- else if .Values.identity.ingress.enabled -}}
{{ if .Values.identity.ingress.tlsSecretName }}https{{ else }}http{{ end }}://{{ .Values.identity.ingress.host }}
{{- else -}}
{{ include "atoll.identity.internalUrl" . }}
{{- end -}}
{{- end -}}

{{/* The token issuer instances trust: https, unless explicitly allowed. */}}
{{- define "atoll.identity.issuer" -}}
{{- $issuer := include "atoll.identity.issuerUrl" . -}}
{{- if and (not (hasPrefix "https://" $issuer)) (not .Values.identity.allowInsecureIssuer) -}}
{{- fail (printf "identity's issuer %s is not https: logins and tokens would cross the network in the clear. Set identity.issuer to an https URL (or enable identity.ingress with a tlsSecretName), or, for development only, set identity.allowInsecureIssuer=true" $issuer) -}}
{{- end -}}
{{ $issuer }}
{{- end -}}

{{- define "atoll.identity.adminSecret" -}}
{{- .Values.identity.firstAdmin.existingSecret | default (printf "%s-first-admin" (include "atoll.identity.name" .)) -}}
{{- end -}}

{{/* Per-cluster credentials: one key per cluster name. Unless
clusters.existingSecret is set, a legacy serviceToken.existingSecret (key
`token`) is this cluster's only credential. */}}
{{- define "atoll.identity.legacyToken" -}}
{{- if and (not .Values.identity.clusters.existingSecret) .Values.identity.serviceToken.existingSecret -}}
true
{{- end -}}
{{- end -}}

{{- define "atoll.identity.clustersSecret" -}}
{{- .Values.identity.clusters.existingSecret | default (printf "%s-clusters" (include "atoll.identity.name" .)) -}}
{{- end -}}

{{/* The Secret and key holding this cluster's operator credential. */}}
{{- define "atoll.identity.operatorCredentialSecret" -}}
{{- if include "atoll.identity.legacyToken" . -}}
{{ .Values.identity.serviceToken.existingSecret }}
{{- else -}}
{{ include "atoll.identity.clustersSecret" . }}
{{- end -}}
{{- end -}}

{{- define "atoll.identity.operatorCredentialKey" -}}
{{- if include "atoll.identity.legacyToken" . -}}
token
{{- else -}}
{{ .Values.clusterName }}
{{- end -}}
{{- end -}}

{{- define "atoll.identity.keyEncryptionSecret" -}}
{{- .Values.identity.keyEncryption.existingSecret | default (printf "%s-key-encryption" (include "atoll.identity.name" .)) -}}
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

{{/* 32 random bytes, base64, kept across upgrades: the existing Secret's,
or new. */}}
{{- define "atoll.keptRandomKey" -}}
{{- $existing := lookup "v1" "Secret" .namespace .name -}}
{{- if and $existing (index $existing.data .key) -}}
{{- index $existing.data .key | b64dec -}}
{{- else -}}
{{- randBytes 32 -}}
{{- end -}}
{{- end -}}

{{/* The data of the generated clusters Secret: every key it already has
(remote clusters added to it stay) and this cluster's, generated once. */}}
{{- define "atoll.identity.clustersData" -}}
{{- $existing := lookup "v1" "Secret" .namespace .name -}}
{{- $data := dict -}}
{{- if and $existing $existing.data -}}
{{- $data = deepCopy $existing.data -}}
{{- end -}}
{{- if not (index $data .cluster) -}}
{{- $_ := set $data .cluster (randAlphaNum 48 | b64enc) -}}
{{- end -}}
{{- toYaml $data -}}
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
