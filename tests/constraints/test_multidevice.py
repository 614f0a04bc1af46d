"""ResourceBudget on two devices: ``tf.distribute.MirroredStrategy`` (TensorFlow)
and ``keras.distribution.DataParallel`` (JAX), on CPUs split into two simulated
devices.

The devices must be configured before the backend starts, so each backend runs
in a subprocess of its own; it trains the same seeded digits MLP under the same
budget on one device and on two, and prints the numbers as one JSON line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

BUDGET = 3000
EPOCHS = 3

_COMMON = """
import json, time
import keras
import numpy as np
from keras import ops
import hgq_fpga
from hgq_fpga.constraints import ResourceBudget
from hgq_fpga.datasets import digits
from hgq_fpga.layers import QDense
from hgq_fpga.quantizers.cost import model_luts
from hgq_fpga.resources import estimate

BUDGET = {budget}
EPOCHS = {epochs}
data = digits(seed=0)
x, y = data.x_train[:1216], data.y_train[:1216]  # 19 batches of 64: even batches for two devices


class Probe(keras.callbacks.Callback):
    \"\"\"Before the budget reads it: the hook's LUTs of the last step / the model's own.\"\"\"

    def __init__(self, budget):
        super().__init__()
        self.budget, self.ratios, self.spread, self.epochs, self.t0 = budget, [], [], [], 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.t0 = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(round(time.perf_counter() - self.t0, 2))
        # the ranges the replicas tracked this epoch (before the budget's check resets them):
        # the largest difference between the copies of vmin/vmax (MirroredVariable: one per device)
        copies = [getattr(v.value, "values", None) for layer in self.model.layers
                  for v in (layer.input_quantizer.vmin, layer.input_quantizer.vmax)]
        self.spread.append(max([float(np.ptp(np.stack([np.asarray(c) for c in cs]), axis=0).max())
                                for cs in copies if cs] or [0.0]))

    def on_train_batch_end(self, batch, logs=None):
        steering = self.budget.steering  # the steps that recorded their cost since the budget's last read
        steps = steering._since + steering.recording
        if not steps:
            return
        sync = getattr(self.model, "jax_state_sync", None)
        if sync is not None:
            sync()
        acc = float(ops.convert_to_numpy(self.budget.hook.acc))
        self.ratios.append(acc / steps / float(ops.convert_to_numpy(model_luts(self.model))))


def train():
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((64,)), QDense(32, activation="relu"), QDense(10)])
    model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  metrics=["accuracy"])
    # the rule that computes the cost in the training step (method="step" reads it outside)
    budget = ResourceBudget(lut=BUDGET, calibration_data=x, verbose=0, sensitivities=False, method="constraint")
    probe = Probe(budget)
    start = time.perf_counter()
    model.fit(x, y, batch_size=64, epochs=EPOCHS, validation_data=(data.x_test, data.y_test), verbose=0,
              callbacks=[probe, budget])
    seconds = time.perf_counter() - start
    predicted = np.argmax(ops.convert_to_numpy(model.predict(data.x_test, batch_size=60, verbose=0)), axis=-1)
    hgq_fpga.calibrate(model, x)  # independently of the callback
    return model, {{"feasible": bool(budget.result.feasible), "result_lut": float(budget.result.report.lut),
                   "lut": float(estimate(model).lut), "accuracy": float(np.mean(predicted == data.y_test)),
                   "ratios": probe.ratios, "spread": probe.spread, "epoch_seconds": probe.epochs, "fit_seconds": round(seconds, 2)}}
"""

_TENSORFLOW = """
import contextlib
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
tf.config.threading.set_intra_op_parallelism_threads(1)
tf.config.threading.set_inter_op_parallelism_threads(2)
{common}

def run(devices):
    strategy = tf.distribute.MirroredStrategy([f"/cpu:{{i}}" for i in range(devices)]) if devices > 1 else None
    with strategy.scope() if strategy else contextlib.nullcontext():
        model, out = train()
    kernel = model.layers[0].kernel.value
    out["replicas"] = strategy.num_replicas_in_sync if strategy else 1
    out["copies"] = sorted(v.device for v in kernel.values) if devices > 1 else [kernel.device]
    return out

print("RESULT", json.dumps({{"one": run(1), "two": run(2)}}))
"""

_JAX = """
import jax
{common}

