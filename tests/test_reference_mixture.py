"""What a Gaussian mixture fitted from several initialisations reports about itself: the kept start's lower
bound, iteration count, convergence flag, bound history and parameters, where the best start is not the last.

The reference is the same starts fitted one at a time: `n_init` fits draw their initialisations one after the
other from `random_state`, so single fits sharing one torch.Generator replay them."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from genzoo.mixture import ConvergenceWarning, GaussianMixture


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_a_multi_start_fit_reports_its_best_start_not_its_last(data, covariance_type):
    kw = {"covariance_type": covariance_type, "init_params": "random_from_data", "max_iter": 10, "tol": 1e-3}
    telling = 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for seed in range(6):
            shared = torch.Generator().manual_seed(seed)
            starts = [GaussianMixture(4, random_state=shared, **kw).fit(data) for _ in range(3)]
            multi = GaussianMixture(4, n_init=3, random_state=torch.Generator().manual_seed(seed), **kw).fit(data)
            bounds = [s.lower_bound_ for s in starts]
            best = starts[int(np.argmax(bounds))]  # the first of equal bounds, as a strict ">" keeps
            assert multi.lower_bound_ == best.lower_bound_ == max(bounds), seed
            assert multi.n_iter_ == best.n_iter_ and multi.converged_ == best.converged_, seed
            assert multi.lower_bounds_ == best.lower_bounds_, seed
            for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
                np.testing.assert_array_equal(getattr(multi, name), getattr(best, name), err_msg=f"{seed} {name}")
            np.testing.assert_array_equal(multi.predict(data), best.predict(data))
            last = starts[-1]
            if best is not last and (best.n_iter_, best.converged_) != (last.n_iter_, last.converged_):
                telling += 1
    assert telling >= 1  # a seed where reporting the last start instead of the best shows in every attribute


def test_a_multi_start_fit_reports_each_iteration_of_every_start(data, capsys):
    """`on_iteration` gets every start's bound after each iteration; `verbose` prints the first iteration and every
    `verbose_interval`-th one of each start, with the change from the previous bound (from -inf at a start's first);
    the fit keeps the history of its best start."""
    seen = []
    gm = GaussianMixture(3, n_init=2, max_iter=5, tol=0, init_params="random", random_state=0, verbose=1,
                         verbose_interval=2, on_iteration=seen.append)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        gm.fit(data)
    starts = [seen[:5], seen[5:]]
    assert len(seen) == 10 and starts[0] != starts[1]
    lines = []
    for init, bounds in enumerate(starts):
        previous = [-np.inf, *bounds[:-1]]
        lines += [f"init {init} iteration {n}: lower bound {b:.6f} (change {b - p:.3g})"
                  for n, (b, p) in enumerate(zip(bounds, previous), 1) if n == 1 or n % 2 == 0]
    assert capsys.readouterr().out.splitlines() == lines
    best = max(starts, key=lambda bounds: bounds[-1])
    assert gm.lower_bounds_ == best and gm.lower_bound_ == best[-1] and gm.n_iter_ == 5 and not gm.converged_
