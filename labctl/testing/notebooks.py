"""Run a notebook top to bottom in a real Jupyter kernel, as the notebook tests do.

nbclient and nbformat come with the test extra; they are imported when a notebook runs.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any


class NotebookFailed(AssertionError):
    """A cell raised: names the notebook, the cell number and the error."""


def python3_kernel() -> str:
    """The kernel spec of this interpreter; ipykernel registers it as ``python3``."""
    from jupyter_client.kernelspec import KernelSpecManager

    specs = KernelSpecManager().find_kernel_specs()
    if "python3" not in specs:
        raise NotebookFailed(f"no python3 kernel spec for {sys.executable}; found {sorted(specs)}")
    return "python3"


def execute_notebook(
    path: Path, *, env: Mapping[str, str] | None = None, timeout_s: float = 120.0
) -> Any:
    """Execute ``path`` in its own folder with ``env`` added; return the executed notebook.

    The repository root (the notebook's parent's parent) goes first on PYTHONPATH so the
    kernel imports this checkout. Raises NotebookFailed naming the first failing cell.
    """
    import nbformat
    from nbclient import NotebookClient

    repo = path.resolve().parents[1]
    saved = dict(os.environ)
    os.environ.update(env or {})
    os.environ["PYTHONPATH"] = os.pathsep.join([str(repo), saved.get("PYTHONPATH", "")])
    try:
        notebook = nbformat.read(path, as_version=4)  # type: ignore[no-untyped-call]
        client = NotebookClient(
            notebook,
            timeout=timeout_s,
            kernel_name=python3_kernel(),
            resources={"metadata": {"path": str(path.parent)}},
        )
        client.execute()
    finally:
        os.environ.clear()
        os.environ.update(saved)
    for number, cell in enumerate(notebook.cells):
        for output in cell.get("outputs", []) if cell.cell_type == "code" else []:
            if output.get("output_type") == "error":
                raise NotebookFailed(
                    f"{path.name} cell {number}: {output.get('ename')}: {output.get('evalue')}"
                )
    return notebook


def inline_images(notebook: Any) -> int:
    """How many PNG images the executed ``notebook`` shows inline (plots in its outputs)."""
    return sum(
        1
        for cell in notebook.cells
        if cell.cell_type == "code"
        for output in cell.get("outputs", [])
        if "image/png" in output.get("data", {})
    )
