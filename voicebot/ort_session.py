"""The one way voicebot opens an ONNX Runtime session.

CPU only, ``threads`` intra-op threads given by the caller (the scheduler's
budget), one inter-op thread, sequential execution, and spinning OFF: a
spinning ORT thread burns its core between calls, which would steal the time
other dialogs on the same core need.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from voicebot.errors import ConfigError, EngineError, EngineUnavailableError

__all__ = ["open_session"]


def open_session(path: Path, *, threads: int, what: str) -> Any:
    """An ``onnxruntime.InferenceSession`` for ``path``; ``what`` names it in errors."""
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
    try:
        return ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # onnxruntime raises its own exception classes
        raise EngineError(f"cannot load the {what} {path}: {exc}") from exc
