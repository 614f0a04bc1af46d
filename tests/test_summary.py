"""bit_summary() and the EBOPs penalty."""

import keras
import numpy as np
from keras import ops

import hgq_fpga
from hgq_fpga.layers import QDense


def test_summary_counts_pruned_weights_from_qkernel(rng):
    model = keras.Sequential([keras.Input((6,)), QDense(5, name="d")])
    layer = model.get_layer("d")
    f = np.where(rng.random((6, 5)) < 0.4, -4.0, 6.0).astype("float32")
    layer.kernel_quantizer.set_f(f)
    summary = hgq_fpga.bit_summary(model)
    qk = ops.convert_to_numpy(layer.qkernel)
    qb = ops.convert_to_numpy(layer.qbias)
    zeros = np.count_nonzero(qk == 0) + np.count_nonzero(qb == 0)
    assert summary.n_weights == 35
    assert summary.pruned_fraction == zeros / 35
    assert "total" in str(summary)


def test_ebops_penalty_is_a_loss_and_lowers_bits(rng):
    x = rng.random((256, 8)).astype("float32")
    y = (x @ rng.standard_normal((8, 3))).astype("float32")

    def fit(penalty):
        keras.utils.set_random_seed(3)
        model = keras.Sequential([keras.Input((8,)), QDense(3, ebops_penalty=penalty)])
        model.compile(keras.optimizers.Adam(0.05), "mse")
        model.fit(x, y, epochs=5, batch_size=32, verbose=0)
        hgq_fpga.calibrate(model, x)
        return model

    plain, penalized = fit(0.0), fit(1e-2)
    assert float(ops.convert_to_numpy(penalized.layers[0].ebops())) > 0
    assert (
        hgq_fpga.bit_summary(penalized).mean_weight_bits
        < hgq_fpga.bit_summary(plain).mean_weight_bits - 1.0
    )


def test_bit_summary_in_a_notebook(rng):
    model = keras.Sequential([keras.Input((6,)), QDense(5, name="d<&>"), QDense(2, name="e")])
    summary = hgq_fpga.bit_summary(model)
    r = repr(summary)
    assert "\n" not in r and r.startswith(f"BitSummary(n_weights={summary.n_weights}, ")
    assert r.endswith("layers=2)")
    text = summary._repr_html_()
    assert "<table" in text and "d&lt;&amp;&gt;" in text and "d<&>" not in text
    assert text.count("<tr>") == 1 + 2 + 1  # header, two layers, total
    df = summary.to_pandas()
    assert list(df.columns) == ["layer", "n_weights", "mean_weight_bits", "pruned_fraction", "mean_activation_bits"]
    assert list(df.layer) == ["d<&>", "e"] and df.n_weights.sum() == summary.n_weights
    assert "total" in str(summary)  # __str__ unchanged
