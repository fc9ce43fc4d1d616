#!/usr/bin/env bash
# Validates the deployment artifacts without a cluster:
#   1. helm lint --strict of helm/locallife with four value sets: the defaults plus a
#      Redis, one replica without Redis (singleNode), every optional part switched on,
#      and operator-managed Secrets with optional parts off;
#   2. renders the chart with the same value sets to a temp dir, and with every case of
#      tests/helm/cases.yaml (what it must refuse, e.g. several replicas without Redis);
#   3. kubernetes-validate --strict on every k8s/*.yaml manifest (except
#      kustomization.yaml) and on the rendered chart, against the Kubernetes API schemas
#      of KUBE_VERSIONS;
#   4. small consistency checks (kustomization resources exist, secret example kept out,
#      every setting of docs/configuration.md configurable, dashboard JSON valid, the
#      alert rules' metrics exist in src/ and their alerts in docs/operations.md);
#   5. promtool check rules and promtool test rules on helm/locallife/rules/;
#   6. helm/locallife/README.md's values table is what scripts/chart-readme.py makes of
#      values.yaml and values.schema.json today.
# Custom resources (monitoring.coreos.com ServiceMonitor, PrometheusRule) have no schema
# in kubernetes-validate: they are filtered out before validating and listed as skipped.
# Any other document whose schema is missing fails the run.
#
# Tools come from PyPI into the project venv (scripts/venv.sh, pinned in
# scripts/requirements.txt): helm-python-sdk (Helm v4's Go SDK as a shared library
# inside the wheel: no helm binary, nothing downloaded at run time) and
# kubernetes-validate (Kubernetes JSON schemas inside the wheel). promtool: on PATH, or
# in target/tools/bin (scripts/services.sh --with-test-tools puts it there), else
# unpacked there from Debian's prometheus package, as services.sh does.
#
# Usage: scripts/validate-deploy.sh          (from any directory)
# Env:   KUBE_VERSIONS="1.30 1.37"           Kubernetes versions to validate against
#        PYTHON=python3                      interpreter that creates the venv
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# 1.30 is the oldest Kubernetes the artifacts support (preStop `sleep` action); 1.37 is
# the newest schema set kubernetes-validate 1.37.0 ships.
kube_versions="${KUBE_VERSIONS:-1.30 1.37}"

step() { printf '\n==> %s\n' "$*"; }

step "python venv (scripts/venv.sh)"
venv="$("$root/scripts/venv.sh")"
echo "using $venv"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# The base as kustomize builds it (labels and image tag applied): validated below too.
# kubectl is not installed by this script; without it this step is skipped.
step "kubectl kustomize k8s/"
if command -v kubectl >/dev/null 2>&1; then
    kubectl kustomize "$root/k8s" >"$work/kustomize-build.yaml"
    echo "ok   kubectl kustomize k8s/ ($(kubectl version --client 2>/dev/null | sed -n 's/^Kustomize Version: //p' || true))"
else
    echo "skip kubectl kustomize k8s/: no kubectl on PATH"
fi

# Lint, render and consistency checks; writes the documents to validate into $work.
step "helm lint --strict, helm template, consistency checks"
"$venv/bin/python" - "$root" "$work" <<'PY'
import json
import os
import re
import sys
import tomllib

import yaml
import helm_python as helm

root, work = sys.argv[1], sys.argv[2]
chart_dir = os.path.join(root, "helm", "locallife")
k8s_dir = os.path.join(root, "k8s")
failures = []


def fail(msg):
    failures.append(msg)
    print(f"FAIL {msg}")


