{{/* Object names: the release name, which also names the Service (a DNS-1035 label). */}}
{{- define "podtally.name" -}}
{{- if not (regexMatch "^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$" .Release.Name) -}}
{{- fail (printf "release name %q is not a DNS-1035 label (it names the Service: lower-case letters, digits and '-', start with a letter, at most 63)" .Release.Name) -}}
{{- end -}}
{{- .Release.Name -}}
{{- end -}}

{{- define "podtally.selectorLabels" -}}
app.kubernetes.io/name: podtally
app.kubernetes.io/instance: {{ include "podtally.name" . }}
{{- end -}}

{{- define "podtally.tag" -}}
{{- .Values.image.tag | default .Chart.AppVersion -}}
{{- end -}}

{{- define "podtally.labels" -}}
{{- with .Values.commonLabels }}{{ toYaml . }}
{{ end -}}
{{ include "podtally.selectorLabels" . }}
app.kubernetes.io/version: {{ include "podtally.tag" . | quote }}
app.kubernetes.io/component: identity-service
app.kubernetes.io/part-of: podtally
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "podtally.image" -}}
{{- $ref := printf "%s:%s" .Values.image.repository (include "podtally.tag" .) -}}
{{- if .Values.image.digest -}}{{- $ref = printf "%s@%s" $ref .Values.image.digest -}}{{- end -}}
{{- $ref -}}
{{- end -}}

{{- define "podtally.eks" -}}
{{- if eq .Values.profile "eks" -}}true{{- end -}}
{{- end -}}

{{/* The drain: drainSeconds, or the profile's default (5 generic, 20 eks). */}}
{{- define "podtally.drain" -}}
{{- if kindIs "invalid" .Values.drainSeconds -}}
{{- if eq .Values.profile "eks" }}20{{ else }}5{{ end -}}
{{- else -}}
{{- int .Values.drainSeconds -}}
{{- end -}}
{{- end -}}

{{/* gRPC on (grpc.port not 0), and its eks Ingress (HTTPS listeners only: gRPC needs TLS). */}}
{{- define "podtally.grpc" -}}
{{- if ne (int .Values.grpc.port) 0 -}}true{{- end -}}
{{- end -}}

{{- define "podtally.grpcIngress" -}}
{{- if and (include "podtally.grpc" .) (eq .Values.profile "eks") .Values.ingress.tls.enabled -}}true{{- end -}}
{{- end -}}

{{/* The IngressGroup of both Ingresses: namespace.name, or a digest of it past 63 characters. */}}
{{- define "podtally.albGroup" -}}
{{- $group := printf "%s.%s" .Release.Namespace (include "podtally.name" .) -}}
{{- if gt (len $group) 63 -}}
{{- $group = printf "podtally-%s" (sha256sum $group | trunc 16) -}}
{{- end -}}
{{- $group -}}
{{- end -}}

{{- define "podtally.zoneReader" -}}
{{- printf "%s-%s-zone-lookup" .Release.Namespace (include "podtally.name" .) -}}
{{- end -}}

{{/* Cross-value rules the schema cannot express: the same ones AppSpec enforces. */}}
{{- define "podtally.validate" -}}
{{- $eks := eq .Values.profile "eks" -}}
{{- if and $eks .Values.ingress.tls.enabled (not .Values.ingress.alb.certificateArn) (not .Values.ingress.host) -}}
{{- fail "profile eks serves HTTPS: set ingress.alb.certificateArn, or ingress.host for the load balancer controller to find an ACM certificate (or ingress.tls.enabled=false)" -}}
{{- end -}}
{{- if and (not $eks) .Values.ingress.alb.certificateArn -}}
{{- fail "ingress.alb.certificateArn only applies to profile eks" -}}
{{- end -}}
{{- if and $eks (or .Values.ingress.className .Values.ingress.tls.secretName) -}}
{{- fail "profile eks uses the alb ingress class and ACM certificates; ingress.className and ingress.tls.secretName apply to profile generic" -}}
{{- end -}}
{{- if and (not .Values.ingress.host) (or .Values.ingress.className .Values.ingress.tls.secretName) -}}
{{- fail "ingress.className or ingress.tls.secretName needs ingress.host" -}}
{{- end -}}
{{- if and (include "podtally.grpc" .) (eq (int .Values.grpc.port) (int .Values.port)) -}}
{{- fail (printf "grpc.port %v must differ from port %v" .Values.grpc.port .Values.port) -}}
{{- end -}}
{{- if and .Values.gateway.enabled (not $eks) -}}
{{- fail "gateway.enabled needs profile eks (the AWS Load Balancer Controller's ALB gateway)" -}}
{{- end -}}
{{- if and (not (kindIs "invalid" .Values.hpa.maxReplicas)) (not .Values.hpa.enabled) -}}
{{- fail "hpa.maxReplicas only applies with hpa.enabled" -}}
{{- end -}}
{{- if and .Values.hpa.enabled (not (kindIs "invalid" .Values.hpa.maxReplicas)) (lt (int .Values.hpa.maxReplicas) (int .Values.replicaCount)) -}}
{{- fail (printf "hpa.maxReplicas (%v) is below replicaCount (%v)" .Values.hpa.maxReplicas .Values.replicaCount) -}}
{{- end -}}
{{- if and (not .Values.image.digest) (has (include "podtally.tag" .) (list "latest" "stable" "main" "master" "edge")) -}}
{{- fail (printf "image.tag %q is a moving tag; use a version or image.digest" (include "podtally.tag" .)) -}}
{{- end -}}
{{- end -}}

{{- define "podtally.systemNamespace" -}}
{{- if or (eq .Release.Namespace "default") (hasPrefix "kube-" .Release.Namespace) -}}true{{- end -}}
{{- end -}}

{{- define "podtally.skips" -}}
{{- range $n, $s := . }}
checkov.io/skip{{ add1 $n }}: {{ $s | quote }}
{{- end }}
{{- end -}}
