"""Linear programs through HiGHS (the solver behind scipy's ``linprog(method="highs")``,
called through its own binding, ``highspy``: importing scipy.optimize takes longer than a small
simulation). Used by the lower bound (:mod:`simscale.simulator.bounds`)."""

from __future__ import annotations

import math
import os
import sys
from typing import Any

import numpy as np

__all__ = ["highs_min"]


def highs_min(cost: np.ndarray, lower: np.ndarray, upper: np.ndarray, rows: np.ndarray,
              cols: np.ndarray, vals: np.ndarray, b_ub: np.ndarray) -> float:
    """``min cost @ x`` subject to ``A x <= b_ub`` (``A`` given by its entries ``rows, cols,
    vals``) and ``lower <= x <= upper``, solved by HiGHS on one thread, silently. NaN when
    HiGHS finds no optimum."""
    import highspy

    order = np.lexsort((cols, rows))
    n_row = len(b_ub)
    lp = highspy.HighsLp()
    lp.num_col_ = len(cost)
    lp.num_row_ = n_row
    lp.col_cost_ = cost
    lp.col_lower_ = lower
    lp.col_upper_ = np.where(np.isinf(upper), highspy.kHighsInf, upper)
    lp.row_lower_ = np.full(n_row, -highspy.kHighsInf)
    lp.row_upper_ = np.asarray(b_ub, dtype=float)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kRowwise
    lp.a_matrix_.num_col_ = len(cost)
    lp.a_matrix_.num_row_ = n_row
    lp.a_matrix_.start_ = np.searchsorted(rows[order], np.arange(n_row + 1)).astype(np.int32)
    lp.a_matrix_.index_ = cols[order].astype(np.int32)
    lp.a_matrix_.value_ = vals[order]
    h = _highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", 1)
    h.passModel(lp)
    h.run()
    if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
        return math.nan
    return float(h.getInfo().objective_function_value)


_HIGHS_GREETED = False  # (HiGHS prints its banner at the first solver a process makes)


def _highs() -> Any:
    """A new HiGHS solver, made without the banner HiGHS 1.7+ writes to the process's standard
    output when a process makes its first one (before any option can turn output off): the
    first is made with file descriptor 1 pointed at the null device."""
    global _HIGHS_GREETED
    import highspy

    if _HIGHS_GREETED:
        return highspy.Highs()
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "wb") as null:
            os.dup2(null.fileno(), 1)
            h = highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    _HIGHS_GREETED = True
    return h
