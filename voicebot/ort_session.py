"""The one way voicebot opens an ONNX Runtime session.

CPU by default (``providers`` puts it on CUDA), ``threads`` intra-op threads given by
the caller (the scheduler's budget), one inter-op thread, sequential execution, and
spinning OFF: a spinning ORT thread burns its core between calls, which would steal
the time other dialogs on the same core need.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from voicebot.errors import ConfigError, EngineError, EngineUnavailableError

__all__ = ["open_session"]


def open_session(path: Path, *, threads: int, what: str,
                 providers: Sequence[Any] | None = None, memory_arena: bool = True) -> Any:
    """An ``onnxruntime.InferenceSession`` for ``path``; ``what`` names it in errors.

    ``providers``: ONNX Runtime's list (default the CPU provider only); a GPU engine
    passes :func:`voicebot.engines.devices.ort_providers` ``("cuda")``.
    ``memory_arena=False`` frees each run's buffers instead of keeping the peak (for a
    model run on batches of very different sizes)."""
    if threads < 1:
        raise ConfigError(f"{what}: threads must be at least 1, not {threads}")
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise EngineUnavailableError("onnxruntime is not installed") from exc
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.add_session_config_entry("session.inter_op.allow_spinning", "0")
    options.log_severity_level = 3
    if not memory_arena:  # inputs of varying shape: memory goes back after each run
        options.enable_cpu_mem_arena = False
        options.enable_mem_pattern = False
    asked = list(providers) if providers else ["CPUExecutionProvider"]
    try:
        session = ort.InferenceSession(str(path), sess_options=options, providers=asked)
    except Exception as exc:  # onnxruntime raises its own exception classes
        raise EngineError(f"cannot load the {what} {path}: {exc}") from exc
    first = asked[0][0] if isinstance(asked[0], tuple) else asked[0]
    if first not in session.get_providers():  # ORT falls back to CPU with a mere warning
        raise EngineUnavailableError(f"{what}: onnxruntime cannot run on {first} here "
                                     f"(it has {', '.join(session.get_providers())})")
    return session
