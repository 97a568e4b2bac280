{{/* Names and labels, as `helm create` makes them. */}}
{{- define "shoal.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "shoal.fullname" -}}
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

{{- define "shoal.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "shoal.selectorLabels" -}}
app.kubernetes.io/name: {{ include "shoal.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "shoal.labels" -}}
helm.sh/chart: {{ include "shoal.chart" . }}
{{ include "shoal.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "shoal.serverName" -}}
{{- printf "%s-server" (include "shoal.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The name of a pool's objects; call with (dict "root" $ "pool" $pool). */}}
{{- define "shoal.poolName" -}}
{{- printf "%s-worker-%s" (include "shoal.fullname" .root) .pool.name | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "shoal.poolSelectorLabels" -}}
{{ include "shoal.selectorLabels" .root }}
app.kubernetes.io/component: worker
shoal/pool: {{ .pool.name }}
{{- end }}

{{- define "shoal.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "shoal.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "shoal.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "shoal.dataClaim" -}}
{{- default (printf "%s-data" (include "shoal.fullname" .)) .Values.data.existingClaim }}
{{- end }}

{{/*
A pool's effective settings: workers.defaults, then the pool's own keys (each replaces the
default's whole value), then the derived ones. Returned as YAML: use with fromYaml.
*/}}
{{- define "shoal.pool" -}}
{{- $pool := deepCopy .root.Values.workers.defaults }}
{{- range $key, $value := .pool }}
{{- $_ := set $pool $key $value }}
{{- end }}
{{- if not $pool.pipeline }}
{{- $_ := set $pool "pipeline" (base $pool.project) }}
{{- end }}
{{- if not $pool.queue }}
{{- $_ := set $pool "queue" .root.Values.queue }}
{{- end }}
{{- toYaml $pool }}
{{- end }}

{{/* The database Secret KEDA's PostgreSQL trigger reads: (name, key). */}}
{{- define "shoal.kedaPostgresSecret" -}}
{{- $pg := .Values.autoscaling.keda.postgresql }}
{{- $name := default .Values.database.existingSecret $pg.existingSecret }}
{{- if not $name }}
{{- fail "autoscaling.keda.trigger=postgresql reads the ledger: set database.existingSecret (or autoscaling.keda.postgresql.existingSecret)" }}
{{- end }}
{{- $name }}
{{- end }}

{{/*
The backlog one pool's KEDA Prometheus trigger scales on: the pipeline's items waiting for a worker
plus those handed to workers and not reported yet (both gauges of the server's /metrics). Each sum
falls back to 0 when the series is absent (no job ran yet), so the query always has a value.
Call with (dict "root" $ "pool" $pool).
*/}}
{{- define "shoal.backlogQuery" -}}
{{- $root := .root }}
{{- $matchers := list (printf "pipeline=%q" .pool.pipeline) }}
{{- if $root.Values.serviceMonitor.enabled }}
{{- $matchers = append $matchers (printf "namespace=%q" $root.Release.Namespace) }}
{{- $matchers = append $matchers (printf "service=%q" (include "shoal.serverName" $root)) }}
{{- end }}
{{- with $root.Values.autoscaling.keda.prometheus.matchers }}
{{- $matchers = append $matchers . }}
{{- end }}
{{- $selector := join "," $matchers }}
{{- printf "(sum(shoal_items_pending{%s}) or vector(0)) + (sum(shoal_items_in_flight{%s}) or vector(0))" $selector $selector }}
{{- end }}

{{/*
The same backlog from the ledger: the pending items of the pipeline's jobs that are waiting or
running under a live coordinator (its heartbeat younger than the ledger's 15 s staleness), so a
job whose server died does not hold workers up.
*/}}
{{- define "shoal.backlogSQL" -}}
{{- printf "SELECT COALESCE(SUM(pending), 0) FROM jobs WHERE pipeline = '%s' AND (state = 'pending' OR (state = 'running' AND heartbeat_at > EXTRACT(EPOCH FROM now()) - 15))" .pool.pipeline }}
{{- end }}

{{/* Environment of every shoal container. */}}
{{- define "shoal.env" -}}
- name: SHOAL_HOME
  value: {{ .Values.data.path | quote }}
- name: SHOAL_QUEUE
  value: {{ .Values.queue | quote }}
- name: HOME
  value: /tmp
- name: MPLCONFIGDIR
  value: /tmp/matplotlib
- name: PYTHONUNBUFFERED
  value: "1"
- name: PYTHONDONTWRITEBYTECODE
  value: "1"
{{- with .Values.broker.existingSecret }}
- name: SHOAL_BROKER_URL
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.broker.key }}
{{- end }}
{{- end }}

{{- define "shoal.dbEnv" -}}
{{- with .Values.database.existingSecret }}
- name: SHOAL_DB_URL
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.database.key }}
{{- end }}
{{- end }}

{{/* The projects' volume source: project.volume, else the claim project.existingClaim. */}}
{{- define "shoal.projectVolume" -}}
{{- if .Values.project.volume }}
{{- toYaml .Values.project.volume }}
{{- else if .Values.project.existingClaim }}
persistentVolumeClaim:
  claimName: {{ .Values.project.existingClaim }}
  readOnly: true
{{- else }}
{{- fail "the projects need a volume: set project.existingClaim or project.volume" }}
{{- end }}
{{- end }}
