"""Word features of a scenario's examples: TF-IDF over word unigrams and bigrams (SciPy CSR).

The sentence embedding hears what a phrase means; it blurs which words were said.
Intent names often hang on one word ("PIN", "top-up", "refund"), so
:mod:`voicebot.nlu.classifier` adds a third expert: a softmax regression
(:mod:`voicebot.nlu.softmax_regression`) on these features.

:class:`LexicalFeatures` learns its vocabulary from the examples (terms never seen
in an example would carry no weight anyway) and turns texts into
:class:`SparseRows`: L2-normalised TF-IDF rows (smoothed idf, binary term
frequency) plus a constant bias column, as a SciPy CSR matrix.  The vocabulary
grows with the examples (about ten terms per example), so rows stay sparse and
products are done on the non-zeros only: the features of a 10,000-example
scenario never become a dense matrix.  Only ``scipy.sparse`` is imported (about
20 MB of a worker's memory); scikit-learn's vectoriser is not worth its install
for a tokeniser of two lines.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from scipy import sparse

__all__ = ["LexicalFeatures", "SparseRows", "terms"]

F32 = npt.NDArray[np.float32]
I64 = npt.NDArray[np.int64]
_WORD = re.compile(r"[a-z0-9']+")


def terms(text: str) -> set[str]:
    """The words of ``text`` (lower-cased) and its adjacent word pairs."""
    words = _WORD.findall(text.lower())
    return set(words) | {f"{a} {b}" for a, b in itertools.pairwise(words)}


class SparseRows:
    """A CSR matrix ``[n, width]`` (SciPy's) whose every row holds the bias column."""

    def __init__(self, indptr: I64, indices: I64, data: F32, *, width: int) -> None:
        if (indptr.ndim != 1 or indptr[0] != 0 or indptr[-1] != len(indices)
                or len(indices) != len(data)):
            raise ValueError("indptr, indices and data do not match")
        if (np.diff(indptr) < 1).any():
            raise ValueError("every row needs a non-zero (the bias column)")
        self._matrix = sparse.csr_array((data, indices, indptr),
                                        shape=(len(indptr) - 1, width))
        self._transposed: sparse.csr_array | None = None

    @property
    def shape(self) -> tuple[int, int]:
        rows, width = self._matrix.shape
        return int(rows), int(width)

    def take(self, rows: I64) -> SparseRows:
        """The rows ``rows`` (in that order) as a new matrix."""
        picked = self._matrix[rows]
        return SparseRows(picked.indptr.astype(np.int64), picked.indices.astype(np.int64),
                          picked.data.astype(np.float32), width=self.shape[1])

    def __matmul__(self, weights: F32) -> F32:
        """``self @ weights`` for dense ``weights`` ``[width, K]``."""
        return np.asarray(self._matrix @ weights, dtype=np.float32)

    def transpose_matmul(self, residual: F32) -> F32:
        """``self.T @ residual`` for dense ``residual`` ``[n, K]``."""
        if self._transposed is None:
            self._transposed = self._matrix.T.tocsr()
        return np.asarray(self._transposed @ residual, dtype=np.float32)

    def dense(self) -> F32:
        """The matrix as a dense array (for checks; rows of a real scenario stay sparse)."""
        return np.asarray(self._matrix.toarray(), dtype=np.float32)


class LexicalFeatures:
    """A vocabulary and idf learnt from example texts; turns texts into :class:`SparseRows`."""

    def __init__(self, examples: Sequence[str]) -> None:
        found = [terms(text) for text in examples]
        counts: dict[str, int] = {}
        for words in found:
            for word in words:
                counts[word] = counts.get(word, 0) + 1
        vocabulary = sorted(counts)
        self.vocabulary = {word: i for i, word in enumerate(vocabulary)}
        df = np.array([counts[word] for word in vocabulary], dtype=np.float64)
        self.idf: F32 = (np.log((1.0 + len(found)) / (1.0 + df)) + 1.0).astype(np.float32)

    @property
    def width(self) -> int:
        """Columns: one per term, then the bias column."""
        return len(self.vocabulary) + 1

    def transform(self, texts: Sequence[str]) -> SparseRows:
        """L2-normalised TF-IDF rows of ``texts`` with a bias column of 1 (unknown terms
        dropped; a text with none is the bias alone)."""
        indptr, indices, data = [0], [], []
        bias = len(self.vocabulary)
        for text in texts:
            cols = sorted(j for j in (self.vocabulary.get(t) for t in terms(text))
                          if j is not None)
            weights = self.idf[cols] if cols else np.zeros(0, np.float32)
            norm = float(np.linalg.norm(weights)) or 1.0
            indices.extend([*cols, bias])
            data.extend([*(weights / norm).tolist(), 1.0])
            indptr.append(len(indices))
        return SparseRows(np.asarray(indptr, np.int64), np.asarray(indices, np.int64),
                          np.asarray(data, np.float32), width=self.width)
