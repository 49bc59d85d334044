#!/usr/bin/env bash
# What can be checked here of the container image and the Kubernetes
# manifests without a Docker engine or a cluster:
#
# - every manifest validates against the Kubernetes JSON schemas (PyPI
#   kubernetes-validate, which bundles them: no network), strictly (unknown
#   fields refused), for the newest bundled version and for 1.29;
# - the manifests agree with each other and with the configuration in the
#   ConfigMap (names, ports, probe paths, whole-directory mounts, the grace
#   period against drain_ms + shutdown_grace_ms, kustomization's list);
# - `meetgate check` accepts that configuration, laid out as the pod sees it,
#   with the placeholder values of secret.example.yaml and a generated
#   certificate;
# - the Dockerfile parses with Docker's own parser (PyPI dockerfile), has a
#   non-root numeric final user, STOPSIGNAL SIGTERM and no HEALTHCHECK, and
#   the files its build stage copies (none excluded by .dockerignore) are
#   enough to compile the binary (`cargo check --locked --offline`).
#
#   bash deploy/test-manifests.sh [--binary PATH]   # default: cargo build
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "test-manifests: FAIL: $*" >&2; exit 1; }
step() { echo "test-manifests: $*"; }

# The project's target directory: its compiled dependencies serve the
# build-context check below.
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
binary=
if [ "${1:-}" = "--binary" ]; then
  binary=${2:?--binary needs a path}
else
  cargo build --quiet --bin meetgate
  binary="$target_dir/debug/meetgate"
fi
[ -x "$binary" ] || fail "$binary is not an executable"
command -v kubernetes-validate >/dev/null || fail "kubernetes-validate is missing (pip install kubernetes-validate)"
python3 -c 'import dockerfile, yaml' 2>/dev/null || fail "the Python packages dockerfile and PyYAML are missing"

dir=deploy/kubernetes
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

