"""One pose request: an encoded image in, people's keypoints and scores out."""

from __future__ import annotations

import numpy as np
import tritonclient.grpc as grpcclient

DEFAULT_MODEL = "hrnet_pose"
IMAGE_INPUT = "IMAGE"
KEYPOINTS_OUTPUT = "KEYPOINTS"   # FP32 [P,17,3]: x, y, score in original-image pixels
SCORES_OUTPUT = "SCORES"         # FP32 [P]


def infer_pose(client: grpcclient.InferenceServerClient, model: str,
               image_bytes: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints [P,17,3] and person scores [P] for one encoded JPEG/PNG."""
    image = grpcclient.InferInput(IMAGE_INPUT, [1], "BYTES")
    image.set_data_from_numpy(np.array([image_bytes], dtype=np.object_))
    outputs = [grpcclient.InferRequestedOutput(KEYPOINTS_OUTPUT),
               grpcclient.InferRequestedOutput(SCORES_OUTPUT)]
    result = client.infer(model, [image], outputs=outputs)
    keypoints, scores = result.as_numpy(KEYPOINTS_OUTPUT), result.as_numpy(SCORES_OUTPUT)
    if keypoints is None or scores is None:
        raise ValueError(f"the response of '{model}' lacks {KEYPOINTS_OUTPUT} or {SCORES_OUTPUT}")
    return keypoints.reshape(-1, 17, 3), scores.reshape(-1)