# Every optional part switched on, so every template is linted and validated.
ALL_FEATURES = {
    "ingress": {"enabled": True,
                "tls": [{"secretName": "locallife-tls", "hosts": ["locallife.example.com"]}]},
    "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
    "networkPolicy": {"enabled": True,
                      "httpFrom": [{"namespaceSelector": {"matchLabels": {
                          "kubernetes.io/metadata.name": "ingress-nginx"}}}],
                      "extraEgress": [{"ports": [{"port": 6380, "protocol": "TCP"}]}]},
    "podDisruptionBudget": {"minAvailable": 2},
    "podAntiAffinity": "hard",
    "secret": {"values": {
        "DATABASE_URL": "postgres://locallife:placeholder@db.example.internal:5432/locallife",
        "REDIS_URL": "redis://redis.example.internal:6379/0",
        "JWT_SECRET": "placeholder-placeholder-placeholder-0123",
    }},
    "wechatpayKeys": {"publicKey": "-----BEGIN PUBLIC KEY-----\nPLACEHOLDER\n-----END PUBLIC KEY-----\n",
                      "merchantPrivateKey": "-----BEGIN PRIVATE KEY-----\nPLACEHOLDER\n-----END PRIVATE KEY-----\n"},
    "caCertificates": {"existingConfigMap": "locallife-ca"},
    "subscribeTemplates": {"json": '{"order.paid": {"template_id": "TPL", "data": {"thing1": "{title}"}}}'},
    "extraEnv": [{"name": "EXTRA", "value": "1"}],
    "imagePullSecrets": [{"name": "regcred"}],
    "podAnnotations": {"example.com/note": "x"},
    "nodeSelector": {"kubernetes.io/os": "linux"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "realtime",
                     "effect": "NoSchedule"}],
}
# The other branches: operator-managed Secrets, fixed replica count, optional parts off.
EXISTING_SECRETS = {
    "secret": {"existingSecret": "locallife", "existingSecretHasRedisUrl": True},
    "wechatpayKeys": {"existingSecret": "locallife-wechatpay"},
    "subscribeTemplates": {"existingConfigMap": "locallife-subscribe"},
    "serviceAccount": {"create": False, "name": "locallife"},
    "autoscaling": {"enabled": False},
    "podDisruptionBudget": {"enabled": False},
    "dashboard": {"enabled": False},
    "topologySpread": {"enabled": False},
    "podAntiAffinity": "",
    "preStopSleepSeconds": 0,
    "image": {"digest": "sha256:" + "0" * 64},
}
# The defaults as a production install completes them: the Secret's three URLs and key.
WITH_REDIS = {"secret": {"values": {
    k: ALL_FEATURES["secret"]["values"][k] for k in ("DATABASE_URL", "REDIS_URL", "JWT_SECRET")}}}
# The defaults alone are refused (several replicas, no Redis: tests/helm/cases.yaml); one
# replica with the in-process engine and nothing else configured renders.
PROFILES = {"with-redis": WITH_REDIS, "single-node": {"singleNode": True},
            "all-features": ALL_FEATURES, "existing-secrets": EXISTING_SECRETS}

print(f"helm SDK {helm.helm_sdk_version()} (helm-c {helm.helm_c_version()}), "
      f"native library {helm.library_path}")

for profile, values in PROFILES.items():
    # kube_version: what .Capabilities.KubeVersion and the deprecated-API check see.
    report = helm.lint(chart_dir, values, strict=True, kube_version="v1.30.0")
    findings = report.get("messages") or []
    for m in findings:
        sev = {0: "UNKNOWN", 1: "INFO", 2: "WARNING", 3: "ERROR"}.get(m.get("severity"), "?")
        print(f"  lint[{profile}] {sev} {m.get('path')}: {m.get('error')}")
    # Strict: warnings count as failures, infos (e.g. "icon is recommended") do not.
    bad = [m for m in findings if m.get("severity", 0) >= 2]
    if bad or report.get("errors"):
        fail(f"helm lint --strict ({profile}): {len(bad)} warning(s)/error(s)")
    else:
        print(f"ok   helm lint --strict ({profile}): {report.get('total_charts_linted')} chart(s)")

    try:
        with helm.Chart.load(chart_dir) as chart:
            rendered = chart.render(values, name="locallife", namespace="locallife",
                                    is_install=True)
    except helm.HelmError as e:
        fail(f"helm template ({profile}): {e}")
        continue
    out = os.path.join(work, f"chart-{profile}.yaml")
    n = 0
    with open(out, "w") as f:
        for path in sorted(rendered):
            text = rendered[path]
            if not path.endswith((".yaml", ".yml")) or not text.strip():
                continue  # NOTES.txt, _helpers.tpl, disabled templates
            f.write(f"---\n# Source: {path}\n{text.strip()}\n")
            n += 1
    print(f"ok   helm template ({profile}): {n} template(s) -> {os.path.basename(out)}")
    notes = next((t for p, t in rendered.items() if p.endswith("NOTES.txt")), "")
    if not notes.strip():
        fail(f"NOTES.txt ({profile}) rendered empty")


