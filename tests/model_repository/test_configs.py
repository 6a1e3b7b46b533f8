"""The pipeline's model repository: config.pbtxt contract, ensemble wiring, and the two
Python models run in-process through the server's pb_utils (no server)."""

import importlib.util
import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from google.protobuf import json_format, text_format
from tritonclient.grpc import model_config_pb2 as mc

from hrnet import preprocess as pp
from hrnet.grouping import GroupingParams

ROOT = Path(__file__).resolve().parents[2]
REPO = ROOT / "model_repository"
STUB_DIR = ROOT / "backend" / "python_stub"
COCO_JPEG = ROOT / "data" / "coco_mini" / "val2017" / "000000000785.jpg"

if str(STUB_DIR) not in sys.path:
    sys.path.append(str(STUB_DIR))  # where the server (like Triton) finds pb_utils
import triton_python_backend_utils as pb_utils  # noqa: E402

FP32, STRING = mc.TYPE_FP32, mc.TYPE_STRING
# model -> (platform or backend, {input: (type, dims)}, {output: (type, dims)})
CONTRACT = {
    "preprocess": ("python",
                   {"IMAGE": (STRING, [1])},
                   {"INPUT": (FP32, [-1, 3, -1, -1]), "CENTER": (FP32, [2]), "SCALE": (FP32, [2])}),
    "hrnet_om": ("onnxruntime_onnx",
                 {"input": (FP32, [-1, 3, -1, -1])},
                 {"output1": (FP32, [-1, 34, -1, -1])}),
    "grouping": ("python",
                 {"OUTPUT": (FP32, [-1, 34, -1, -1]), "CENTER": (FP32, [2]), "SCALE": (FP32, [2])},
                 {"KEYPOINTS": (FP32, [-1, 17, 3]), "SCORES": (FP32, [-1])}),
    "hrnet_pose": ("ensemble",
                   {"IMAGE": (STRING, [1])},
                   {"KEYPOINTS": (FP32, [-1, 17, 3]), "SCORES": (FP32, [-1])}),
}
PARAMETERS = {
    "preprocess": {"input_size": "512", "flip_test": "true", "max_image_pixels": "40000000",
                   "max_input_pixels": "4194304", "opencv_threads": "1"},
    # threads spin within a pass, not between passes (preprocess and grouping share the cores)
    "hrnet_om": {"session.intra_op.allow_spinning": "1", "session.force_spinning_stop": "1"},
    "grouping": {"max_num_people": "30", "detection_threshold": "0.1", "tag_threshold": "1",
                 "nms_kernel": "5", "use_detection_val": "true", "ignore_too_much": "false", "adjust": "true",
                 "refine": "true", "flip_test": "true", "threads": "1"},
    "hrnet_pose": {},
}


def load_config(model):
    config = mc.ModelConfig()
    text_format.Parse((REPO / model / "config.pbtxt").read_text(), config)
    return config


def tensors(entries):
    return {t.name: (t.data_type, list(t.dims)) for t in entries}


# ---------------------------------------------------------------- configs

def test_repository_holds_exactly_the_pipeline_models():
    assert sorted(p.name for p in REPO.iterdir() if p.is_dir()) == sorted(CONTRACT)


@pytest.mark.parametrize("model", sorted(CONTRACT))
def test_config_contract(model):
    config = load_config(model)
    kind, inputs, outputs = CONTRACT[model]
    assert config.name == model
    assert (config.backend if kind == "python" else config.platform) == kind
    assert config.max_batch_size == 0
    assert tensors(config.input) == inputs
    assert tensors(config.output) == outputs
    assert {k: v.string_value for k, v in config.parameters.items()} == PARAMETERS[model]
    if kind == "ensemble":
        assert len(config.instance_group) == 0
    else:
        count = 1 if model == "hrnet_om" else 2  # two of each host-side step: one computes while one waits
        assert [(g.count, g.kind) for g in config.instance_group] == [(count, mc.ModelInstanceGroup.KIND_CPU)]