manifests=()
for f in "$dir"/*.yaml; do
  [ "$(basename "$f")" = kustomization.yaml ] || manifests+=("$f")
done
for version in "" 1.29; do
  step "kubernetes-validate --strict ${version:+-k $version }(${#manifests[@]} files)"
  kubernetes-validate --strict --quiet ${version:+-k "$version"} "${manifests[@]}" \
    || fail "a manifest does not validate${version:+ against Kubernetes $version}"
done

step "the manifests agree with each other and with the configuration"
# Writes the pod's view into $work/etc: config/meetgate.toml, secrets/KEY.
python3 - "$dir" "$work/etc" <<'EOF' || fail "the manifests disagree (above)"
import glob, os, re, sys, tomllib, yaml

src, out = sys.argv[1], sys.argv[2]
docs = {}
for path in sorted(glob.glob(os.path.join(src, "*.yaml"))):
    with open(path) as f:
        for doc in yaml.safe_load_all(f):
            docs[(doc["kind"], doc.get("metadata", {}).get("name"))] = (doc, os.path.basename(path))
problems = []
def need(cond, what):
    if not cond:
        problems.append(what)

kust = docs[("Kustomization", None)][0]
listed = set(kust["resources"])
files = {os.path.basename(p) for p in glob.glob(os.path.join(src, "*.yaml"))}
need(listed == files - {"kustomization.yaml", "secret.example.yaml"},
     f"kustomization.yaml lists {sorted(listed)}; the directory has {sorted(files)} (secret.example.yaml must stay out)")

deploy = docs[("Deployment", "meetgate")][0]
pod = deploy["spec"]["template"]
labels = pod["metadata"]["labels"]
spec = pod["spec"]
(container,) = spec["containers"]
volumes = {v["name"]: v for v in spec["volumes"]}
mounts = {m["name"]: m for m in container["volumeMounts"]}
for m in container["volumeMounts"]:
    need("subPath" not in m and "subPathExpr" not in m,
         f"volume mount {m['name']} uses subPath: the kubelet's updates would never reach it")
    need(m.get("readOnly") is True, f"volume mount {m['name']} is not readOnly")

cm_name = volumes["config"]["configMap"]["name"]
cm = docs.get(("ConfigMap", cm_name))
need(cm is not None, f"no ConfigMap {cm_name}")
args = container["args"]
config_path = args[args.index("--config") + 1]
config_dir = mounts["config"]["mountPath"]
need(os.path.dirname(config_path) == config_dir, f"--config {config_path} is not in the mounted {config_dir}")
config_text = cm[0]["data"][os.path.basename(config_path)]
config = tomllib.loads(config_text)
server = config["server"]

# The configuration's relative paths, resolved as in the pod.
etc = os.path.dirname(config_dir)
need(mounts["secrets"]["mountPath"] == os.path.join(etc, "secrets"), "secrets are not mounted beside the configuration")
need(mounts["tls"]["mountPath"] == os.path.join(etc, "tls"), "tls is not mounted beside the configuration")
need(server["tls_cert"] == "../tls/tls.crt" and server["tls_key"] == "../tls/tls.key",
     "tls_cert/tls_key are not the keys of the kubernetes.io/tls Secret")
tls_secret = docs.get(("Secret", volumes["tls"]["secret"]["secretName"]))
need(tls_secret is not None and tls_secret[0]["type"] == "kubernetes.io/tls", "the tls volume is not a kubernetes.io/tls Secret")
secret = docs.get(("Secret", volumes["secrets"]["secret"]["secretName"]))
need(secret is not None, "the secrets volume names no Secret in secret.example.yaml")
for key in sorted(set(re.findall(r'"file:\.\./secrets/([^"]+)"', config_text))):
    need(key in secret[0]["stringData"], f"the configuration reads secrets/{key}, which meetgate-secrets lacks")

ports = {p["name"]: p["containerPort"] for p in container["ports"]}
need(int(server["listen"].rsplit(":", 1)[1]) == ports["https"], "container port https is not [server] listen's")
need(int(server["admin_listen"].rsplit(":", 1)[1]) == ports["admin"], "container port admin is not [server] admin_listen's")
for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
    get = container[probe]["httpGet"]
    need(get["path"] == path and get["port"] == "admin", f"{probe} is not {path} on the admin port")
need("lifecycle" not in container, "a preStop hook adds its wait to drain_ms (deployment.yaml says why there is none)")
drain = server.get("drain_ms", 0) + server.get("shutdown_grace_ms", 30000)
need(spec["terminationGracePeriodSeconds"] * 1000 >= drain + 1000,
     f"terminationGracePeriodSeconds {spec['terminationGracePeriodSeconds']} does not cover drain_ms + shutdown_grace_ms ({drain} ms) and a second")

sc, csc = spec["securityContext"], container["securityContext"]
need(sc.get("runAsNonRoot") is True and sc.get("runAsUser", 0) != 0, "the pod may run as root")
need(sc.get("seccompProfile", {}).get("type") == "RuntimeDefault", "no RuntimeDefault seccomp profile")
need(csc.get("readOnlyRootFilesystem") is True, "the root filesystem is writable")
need(csc.get("allowPrivilegeEscalation") is False, "privilege escalation is allowed")
need(csc.get("capabilities", {}).get("drop") == ["ALL"], "capabilities are not all dropped")

svc = docs[("Service", "meetgate")][0]
need(all(labels.get(k) == v for k, v in svc["spec"]["selector"].items()), "the Service does not select the pods")
need(all(p["targetPort"] in ports for p in svc["spec"]["ports"]), "a Service targetPort is not a container port")
pdb = docs[("PodDisruptionBudget", "meetgate")][0]
need(all(labels.get(k) == v for k, v in pdb["spec"]["selector"]["matchLabels"].items()), "the PodDisruptionBudget does not select the pods")
need(deploy["spec"]["replicas"] >= 2, "one replica: the PodDisruptionBudget would block every drain")

for p in problems:
    print("  " + p, file=sys.stderr)
if problems:
    sys.exit(1)

os.makedirs(os.path.join(out, "config"))
os.makedirs(os.path.join(out, "secrets"))
with open(os.path.join(out, "config", os.path.basename(config_path)), "w") as f:
    f.write(config_text)
for key, value in secret[0]["stringData"].items():
    with open(os.path.join(out, "secrets", key), "w") as f:
        f.write(value)
EOF

step "meetgate check on the ConfigMap's configuration (placeholder Secret values)"
"$binary" dev-certs --out "$work/certs" >/dev/null
mkdir -p "$work/etc/tls"
cp "$work/certs/gateway.pem" "$work/etc/tls/tls.crt"
cp "$work/certs/gateway-key.pem" "$work/etc/tls/tls.key"
config=$(ls "$work"/etc/config/*.toml)
"$binary" check --config "$config" >"$work/check.log" 2>&1 \
  || { cat "$work/check.log"; fail "meetgate check refuses the ConfigMap's configuration"; }
# Expected warnings: the in-cluster plaintext upstreams, said on purpose.
if grep 'warning' "$work/check.log" | grep -qv 'insecure_plaintext_upstream'; then
  cat "$work/check.log"; fail "meetgate check warned about the ConfigMap's configuration"
fi
grep -q ': OK (' "$work/check.log" || fail "check did not say OK: $(cat "$work/check.log")"

step "Dockerfile: Docker's parser, final stage, build context"
python3 - Dockerfile .dockerignore "$work/context" "$config" <<'EOF' || fail "the Dockerfile (above)"
import fnmatch, glob, os, shutil, sys, tomllib, dockerfile

path, ignore_path, ctx, config_path = sys.argv[1:5]
cmds = dockerfile.parse_file(path)
ignore = [l.strip().rstrip("/") for l in open(ignore_path) if l.strip() and not l.startswith("#")]
problems = []
def need(cond, what):
    if not cond:
        problems.append(what)

stages = [i for i, c in enumerate(cmds) if c.cmd == "FROM"]
need(len(stages) >= 2, "not a multi-stage build")
final = cmds[stages[-1]:]
by = lambda name: [c for c in final if c.cmd == name]
users = by("USER")
need(users and users[-1].value[0].split(":")[0].isdigit() and users[-1].value[0].split(":")[0] != "0",
     "the final stage's USER is not a numeric non-root user")
need(any(c.value == ("SIGTERM",) for c in by("STOPSIGNAL")), "no STOPSIGNAL SIGTERM")
need(not any(c.cmd == "HEALTHCHECK" for c in cmds), "a HEALTHCHECK (the orchestrator's probes do this)")
server = tomllib.load(open(config_path, "rb"))["server"]
exposed = {p for c in by("EXPOSE") for p in c.value}
for key in ("listen", "admin_listen"):
    need(server[key].rsplit(":", 1)[1] in exposed, f"[server] {key}'s port is not EXPOSEd")
need(all(c.flags for c in final if c.cmd == "COPY"), "the final stage copies from the context, not from the build stage")

def ignored(rel):
    parts = rel.split("/")
    return any(fnmatch.fnmatch("/".join(parts[:i]), pat) for pat in ignore for i in range(1, len(parts) + 1))

# Rebuild the build stage's context copy, then compile it.
for c in cmds[:stages[-1]]:
    if c.cmd != "COPY" or c.flags:
        continue
    *sources, dest = c.value
    for s in sources:
        matches = glob.glob(s)
        need(matches, f"COPY {s}: nothing in the context")
        for m in matches:
            need(not ignored(m), f"COPY {m}: excluded by .dockerignore")
            # Docker: a directory's contents go to dest; a file goes into a
            # dest ending in "/", or to dest itself.
            if os.path.isdir(m):
                shutil.copytree(m, os.path.join(ctx, dest), dirs_exist_ok=True)
                continue
            target = os.path.join(ctx, dest, os.path.basename(m)) if dest.endswith("/") else os.path.join(ctx, dest)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy(m, target)
for p in problems:
    print("  " + p, file=sys.stderr)
sys.exit(1 if problems else 0)
EOF
# The copied sources compile on their own (locked, offline: what the image's
# `cargo build --release --locked` reads, without the release build).
(cd "$work/context" && CARGO_TARGET_DIR="$target_dir" cargo check --quiet --locked --offline --bin meetgate) \
  || fail "the Dockerfile's build stage does not copy all that the build needs"

echo "test-manifests: OK"