def merged(base, over):
    """`over` deep-merged onto `base`, as Helm merges a values file onto the defaults."""
    out = dict(base)
    for k, v in over.items():
        out[k] = merged(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


# What the chart must render, refuse, or reject: tests/helm/cases.yaml.
with open(os.path.join(root, "tests", "helm", "cases.yaml")) as f:
    case_file = yaml.safe_load(f)
with helm.Chart.load(chart_dir) as chart:
    for case in case_file["cases"]:
        name, expect = case["name"], case["expect"]
        values = merged(case_file.get("common") or {}, case.get("values") or {})
        try:
            rendered = chart.render(values, name="locallife", namespace="locallife",
                                    is_install=True)
            outcome, error = "ok", ""
        except helm.HelmValuesError as e:
            outcome, error = "invalid", str(e)
        except helm.HelmError as e:
            outcome, error = "refused", str(e)
        if outcome != expect:
            fail(f"case '{name}': expected {expect}, got {outcome} {error}".rstrip())
            continue
        if expect != "ok":
            if case["message"] not in error:
                fail(f"case '{name}': {outcome}, but without {case['message']!r}: {error}")
            else:
                print(f"ok   case '{name}': {outcome}: ...{case['message']}...")
            continue
        docs = [d for p, t in rendered.items() if p.endswith((".yaml", ".yml"))
                for d in yaml.safe_load_all(t) if d]
        kinds = {d["kind"] for d in docs}
        problems = [f"no {k}" for k in case.get("present", []) if k not in kinds]
        problems += [f"a {k}" for k in case.get("absent", []) if k in kinds]
        if "replicas" in case:
            deployment = next(d for d in docs if d["kind"] == "Deployment")
            got = deployment["spec"].get("replicas")
            if got != case["replicas"]:
                problems.append(f"Deployment replicas {got}, expected {case['replicas']}")
        if problems:
            fail(f"case '{name}': {', '.join(problems)}")
        else:
            print(f"ok   case '{name}': renders ({len(docs)} documents)")


def nulls(node, path=""):
    if node is None:
        yield path or "."
    elif isinstance(node, dict):
        for k, v in node.items():
            yield from nulls(v, f"{path}.{k}")
    elif isinstance(node, list):
        for i, v in enumerate(node):
            yield from nulls(v, f"{path}[{i}]")


# The alert rules (rules/alerts.yaml; promtool checks and tests them below).
with open(os.path.join(chart_dir, "rules", "alerts.yaml")) as f:
    alert_rules = yaml.safe_load(f)

# Sort documents: custom resources are skipped (no schema in kubernetes-validate).
SKIP_GROUPS = ("monitoring.coreos.com/",)
to_validate = []
sources = sorted(
    os.path.join(k8s_dir, n) for n in os.listdir(k8s_dir)
    if n.endswith(".yaml") and n != "kustomization.yaml"
) + [os.path.join(work, f"chart-{p}.yaml") for p in PROFILES] + [
    os.path.join(work, "kustomize-build.yaml")]
sources = [s for s in sources if os.path.exists(s)]  # a failed render has no file
for src in sources:
    label = os.path.relpath(src, root) if src.startswith(root) else os.path.basename(src)
    with open(src) as f:
        docs = [d for d in yaml.safe_load_all(f) if d]
    kept = []
    for d in docs:
        kind, api = d.get("kind"), d.get("apiVersion", "")
        name = (d.get("metadata") or {}).get("name")
        if api.startswith(SKIP_GROUPS):
            print(f"skip {label}: {kind}/{name} ({api}: custom resource, no schema)")
            # What can still be checked: the ServiceMonitor scrapes the port named metrics.
            ports = [e.get("port") for e in d.get("spec", {}).get("endpoints", [])]
            if kind == "ServiceMonitor" and ports != ["metrics"]:
                fail(f"{label}: ServiceMonitor {name} should scrape port 'metrics', has {ports}")
            # The PrometheusRule carries rules/alerts.yaml (promtool-tested) unchanged.
            if kind == "PrometheusRule" and d.get("spec") != alert_rules:
                fail(f"{label}: PrometheusRule {name}: spec is not rules/alerts.yaml")
            continue
        # A template that reads a missing value renders an empty scalar (helm lint
        # --strict does not catch that): no manifest here has a null anywhere.
        for path in nulls(d):
            fail(f"{label}: {kind}/{name}: empty value at {path}")
        kept.append(d)
    out = os.path.join(work, "validate", label.replace("/", "__"))
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as f:
        yaml.safe_dump_all(kept, f, sort_keys=False)
    to_validate.append(out)
with open(os.path.join(work, "files.txt"), "w") as f:
    f.write("\n".join(to_validate) + "\n")

# kustomization.yaml lists files that exist, and never the secret example.
with open(os.path.join(k8s_dir, "kustomization.yaml")) as f:
    kust = yaml.safe_load(f)
resources = kust.get("resources", [])
for r in resources:
    if not os.path.exists(os.path.join(k8s_dir, r)):
        fail(f"k8s/kustomization.yaml lists missing file {r}")
if "secret.example.yaml" in resources:
    fail("k8s/kustomization.yaml must not list secret.example.yaml")
unlisted = sorted(set(n for n in os.listdir(k8s_dir) if n.endswith(".yaml"))
                  - set(resources) - {"kustomization.yaml", "secret.example.yaml"})
if unlisted:
    fail(f"k8s/*.yaml not in kustomization.yaml: {unlisted}")
else:
    print(f"ok   k8s/kustomization.yaml: {len(resources)} resources, secret example left out")

# Every setting (docs/configuration.md) is configurable in both the base and the chart.
SETTINGS = """DATABASE_URL REDIS_URL REDIS_KEY_PREFIX JWT_SECRET JWT_ISSUER JWT_AUDIENCE
ACCESS_TOKEN_TTL LISTEN_ADDR METRICS_ADDR WS_PING_INTERVAL WS_IDLE_TIMEOUT WS_ACK_TIMEOUT
WS_MAX_REDELIVERIES WS_MAX_FRAME WS_MAX_SOCKETS_PER_USER WS_DRAIN_PERIOD PAYMENT_TIMEOUT
RIDER_MATCH_RADIUS_M WECHAT_APPID WECHAT_SECRET WECHAT_API_BASE WECHATPAY_MCHID
WECHATPAY_APIV3_KEY WECHATPAY_PUBLIC_KEY_FILE WECHATPAY_PUBLIC_KEY_ID
WECHATPAY_MERCHANT_PRIVATE_KEY_FILE WECHATPAY_MERCHANT_SERIAL WECHATPAY_API_BASE
WECHATPAY_NOTIFY_URL LOG_FORMAT RUST_LOG DATABASE_POOL_SIZE HTTP_HEADER_READ_TIMEOUT
HTTP_IDLE_TIMEOUT MAX_CONNECTIONS WECHAT_SUBSCRIBE_FILE PUSH_FALLBACK_AFTER
MAX_CONNECTIONS_PER_ADDRESS HTTP_RATE_USER HTTP_RATE_ADDRESS HTTP_RATE_BACK_OFFICE
HTTP_RATE_LOGIN HTTP_FORWARDED_FOR""".split()
with open(os.path.join(k8s_dir, "configmap.yaml")) as f:
    base_keys = set(yaml.safe_load(f)["data"])
with open(os.path.join(k8s_dir, "secret.example.yaml")) as f:
    base_keys |= {k for d in yaml.safe_load_all(f) if d for k in d.get("stringData", {})}
with open(os.path.join(chart_dir, "values.yaml")) as f:
    chart_values = yaml.safe_load(f)
chart_keys = set(chart_values["config"]) | set(chart_values["secret"]["values"])
for where, keys in (("k8s/ (configmap + secret example)", base_keys),
                    ("helm values (config + secret.values)", chart_keys)):
    missing = [s for s in SETTINGS if s not in keys]
    if missing:
        fail(f"{where} lacks settings {missing}")
    else:
        print(f"ok   {where}: all {len(SETTINGS)} settings")

# Every metric the alert rules read exists: a locallife_* name is one src/ records (a
# histogram's with _bucket, _sum or _count), anything else one of kube-state-metrics'.
EXTERNAL_METRICS = {"kube_deployment_spec_replicas", "kube_deployment_status_replicas_available"}
recorded = {}
for dirpath, _, names in os.walk(os.path.join(root, "src")):
    for n in names:
        if n.endswith(".rs"):
            with open(os.path.join(dirpath, n)) as f:
                for kind, metric in re.findall(
                        r'\b(counter|gauge|histogram)!\(\s*"(locallife_[a-z0-9_]+)"', f.read()):
                    recorded[metric] = kind
readable = set(recorded) | {f"{m}{s}" for m, k in recorded.items() if k == "histogram"
                            for s in ("_bucket", "_sum", "_count")}
rules = [r for g in alert_rules["groups"] for r in g["rules"]]
for r in rules:
    used = set(re.findall(r"\b((?:locallife|kube)_[a-z0-9_]+)", r["expr"]))
    unknown = sorted(used - readable - EXTERNAL_METRICS)
    if unknown:
        fail(f"rules/alerts.yaml {r['alert']}: no such metric in src/: {unknown}")
alert_names = [r["alert"] for r in rules]
print(f"ok   rules/alerts.yaml: {len(rules)} alerts, every metric recorded in src/ "
      f"({len(recorded)} names) or kube-state-metrics'")

# The alerts and docs/operations.md#alerts-to-watch name each other.
with open(os.path.join(root, "docs", "operations.md")) as f:
    ops = f.read()
section = ops.split("## Alerts to watch", 1)[-1].split("\n## ", 1)[0]
documented = set(re.findall(r"`(LocalLife[A-Za-z]+)`", section))
missing, stray = sorted(set(alert_names) - documented), sorted(documented - set(alert_names))
if missing or stray:
    fail(f"docs/operations.md#alerts-to-watch: alerts not named there {missing}, "
         f"named there but not in rules/alerts.yaml {stray}")
else:
    print(f"ok   docs/operations.md#alerts-to-watch names the {len(alert_names)} alerts")

# The default image is locallife:<appVersion> (no registry publishes one): appVersion is
# the version the binary is built as, so an image tagged with it holds that binary.
with open(os.path.join(root, "Cargo.toml"), "rb") as f:
    crate_version = tomllib.load(f)["package"]["version"]
with open(os.path.join(chart_dir, "Chart.yaml")) as f:
    app_version = str(yaml.safe_load(f)["appVersion"])
if app_version != crate_version:
    fail(f"helm/locallife/Chart.yaml appVersion {app_version} != Cargo.toml version "
         f"{crate_version} (the default image tag)")
else:
    print(f"ok   Chart.yaml appVersion {app_version} = Cargo.toml version (default image "
          f"{chart_values['image']['repository']}:{app_version})")

# The dashboard is valid JSON with a Prometheus datasource variable.
with open(os.path.join(chart_dir, "dashboards", "locallife.json")) as f:
    dash = json.load(f)
dsvars = [v for v in dash.get("templating", {}).get("list", [])
          if v.get("type") == "datasource" and v.get("query") == "prometheus"]
panels = [p for p in dash.get("panels", []) if p.get("type") != "row"]
if not dsvars or not panels:
    fail("dashboards/locallife.json: needs a prometheus datasource variable and panels")
else:
    print(f"ok   dashboards/locallife.json: schemaVersion {dash.get('schemaVersion')}, "
          f"{len(panels)} panels")

if failures:
    print(f"\n{len(failures)} check(s) failed")
    sys.exit(1)
PY

step "kubernetes-validate --strict (Kubernetes ${kube_versions// /, })"
mapfile -t files <"$work/files.txt"
kv_args=(--strict)
for v in $kube_versions; do kv_args+=(-k "$v"); done
rc=0
(cd "$work/validate" && "$venv/bin/kubernetes-validate" "${kv_args[@]}" "${files[@]##*/}") \
    >"$work/kv.log" 2>&1 || rc=$?
# Show file names as the repository paths they came from.
sed -e 's/k8s__/k8s\//g' "$work/kv.log"
# A WARN means no schema for a document: a typo in kind/apiVersion, or a new custom
# resource that belongs in the skip list above. Either way, not validated: fail.
if grep -q '^WARN' "$work/kv.log"; then
    echo "validate-deploy: error: documents without a schema (see WARN above)" >&2
    rc=1
fi
if [[ $rc -ne 0 ]]; then
    echo "validate-deploy: FAILED" >&2
    exit "$rc"
fi
passed=$(grep -c '^INFO .* passed' "$work/kv.log" || true)
echo "ok   $passed document validations passed (${#files[@]} files x versions $kube_versions)"

# The alert rules: valid for Prometheus, and each alert fires (and stays quiet) as its
# unit test says.
step "promtool check rules, promtool test rules (helm/locallife/rules)"
promtool="$(command -v promtool || true)"
if [[ -z "$promtool" ]]; then
    promtool="$root/target/tools/bin/promtool"
    if [[ ! -x "$promtool" ]]; then
        # Debian's prometheus package downloaded, never installed (installing would start
        # a Prometheus server on :9090): the recipe of scripts/services.sh.
        echo "downloading Debian's prometheus package for its promtool (not installing it)"
        (cd "$work" && { apt-get download prometheus >/dev/null 2>&1 \
            || { apt-get update -qq && apt-get download prometheus >/dev/null; }; })
        dpkg-deb -x "$work"/prometheus_*.deb "$work/prometheus"
        install -D -m 0755 "$work/prometheus/usr/bin/promtool" "$promtool"
    fi
fi
echo "using $promtool ($("$promtool" --version 2>&1 | head -1))"
(cd "$root/helm/locallife/rules" && "$promtool" check rules alerts.yaml && "$promtool" test rules alerts_test.yaml)

# The chart README's values table, generated from values.yaml's comments and the schema.
step "scripts/chart-readme.py --check"
"$venv/bin/python" "$root/scripts/chart-readme.py" --check

step "deployment artifacts valid"