def test_version_directories():
    assert (REPO / "preprocess" / "1" / "model.py").is_file()
    assert (REPO / "grouping" / "1" / "model.py").is_file()
    # the ONNX file is a build product; its folder stays in git through the .gitignore
    assert "model.onnx" in (REPO / "hrnet_om" / "1" / ".gitignore").read_text().split()
    # Triton needs a version folder for ensembles too; git needs a file in it
    assert [p.name for p in (REPO / "hrnet_pose" / "1").iterdir()] == [".gitkeep"]


def test_ensemble_wiring_is_consistent():
    ensemble = load_config("hrnet_pose")
    steps = ensemble.ensemble_scheduling.step
    assert [s.model_name for s in steps] == ["preprocess", "hrnet_om", "grouping"]
    assert dict(steps[1].input_map) == {"input": "INPUT"}
    assert dict(steps[1].output_map) == {"output1": "OUTPUT"}
    # ensemble tensor name -> (type, dims) as known so far
    available = tensors(ensemble.input)
    for step in steps:
        assert step.model_version == -1
        model = load_config(step.model_name)
        model_inputs, model_outputs = tensors(model.input), tensors(model.output)
        # every input of the step model is fed, from a tensor that exists with its type and shape
        assert set(step.input_map) == set(model_inputs)
        for model_input, ensemble_tensor in step.input_map.items():
            assert available[ensemble_tensor] == model_inputs[model_input], (step.model_name, model_input)
        for model_output, ensemble_tensor in step.output_map.items():
            assert ensemble_tensor not in available, f"{ensemble_tensor} produced twice"
            available[ensemble_tensor] = model_outputs[model_output]
    for name, spec in tensors(ensemble.output).items():
        assert available[name] == spec


# ---------------------------------------------------------------- python models in-process

