"""deploy/k8s against the Kubernetes schemas (kubernetes-validate, strict: no unknown fields), the
KServe resources parsed and checked against each other, and the server flags every manifest
passes parsed by the server's own argument parser. The Dockerfile cannot be built here (no
container daemon): its COPY lines are checked against the packages the server imports."""

import ast
import pathlib
import re

import kubernetes_validate
import pytest
import yaml

from backend import server

ROOT = pathlib.Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
KSERVE = ROOT / "deploy" / "kserve"


def documents(folder):
    return {(d["kind"], d["metadata"]["name"]): d
            for f in sorted(folder.glob("*.yaml")) for d in yaml.safe_load_all(f.read_text()) if d}


def flags(args):
    """The server's parsed flags (SystemExit on a flag it does not know)."""
    return server.parse_args(args)


@pytest.mark.parametrize("path", sorted(K8S.glob("*.yaml")), ids=lambda p: p.name)
def test_kubernetes_manifests_validate(path):
    for doc in yaml.safe_load_all(path.read_text()):
        kubernetes_validate.validate(doc, kubernetes_validate.latest_version(), strict=True)


def test_deployment_serves_probes_and_drains_within_the_grace_period():
    docs = documents(K8S)
    deployment = docs[("Deployment", "hrnet-pose")]
    pod = deployment["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    args = flags(container["args"])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": 8000, "grpc": 8001, "metrics": 8002}
    assert (args.http_port, args.grpc_port, args.metrics_port) == (8000, 8001, 8002)
    assert args.allow_http and args.allow_metrics
    assert deployment["spec"]["replicas"] >= 2

    ready, live = container["readinessProbe"]["httpGet"], container["livenessProbe"]["httpGet"]
    assert (ready["path"], ports[ready["port"]]) == ("/v2/health/ready", 8000)
    assert (live["path"], ports[live["port"]]) == ("/v2/health/live", 8000)
    assert {"cpu", "memory"} <= set(container["resources"]["requests"])

    # The model repository comes from a volume, mounted where --model-repository points.
    mounts = {m["name"]: m["mountPath"] for m in container["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    (models,) = [n for n, path in mounts.items() if path == args.model_repository]
    claim = volumes[models]["persistentVolumeClaim"]["claimName"]
    assert ("PersistentVolumeClaim", claim) in docs

    # preStop, then SIGTERM and the server's drain: all before the kubelet's SIGKILL.
    pre_stop = container["lifecycle"]["preStop"]["exec"]["command"]
    assert pre_stop[0] == "sleep"
    assert float(pre_stop[1]) + args.exit_timeout_secs < pod["terminationGracePeriodSeconds"]


def test_service_and_autoscaler_point_at_the_deployment():
    docs = documents(K8S)
    deployment = docs[("Deployment", "hrnet-pose")]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = docs[("Service", "hrnet-pose")]
    assert service["spec"]["selector"].items() <= labels.items()
    names = {p["name"] for p in deployment["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert {p["port"]: p["targetPort"] for p in service["spec"]["ports"]} == {
        8000: "http", 8001: "grpc", 8002: "metrics"}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= names
    target = docs[("HorizontalPodAutoscaler", "hrnet-pose")]["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", "hrnet-pose")


def test_kserve_runtime_and_inference_services():
    docs = documents(KSERVE)
    runtime = docs[("ServingRuntime", "hrnet-pose-server")]
    assert runtime["apiVersion"] == "serving.kserve.io/v1alpha1"
    assert {"v2", "grpc-v2"} <= set(runtime["spec"]["protocolVersions"])
    (container,) = runtime["spec"]["containers"]
    args = flags(container["args"])
    assert args.allow_http and args.allow_grpc
    # KServe puts the storageUri's files at /mnt/models; the runtime's ports are KServe's own.
    assert args.model_repository == "/mnt/models"
    assert (args.http_port, args.grpc_port) == (8080, 9000)
    formats = {(f["name"], f["version"]) for f in runtime["spec"]["supportedModelFormats"]}

    services = [d for (kind, _), d in docs.items() if kind == "InferenceService"]
    assert {s["spec"]["predictor"]["model"]["protocolVersion"] for s in services} == {"v2", "grpc-v2"}
    for isvc in services:
        assert isvc["apiVersion"] == "serving.kserve.io/v1beta1"
        model = isvc["spec"]["predictor"]["model"]
        assert model["runtime"] == "hrnet-pose-server"
        assert (model["modelFormat"]["name"], model["modelFormat"]["version"]) in formats
        assert model["storageUri"].startswith("pvc://")
        if model["protocolVersion"] == "grpc-v2":
            assert model["ports"] == [{"name": "h2c", "protocol": "TCP", "containerPort": 9000}]


def _local_imports(start_files, packages):
    """Top-level project packages imported, directly or not, from `start_files`."""
    todo, seen, found = list(start_files), set(), set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module]
            else:
                continue
            for name in names:
                if name.split(".")[0] in packages:
                    found.add(name.split(".")[0])
                    base = ROOT / name.replace(".", "/")
                    todo += [p for p in (base.with_suffix(".py"), base / "__init__.py") if p.exists()]
    return found


def test_dockerfile_runs_the_server_with_what_it_imports():
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r'^ENTRYPOINT \["python", "-m", "backend.server"\]', text, re.M)
    copied = set(re.findall(r"^COPY (\w+)/ \1/", text, re.M))
    packages = {p.name for p in ROOT.iterdir() if (p / "__init__.py").exists()}
    starts = [*(ROOT / "backend").rglob("*.py"), *(ROOT / "model_repository").glob("*/1/model.py")]
    needed = {"backend"} | _local_imports(starts, packages)
    assert needed <= copied, needed - copied
    assert "COPY requirements.lock" in text
    # The manifests run the image the Dockerfile says to build.
    tag = re.search(r"docker build -t (\S+) \.", text).group(1)
    images = {c["image"] for d in [*documents(K8S).values(), *documents(KSERVE).values()]
              for c in _containers(d)}
    assert images == {tag}


def _containers(doc):
    spec = doc.get("spec", {})
    if doc["kind"] == "Deployment":
        return spec["template"]["spec"]["containers"]
    return spec.get("containers", [])
