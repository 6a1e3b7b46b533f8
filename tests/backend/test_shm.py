"""System shared memory over real RPCs: regions made with tritonclient's helper, inputs read
from them and outputs written into them (with offsets and bounds checks), Status, Unregister."""

import os

import numpy as np
import pytest
import tritonclient.grpc as grpcclient
import tritonclient.utils.shared_memory as shm

from tests.backend.rpc_helpers import expect_error, infer_input

DATA = np.arange(8, dtype=np.float32).reshape(1, 8)


@pytest.fixture
def regions(triton_client):
    """Creates POSIX regions on demand (unique keys per test process); unregisters and
    destroys them afterwards."""
    made = []

    def make(name, byte_size):
        handle = shm.create_shared_memory_region(name, f"/{name}_{os.getpid()}", byte_size)
        made.append((name, handle))
        return handle, f"/{name}_{os.getpid()}"
    yield make
    for name, handle in made:
        triton_client.unregister_system_shared_memory(name)
        shm.destroy_shared_memory_region(handle)


def _shm_input(name, region, shape, byte_size, offset=0, datatype="FP32"):
    inp = grpcclient.InferInput(name, shape, datatype)
    inp.set_shared_memory(region, byte_size, offset)
    return inp


def _shm_output(name, region, byte_size, offset=0):
    out = grpcclient.InferRequestedOutput(name)
    out.set_shared_memory(region, byte_size, offset)
    return out


def test_inputs_and_outputs_in_shared_memory(triton_client, regions):
    in_handle, in_key = regions("shm_in", DATA.nbytes)
    out_handle, out_key = regions("shm_out", DATA.nbytes)
    shm.set_shared_memory_region(in_handle, [DATA])
    triton_client.register_system_shared_memory("shm_in", in_key, DATA.nbytes)
    triton_client.register_system_shared_memory("shm_out", out_key, DATA.nbytes)
    result = triton_client.infer("identity", [_shm_input("INPUT0", "shm_in", [1, 8], DATA.nbytes)],
                                 outputs=[_shm_output("OUTPUT0", "shm_out", DATA.nbytes)])
    resp = result.get_response()
    # The data is in the region; the response keeps an (empty) raw entry so indices align.
    assert list(resp.raw_output_contents) == [b""]
    params = resp.outputs[0].parameters
    assert params["shared_memory_region"].string_param == "shm_out"
    assert params["shared_memory_byte_size"].int64_param == DATA.nbytes
    np.testing.assert_array_equal(shm.get_contents_as_numpy(out_handle, np.float32, [1, 8]), DATA)


def test_offsets_in_register_and_in_request(triton_client, regions):
    handle, key = regions("shm_off", 256)
    a, b = np.full(4, 3, np.float32), np.full(4, 5, np.float32)
    shm.set_shared_memory_region(handle, [a], offset=64 + 16)
    shm.set_shared_memory_region(handle, [b], offset=64 + 32)
    # The region starts 64 bytes into the POSIX object; requests add their own offsets.
    triton_client.register_system_shared_memory("shm_off", key, 128, offset=64)
    result = triton_client.infer(
        "add_sub", [_shm_input("INPUT0", "shm_off", [4], 16, offset=16),
                    _shm_input("INPUT1", "shm_off", [4], 16, offset=32)],
        outputs=[_shm_output("OUTPUT0", "shm_off", 16, offset=48), grpcclient.InferRequestedOutput("OUTPUT1")])
    np.testing.assert_array_equal(shm.get_contents_as_numpy(handle, np.float32, [4], offset=64 + 48), a + b)
    np.testing.assert_array_equal(result.as_numpy("OUTPUT1"), a - b)  # mixed: raw output


def test_status_and_unregister(triton_client, regions):
    _, key1 = regions("shm_s1", 64)
    _, key2 = regions("shm_s2", 64)
    triton_client.register_system_shared_memory("shm_s1", key1, 32, offset=16)
    triton_client.register_system_shared_memory("shm_s2", key2, 64)
    status = triton_client.get_system_shared_memory_status("shm_s1").regions
    assert list(status) == ["shm_s1"]
    r = status["shm_s1"]
    assert (r.name, r.key, r.offset, r.byte_size) == ("shm_s1", key1, 16, 32)
    assert {"shm_s1", "shm_s2"} <= set(triton_client.get_system_shared_memory_status().regions)
    triton_client.unregister_system_shared_memory("shm_s1")
    assert "shm_s1" not in triton_client.get_system_shared_memory_status().regions
    with expect_error("NOT_FOUND", "'shm_s1'"):
        triton_client.get_system_shared_memory_status("shm_s1")
    triton_client.unregister_system_shared_memory()  # empty name: all of them
    assert not triton_client.get_system_shared_memory_status().regions


def test_register_errors(triton_client, regions):
    _, key = regions("shm_r", 64)
    triton_client.register_system_shared_memory("shm_r", key, 64)
    with expect_error("ALREADY_EXISTS", "shared memory region 'shm_r' already in manager"):
        triton_client.register_system_shared_memory("shm_r", key, 64)
    with expect_error("INVALID_ARGUMENT", "Invalid offset + byte size for shared memory region: 'shm_r2'"):
        triton_client.register_system_shared_memory("shm_r2", key, 64, offset=8)
    with expect_error("INVALID_ARGUMENT", "Invalid offset + byte size for shared memory region: 'shm_r3'"):
        triton_client.register_system_shared_memory("shm_r3", key, 65)
    with expect_error("INVALID_ARGUMENT", "Unable to open shared memory region", "'shm_r4'"):
        triton_client.register_system_shared_memory("shm_r4", "/no_such_key_for_tests", 8)
    with expect_error("INVALID_ARGUMENT", "Unable to open shared memory region", "'shm_r5'"):
        triton_client.register_system_shared_memory("shm_r5", "/../etc/passwd", 8)


def test_request_errors(triton_client, regions):
    handle, key = regions("shm_q", 32)
    shm.set_shared_memory_region(handle, [DATA])
    triton_client.register_system_shared_memory("shm_q", key, 32)
    with expect_error("NOT_FOUND", "Unable to find shared memory region: 'shm_unknown'"):
        triton_client.infer("identity", [_shm_input("INPUT0", "shm_unknown", [1, 8], 32)])
    with expect_error("INVALID_ARGUMENT", "Invalid offset + byte size for shared memory region: 'shm_q'"):
        triton_client.infer("identity", [_shm_input("INPUT0", "shm_q", [1, 8], 32, offset=4)])
    with expect_error("INVALID_ARGUMENT", "input byte size mismatch for input 'INPUT0' for model 'identity'"):
        triton_client.infer("identity", [_shm_input("INPUT0", "shm_q", [1, 8], 16)])
    # Output region too small for the result: Triton's message and code.
    with expect_error("INTERNAL", "shared memory size specified with the request for output 'OUTPUT0' "
                                  "(16 bytes) should be at least 32 bytes to hold the results"):
        triton_client.infer("identity", [infer_input("INPUT0", DATA)],
                            outputs=[_shm_output("OUTPUT0", "shm_q", 16)])


def test_unregistered_region_cannot_be_used(triton_client, regions):
    handle, key = regions("shm_u", 32)
    shm.set_shared_memory_region(handle, [DATA])
    triton_client.register_system_shared_memory("shm_u", key, 32)
    triton_client.unregister_system_shared_memory("shm_u")
    with expect_error("NOT_FOUND", "Unable to find shared memory region: 'shm_u'"):
        triton_client.infer("identity", [_shm_input("INPUT0", "shm_u", [1, 8], 32)])
