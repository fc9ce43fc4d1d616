{{/* Chart name, overridable. */}}
{{- define "locallife.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Fully qualified name: "<release>-<name>", or "<release>" when it already contains the
name. Truncated to 63 characters (DNS label limit).
*/}}
{{- define "locallife.fullname" -}}
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

{{- define "locallife.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels that identify the pods of this release (all components). */}}
{{- define "locallife.selectorLabels" -}}
app.kubernetes.io/name: {{ include "locallife.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Selector of the server pods only (not the migration Job). */}}
{{- define "locallife.serverSelectorLabels" -}}
{{ include "locallife.selectorLabels" . }}
app.kubernetes.io/component: server
{{- end }}

{{/* Common labels on every resource. */}}
{{- define "locallife.labels" -}}
helm.sh/chart: {{ include "locallife.chart" . }}
{{ include "locallife.selectorLabels" . }}
app.kubernetes.io/version: {{ include "locallife.imageTag" . | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: locallife
{{- end }}

{{- define "locallife.imageTag" -}}
{{- .Values.image.tag | default .Chart.AppVersion | trunc 63 -}}
{{- end }}

{{/* Image reference: digest wins over tag. */}}
{{- define "locallife.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end }}

{{- define "locallife.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "locallife.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* Secret the pods read DATABASE_URL, JWT_SECRET, ... from. */}}
{{- define "locallife.secretName" -}}
{{- default (include "locallife.fullname" .) .Values.secret.existingSecret }}
{{- end }}

{{/* Whether a DATABASE_URL is configured at all (else the migration hook is skipped). */}}
{{- define "locallife.hasDatabaseUrl" -}}
{{- if or .Values.secret.existingSecret .Values.secret.values.DATABASE_URL }}true{{ end }}
{{- end }}

{{/* Secret holding the WeChat Pay PEM files, or "" when there is none. */}}
{{- define "locallife.wechatpayKeysSecretName" -}}
{{- if .Values.wechatpayKeys.existingSecret }}
{{- .Values.wechatpayKeys.existingSecret }}
{{- else if or .Values.wechatpayKeys.publicKey .Values.wechatpayKeys.merchantPrivateKey }}
{{- printf "%s-wechatpay" (include "locallife.fullname" .) }}
{{- end }}
{{- end }}

{{/* The ConfigMap holding the subscription templates, if any. */}}
{{- define "locallife.subscribeConfigMapName" -}}
{{- if .Values.subscribeTemplates.existingConfigMap }}
{{- .Values.subscribeTemplates.existingConfigMap }}
{{- else if .Values.subscribeTemplates.json }}
{{- printf "%s-subscribe" (include "locallife.fullname" .) }}
{{- end }}
{{- end }}

{{/* Port number of a host:port setting ("0.0.0.0:8080", "[::]:8080"). */}}
{{- define "locallife.portOf" -}}
{{- last (splitList ":" .) | int }}
{{- end }}

{{/*
The data of the ConfigMap, every value a string: .Values.config, with WECHATPAY_*_FILE pointing at the
mounted PEM files when the chart mounts them and they were left blank.
*/}}
{{- define "locallife.config" -}}
{{- $config := deepCopy .Values.config }}
{{- if include "locallife.wechatpayKeysSecretName" . }}
{{- $dir := trimSuffix "/" .Values.wechatpayKeys.mountPath }}
{{- if not (get $config "WECHATPAY_PUBLIC_KEY_FILE") }}
{{- $_ := set $config "WECHATPAY_PUBLIC_KEY_FILE" (printf "%s/public_key.pem" $dir) }}
{{- end }}
{{- if not (get $config "WECHATPAY_MERCHANT_PRIVATE_KEY_FILE") }}
{{- $_ := set $config "WECHATPAY_MERCHANT_PRIVATE_KEY_FILE" (printf "%s/merchant_private_key.pem" $dir) }}
{{- end }}
{{- end }}
{{- if and (include "locallife.subscribeConfigMapName" .) (not (get $config "WECHAT_SUBSCRIBE_FILE")) }}
{{- $_ := set $config "WECHAT_SUBSCRIBE_FILE" (printf "%s/templates.json" (trimSuffix "/" .Values.subscribeTemplates.mountPath)) }}
{{- end }}
{{- range $key, $value := $config }}
{{ $key }}: {{ $value | toString | quote }}
{{- end }}
{{- end }}

{{/*
The most server pods this release can run: 1 with singleNode, the HPA's maxReplicas
when autoscaling, else replicaCount.
*/}}
{{- define "locallife.maxReplicas" -}}
{{- if .Values.singleNode }}1
{{- else if .Values.autoscaling.enabled }}{{ int .Values.autoscaling.maxReplicas }}
{{- else }}{{ int .Values.replicaCount }}
{{- end }}
{{- end }}

{{/*
Where the server pods get a REDIS_URL from, as far as the chart can tell, or "" when
from nowhere. In the container's own precedence: extraEnv, then the Secret, then the
ConfigMap (config). An existing Secret is opaque to the chart: it counts only once the
operator says it holds REDIS_URL (secret.existingSecretHasRedisUrl). Blank values are
unset to the binary, so they do not count.
*/}}
{{- define "locallife.redisUrlSource" -}}
{{- $source := "" }}
{{- range .Values.extraEnv }}
{{- if and (eq (toString (get . "name")) "REDIS_URL") (or (get . "valueFrom") (trim (toString (get . "value")))) }}
{{- $source = "extraEnv" }}
{{- end }}
{{- end }}
{{- if not $source }}
{{- if .Values.secret.existingSecret }}
{{- if .Values.secret.existingSecretHasRedisUrl }}
{{- $source = printf "secret.existingSecret %q" .Values.secret.existingSecret }}
{{- end }}
{{- else if trim (toString (default "" .Values.secret.values.REDIS_URL)) }}
{{- $source = "secret.values.REDIS_URL" }}
{{- end }}
{{- end }}
{{- if and (not $source) (trim (toString (default "" (get .Values.config "REDIS_URL")))) }}
{{- $source = "config.REDIS_URL" }}
{{- end }}
{{- $source }}
{{- end }}

{{/*
Refuses values that deploy something broken (included by the Deployment, so `helm
template` and `helm install` stop before anything is applied). Without REDIS_URL every
replica runs its own in-process engine: a notification published on one replica never
reaches a socket on another, and nothing in the pods' logs says so.
*/}}
{{- define "locallife.checkValues" -}}
{{- if and .Values.secret.existingSecretHasRedisUrl (not .Values.secret.existingSecret) }}
{{- fail "locallife: secret.existingSecretHasRedisUrl=true describes secret.existingSecret, which is not set: put the Redis URL in secret.values.REDIS_URL instead" }}
{{- end }}
{{- $max := include "locallife.maxReplicas" . | int }}
{{- if and (gt $max 1) (not (include "locallife.redisUrlSource" .)) }}
{{- $count := printf "%d replicas (replicaCount)" $max }}
{{- if .Values.autoscaling.enabled }}
{{- $count = printf "up to %d replicas (autoscaling.enabled, maxReplicas %d)" $max $max }}
{{- end }}
{{- $why := printf "locallife: %s need a shared Redis, and no REDIS_URL is configured: each replica would run its own in-process engine and events would not cross replicas." $count }}
{{- if .Values.secret.existingSecret }}
{{- fail (printf "%s The chart cannot see inside secret.existingSecret %q: once it holds REDIS_URL, set secret.existingSecretHasRedisUrl=true (or set config.REDIS_URL, or REDIS_URL in extraEnv). Or set singleNode=true: one replica, no Redis." $why .Values.secret.existingSecret) }}
{{- else }}
{{- fail (printf "%s Set secret.values.REDIS_URL (or config.REDIS_URL, or REDIS_URL in extraEnv, or secret.existingSecret with secret.existingSecretHasRedisUrl=true). Or set singleNode=true: one replica, no Redis." $why) }}
{{- end }}
{{- end }}
{{- end }}
