"""Accuracy against LUTs: hgq_fpga's budgeted training against HGQ2's beta, on the digits MLP.

Run:  python benchmarks/pareto.py [--epochs 30] [--hgq2-epochs 300] [--fractions ...] [--betas ...]
                                   [--out out/pareto]
(needs the ``bench`` extra: ``pip install -e '.[bench]'`` for hgq2 0.2.0)

Both train the 64-64-32-32-10 MLP on the same digits split, batch size and
optimizer; HGQ2 for ``--hgq2-epochs`` (default: the same ``--epochs``; its own
examples train 200 to 3,000 epochs). hgq_fpga trains under LUT budgets at fractions of its
unconstrained cost (``ResourceBudget``, no tuning); HGQ2 trains with its EBOPs
regularizer, beta ramped (log) from 1e-7 to each final value, as in its
examples. The common yardstick: each HGQ2 model is transplanted into an
hgq_fpga model -- its quantized weights and biases exactly, its input
fractional bits per element exactly, integer bits from calibration on the
training set, as for hgq_fpga's own models -- and costed with the same exact
estimate (``hgq_fpga.estimate``). Accuracy: hgq_fpga's emulated firmware on
the test split; HGQ2's own ``predict`` (and the transplant's, as a check).
BLAS, OpenMP and TensorFlow's intra-op pool run one thread each (the machine is shared).
"""

from __future__ import annotations

import os

for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "TF_NUM_INTRAOP_THREADS"):
    os.environ.setdefault(_v, "1")  # one thread each: the machine is shared (BENCHMARKS.md says so)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import keras  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "examples"))

import hgq_fpga  # noqa: E402
from hgq_fpga.constraints.sweep import SweepPoint, pareto_sweep, plot_pareto, save_sweep  # noqa: E402
from hgq_fpga.datasets import digits  # noqa: E402
from hgq_fpga.layers import QDense  # noqa: E402

UNITS = (64, 32, 32, 10)


def ours(rounding: str = "TRN") -> keras.Model:
    iq = {"rounding": rounding}
    layers = [QDense(u, activation="relu" if n < 3 else None, input_quantizer=iq, name=f"d{n}")
              for n, u in enumerate(UNITS)]
    model = keras.Sequential([keras.Input((64,)), *layers], name="mlp")
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def hgq2_model(beta: float) -> keras.Model:
    from hgq.layers import QDense as HDense

    layers = [HDense(u, activation="relu" if n < 3 else None, beta0=beta) for n, u in enumerate(UNITS)]
    model = keras.Sequential([keras.Input((64,)), *layers])
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    return model


def transplant(h: keras.Model, x: np.ndarray) -> keras.Model:
    """An hgq_fpga model computing HGQ2's quantized arithmetic (see the module docstring)."""
    q = ours(rounding="RND")  # HGQ2's activations round (RND) and wrap (WRAP)
    q(x[:2])
    for hl, ql in zip([la for la in h.layers if hasattr(la, "kq")], [la for la in q.layers if isinstance(la, QDense)]):
        ql.kernel.assign(keras.ops.convert_to_numpy(hl.qkernel))
        ql.bias.assign(keras.ops.convert_to_numpy(hl.qbias))
        ql.kernel_quantizer.set_f(np.full(ql.kernel_quantizer.bits_shape, 24.0))
        ql.bias_quantizer.set_f(np.full(ql.bias_quantizer.bits_shape, 24.0))
        f = np.asarray(keras.ops.convert_to_numpy(hl.iq.quantizer.f), np.float64)
        ql.input_quantizer.set_f(np.broadcast_to(f.reshape(-1)[-ql.input_quantizer.bits_size:],
                                                 ql.input_quantizer.bits_shape))
    hgq_fpga.calibrate(q, x)
    return q


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--hgq2-epochs", type=int, default=None, help="HGQ2's epochs (default: --epochs)")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.05, 0.1, 0.2, 0.35, 0.5, 1.0])
    parser.add_argument("--betas", type=float, nargs="+", default=[1e-6, 3e-6, 1e-5, 3e-5, 1e-4, 3e-4])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("out/pareto"))
    args = parser.parse_args(argv)
    from hgq.utils.sugar import BetaScheduler

    d = digits(seed=args.seed)
    train, test = (d.x_train, d.y_train), (d.x_test, d.y_test)
    keras.utils.set_random_seed(args.seed)
    free = ours()
    free.fit(*train, epochs=args.epochs, batch_size=32, verbose=0)
    hgq_fpga.calibrate(free, d.x_train)
    full = hgq_fpga.estimate(free).lut
    budgets = [f * full for f in args.fractions]
    mine = pareto_sweep(ours, train, test, budgets, epochs=args.epochs, seed=args.seed)

    theirs, rows = [], []
    h_epochs = args.hgq2_epochs or args.epochs
    for beta in args.betas:
        keras.utils.set_random_seed(args.seed)
        h = hgq2_model(1e-7)
        ramp = BetaScheduler(lambda e, b=beta: float(1e-7 * (b / 1e-7) ** (e / max(h_epochs - 1, 1))))
        t0 = time.perf_counter()
        h.fit(*train, epochs=h_epochs, batch_size=32, verbose=0, callbacks=[ramp])
        seconds = time.perf_counter() - t0
        acc_h = float(np.mean(np.argmax(h.predict(d.x_test, verbose=0), axis=1) == d.y_test))
        q = transplant(h, d.x_train)
        report = hgq_fpga.estimate(q)
        acc_q = float(np.mean(np.argmax(hgq_fpga.emulate(q, d.x_test), axis=1) == d.y_test))
        ebops_h = float(sum(float(keras.ops.convert_to_numpy(la.ebops)) for la in h.layers if hasattr(la, "ebops")))
        theirs.append(SweepPoint(float("nan"), report.lut, report.dsp, report.ebops, acc_h, True, 0, seconds,
                                 f"hgq2 beta={beta:g}", args.seed))
        rows.append({"beta": beta, "lut": report.lut, "accuracy": acc_h, "transplant_accuracy": acc_q,
                     "hgq2_ebops": ebops_h, "ebops": report.ebops})

    print(f"hgq_fpga (unconstrained {full:.0f} LUTs)")
    print(f"{'budget':>8} {'LUT':>8} {'accuracy':>8} {'inside':>6}")
    for p in mine:
        print(f"{p.budget_lut:>8.0f} {p.lut:>8.0f} {p.accuracy:>8.3f} {'yes' if p.feasible else 'NO':>6}")
    print(f"HGQ2 ({h_epochs} epochs)")
    print(f"{'beta':>8} {'LUT':>8} {'accuracy':>8} {'transplant acc':>14} {'HGQ2 EBOPs':>10}")
    for r in rows:
        print(f"{r['beta']:>8.0e} {r['lut']:>8.0f} {r['accuracy']:>8.3f} {r['transplant_accuracy']:>14.3f} "
              f"{r['hgq2_ebops']:>10.0f}")
    dominated = [any(p.lut <= r["lut"] and p.accuracy >= r["accuracy"] for p in mine) for r in rows]
    print(f"HGQ2 points dominated by an hgq_fpga point (no more LUTs, no less accuracy): "
          f"{sum(dominated)} of {len(rows)}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save_sweep(mine, f"{args.out}_hgq_fpga.csv")
    Path(f"{args.out}_hgq2.json").write_text(json.dumps(rows, indent=1))
    plot_pareto({"hgq_fpga (budget)": mine, "HGQ2 (beta)": theirs}, f"{args.out}.png",
                title="digits MLP: accuracy against LUTs (same exact estimate)")
    print(f"wrote {args.out}.png")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