def run(devices):
    if devices == 1:
        model, out = train()
        out["replicas"] = 1
    else:
        distribution = keras.distribution.DataParallel(devices=jax.devices()[:devices])
        with distribution.scope():
            model, out = train()
        out["replicas"] = len(distribution.device_mesh.devices.flatten())
    out["copies"] = sorted(str(d) for d in model.layers[0].kernel.value.sharding.device_set)
    return out


def run_switch():
    # method="step" on two devices, switched mid-epoch to the step with the cost (as the rule does
    # where a step cannot help) and back by the rule's next read: the hook's variables in the state,
    # and the reads without a sync against the same after one
    with keras.distribution.DataParallel(devices=jax.devices()[:2]).scope():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((64,)), QDense(32, activation="relu"), QDense(10)])
        model.compile(keras.optimizers.Adam(3e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        n = len(model.non_trainable_variables)
        budget = ResourceBudget(lut=1e7, calibration_data=x, verbose=0, sensitivities=False)  # far within
        seen, same = [], []

        def begin(batch, logs):
            if batch == 3:
                budget.steering._steer(1.0, 0.0)
                budget.steering._record(True)

        def end(batch, logs):
            seen.append([budget.hook.in_step, len(model.non_trainable_variables) - n])
            if batch in (4, 15):
                unsynced = budget.steering.soft.luts()
                model.jax_state_sync()
                same.append(bool(np.array_equal(unsynced, budget.steering.soft.luts())))

        model.fit(x, y, batch_size=64, epochs=1, verbose=0,
                  callbacks=[budget, keras.callbacks.LambdaCallback(on_train_batch_begin=begin, on_train_batch_end=end)])
    return {{"seen": seen, "same": same, "feasible": bool(budget.result.feasible)}}

print("RESULT", json.dumps({{"one": run(1), "two": run(2), "switch": run_switch()}}))
"""


def _run(backend: str) -> dict:
    common = _COMMON.format(budget=BUDGET, epochs=EPOCHS)
    script = (_TENSORFLOW if backend == "tensorflow" else _JAX).format(common=common)
    env = {**os.environ, "KERAS_BACKEND": backend, "TF_CPP_MIN_LOG_LEVEL": "2", "OMP_NUM_THREADS": "1"}
    if backend == "jax":  # two host devices; one thread each
        env["XLA_FLAGS"] = ("--xla_force_host_platform_device_count=2 --xla_cpu_multi_thread_eigen=false "
                            "intra_op_parallelism_threads=1")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    assert done.returncode == 0 and lines, f"exit {done.returncode}\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
    return json.loads(lines[-1][len("RESULT "):])


@pytest.mark.parametrize("backend", ["tensorflow", "jax"])
def test_budget_trains_on_two_devices_like_on_one(backend):
    runs = _run(backend)
    print(backend, json.dumps(runs))  # the numbers, with pytest -s
    one, two = runs["one"], runs["two"]
    # (a) the second run really used two replicas, the weights live on both devices
    assert one["replicas"] == 1 and len(one["copies"]) == 1
    assert two["replicas"] == 2 and len(set(two["copies"])) == 2
    for run in (one, two):
        # (b) within the budget by the exact estimate, the callback's and an independent one
        assert run["feasible"] and run["result_lut"] <= BUDGET and run["lut"] <= BUDGET
        # the cost the training step records is the model's, not a sum over replicas
        assert run["ratios"] and all(0.9 < r < 1.1 for r in run["ratios"]), run["ratios"]
        # every replica tracked the ranges of the whole batch (TensorFlow keeps a copy per replica)
        assert run["spread"] == [0.0] * EPOCHS
    # (c) as accurate as on one device, within seed noise, and far above chance (0.1)
    assert one["accuracy"] > 0.5 and two["accuracy"] > 0.5
    assert abs(two["accuracy"] - one["accuracy"]) <= 0.1
    if backend == "jax":  # (d) a switch of training steps mid-epoch on two devices, and back
        switch = runs["switch"]
        assert switch["feasible"] and switch["same"] == [True, True]
        assert all(extra == (5 if in_step else 1) for in_step, extra in switch["seen"])
        in_step = [flag for flag, _ in switch["seen"]]
        assert not in_step[2] and in_step[3] and not in_step[15]
