"""Every row names where it ran: on a GPU its model, the CUDA version and the driver version."""

import subprocess

import torch

from benchmark import results
from benchmark.results import COLUMNS, gpu_facts, provenance


def test_cpu_rows_have_no_gpu_facts():
    facts = provenance("cpu")
    assert {"gpu_model", "cuda_version", "driver_version"} <= set(COLUMNS) and set(facts) <= set(COLUMNS)
    assert (facts["gpu_model"], facts["cuda_version"], facts["driver_version"]) == (None, None, None)


def test_gpu_facts_name_the_model_cuda_and_driver(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: f"NVIDIA H200 #{i}")
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    calls = []

    def smi(cmd, **kw):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, stdout="570.86.15\n", stderr="")

    monkeypatch.setattr(results.subprocess, "run", smi)
    assert gpu_facts("cuda:1") == {"gpu_model": "NVIDIA H200 #1", "cuda_version": "12.8", "driver_version": "570.86.15"}
    assert calls and "--id=1" in calls[0]

    def missing(cmd, **kw):
        raise FileNotFoundError("nvidia-smi")

    monkeypatch.setattr(results.subprocess, "run", missing)
    assert gpu_facts("cuda") == {"gpu_model": "NVIDIA H200 #0", "cuda_version": "12.8", "driver_version": None}