def load_model(model, parameters=None):
    """Import model.py under a unique name and initialize it with Triton's args."""
    path = REPO / model / "1" / "model.py"
    spec = importlib.util.spec_from_file_location(f"_model_under_test_{model}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = load_config(model)
    if parameters is not None:
        config.ClearField("parameters")
        for key, value in parameters.items():
            config.parameters[key].string_value = value
    args = {
        "model_config": json.dumps(json_format.MessageToDict(config, preserving_proto_field_name=True)),
        "model_instance_kind": "CPU", "model_instance_name": f"{model}_0_0",
        "model_instance_device_id": "0", "model_repository": str(REPO / model),
        "model_version": "1", "model_name": model,
    }
    instance = module.TritonPythonModel()
    instance.initialize(args)
    return module, instance


def request(model, **inputs):
    return pb_utils.InferenceRequest(
        inputs=[pb_utils.Tensor(name, value) for name, value in inputs.items()],
        requested_output_names=list(CONTRACT[model][2]), model_name=model)


def image(data):
    return np.array([data], dtype=np.object_)


def outputs(response):
    assert not response.has_error(), response.error().message()
    return {t.name(): t.as_numpy() for t in response.output_tensors()}


def assert_invalid_arg(response, *words):
    assert response.has_error()
    assert response.error().code() == pb_utils.TritonError.INVALID_ARG
    for word in words:
        assert word in response.error().message()


def test_preprocess_model_outputs_and_per_request_errors():
    _, model = load_model("preprocess")
    jpeg = COCO_JPEG.read_bytes()
    ok, png = cv2.imencode(".png", np.full((300, 200, 3), 90, np.uint8))
    responses = model.execute([
        request("preprocess", IMAGE=image(jpeg)),
        request("preprocess", IMAGE=image(jpeg[: len(jpeg) // 2])),
        request("preprocess", IMAGE=image(b"")),
        request("preprocess", IMAGE=np.array([jpeg, jpeg], dtype=np.object_)),
        request("preprocess", IMAGE=image(png.tobytes())),
    ])
    assert len(responses) == 5

    got = outputs(responses[0])
    expected, center, scale = pp.preprocess(pp.decode_image(jpeg))
    assert got["INPUT"].dtype == np.float32 and got["INPUT"].shape == (2, 3, 512, 832)
    assert np.array_equal(got["INPUT"], expected)
    np.testing.assert_array_equal(got["CENTER"], center)
    np.testing.assert_array_equal(got["SCALE"], scale)

    assert_invalid_arg(responses[1], "preprocess", "truncated")
    assert_invalid_arg(responses[2], "preprocess", "empty")
    assert_invalid_arg(responses[3], "preprocess", "exactly one")
    assert outputs(responses[4])["INPUT"].shape == (2, 3, 768, 512)


def test_preprocess_model_parameters():
    _, model = load_model("preprocess", {"input_size": "512", "flip_test": "false",
                                         "max_image_pixels": "1000", "max_input_pixels": "400000"})
    small = cv2.imencode(".png", np.zeros((20, 30, 3), np.uint8))[1].tobytes()  # input 512x768
    big = cv2.imencode(".png", np.zeros((40, 30, 3), np.uint8))[1].tobytes()
    long = cv2.imencode(".png", np.zeros((10, 30, 3), np.uint8))[1].tobytes()  # input 512x1536
    responses = model.execute([request("preprocess", IMAGE=image(data)) for data in (small, big, long)])
    assert outputs(responses[0])["INPUT"].shape == (1, 3, 512, 768)
    assert_invalid_arg(responses[1], "too large")
    assert_invalid_arg(responses[2], "elongated")


def test_preprocess_model_default_refuses_elongated_images():
    _, model = load_model("preprocess")
    thin = cv2.imencode(".png", np.zeros((2, 100, 3), np.uint8))[1].tobytes()  # input 512x25600
    (response,) = model.execute([request("preprocess", IMAGE=image(thin))])
    assert_invalid_arg(response, "preprocess", "elongated")


@pytest.mark.parametrize("parameters, message", [
    ({"flip_test": "maybe"}, "flip_test"),
    ({"input_size": "abc"}, "input_size"),
    ({"max_image_pixels": "0"}, "max_image_pixels"),
    ({"opencv_threads": "0"}, "opencv_threads"),
    ({"input_sise": "512"}, "unknown parameter"),
])
def test_preprocess_model_rejects_bad_parameters(parameters, message):
    with pytest.raises(ValueError, match=message):
        load_model("preprocess", parameters)


@pytest.fixture(scope="module")
def grouping_model():
    """(module, initialized model): the tests only read its params and call it."""
    return load_model("grouping")


def test_grouping_model_parameters_are_mmpose_test_cfg(grouping_model):
    module, model = grouping_model
    assert model.params == GroupingParams(threads=1)  # mmpose's values; one thread per image
    params = module.parse_params({"refine": "False", "detection_threshold": "0.2", "max_num_people": "5",
                                  "threads": "1"})
    assert (params.refine, params.detection_threshold, params.max_num_people, params.threads) == (False, 0.2, 5, 1)
    assert not model.params.ignore_too_much  # mmpose's setting of this config
    assert module.parse_params({"ignore_too_much": "true"}).ignore_too_much is True
    assert module.parse_params({"ignore_too_much": " False "}).ignore_too_much is False


@pytest.mark.parametrize("parameters, message", [
    ({"refine": "yes"}, "refine"),
    ({"ignore_too_much": "1"}, "ignore_too_much"),
    ({"ignore_too_much": ""}, "ignore_too_much"),
    ({"nms_kernel": "5.5"}, "nms_kernel"),
    ({"tag_threshold": "nan"}, "tag_threshold"),
    ({"threads": "-2"}, "threads"),
    ({"num_joints": "17"}, "unknown parameter"),
])
def test_grouping_model_rejects_bad_parameters(grouping_model, parameters, message):
    module, _ = grouping_model
    with pytest.raises(ValueError, match=message):
        module.parse_params(parameters)


def test_grouping_model_execute(grouping_model):
    _, model = grouping_model
    center, scale = np.float32([320, 212]), np.float32([3.453125, 2.125])
    empty_maps = np.zeros((2, 34, 128, 208), np.float32)
    good, bad = model.execute([
        request("grouping", OUTPUT=empty_maps, CENTER=center, SCALE=scale),
        request("grouping", OUTPUT=np.zeros((2, 33, 128, 208), np.float32), CENTER=center, SCALE=scale),
    ])
    got = outputs(good)
    assert got["KEYPOINTS"].shape == (0, 17, 3) and got["KEYPOINTS"].dtype == np.float32
    assert got["SCORES"].shape == (0,) and got["SCORES"].dtype == np.float32
    assert_invalid_arg(bad, "grouping")
