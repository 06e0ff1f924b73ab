"""Behavioural test of DBConformer's channel attention on synthetic motor imagery.

The generator (tasks/domains/eeg/synthetic.py) puts the class information in the 8-30 Hz power of
C3 against C4 (contralateral event-related desynchronisation). After training, the
attention weights of the spatial branch must *change with the class* most at those
electrodes: C3 and C4 both rank in the top quarter of the 22 channels by
``|w(left hand) - w(right hand)|``. This is the picture the evaluate stage draws
(``channel_attention.png``).

Why the class contrast and not the mean weight, and why without Euclidean alignment:
a sweep on an H200 (3 synthetic datasets x 2 model seeds x 20/40 epochs, README
"Channel attention") found the mean weights never put both C3 and C4 in the top
quarter (0/24 runs), the class contrast did in 10/12 runs without EA and 5/12 with EA
(EA whitens across channels, so an aligned "C3" is a mixture of electrodes).
"""

from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch

import models
from tasks.domains.eeg.data import Trials
from tasks.domains.eeg.epochs import epoch_recording
from tasks.domains.eeg.params import EEGPreprocess, EEGSpec
from tasks.domains.eeg.protocol import plot_channel_topomap, top_channels
from tasks.domains.eeg.readers import read_recording
from tasks.domains.eeg.runner import class_contrast
from tasks.domains.eeg.synthetic import MI_CHANNELS, generate
from tasks.loop import fit
from tasks.params_base import TrainLoopParams

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mi")
    files = generate(folder, n_subjects=4, n_sessions=2, trials_per_class=20, seed=0)
    spec = EEGSpec()
    pp = EEGPreprocess(sfreq=100.0)
    xs, ys = [], []
    for f in sorted(files):
        rec = read_recording(f, "edf", event_map=spec.event_map)
        ep = epoch_recording(rec, list(MI_CHANNELS), pp, spec)
        xs.append(ep.x)
        ys.append(ep.labels)
    x = np.concatenate(xs)
    x = x / x.std()  # one global scale: channels stay electrodes (no whitening across them)
    y = np.concatenate(ys)
    torch.manual_seed(0)
    model = models.build("eeg/dbconformer", {"n_chans": 22, "n_times": x.shape[-1], "sfreq": 100.0,
                                             "n_outputs": 2, "patch_size": 50})
    loop = TrainLoopParams(epochs=20, steps_per_epoch=None, batch_size=32, lr=1e-3, weight_decay=0.0,
                           grad_clip=None, balanced_batches=False, keep="last", resume=False, seed=0, patience=1000)
    fit(model, Trials(x, y), None, loop, task="multiclass", progress=False)
    model.eval()
    with torch.inference_mode():
        acc = float((model(torch.as_tensor(x)).argmax(1).numpy() == y).mean())
    w = model.last_channel_weights.numpy()  # (n, 22)
    return np.stack([w[y == 0].mean(0), w[y == 1].mean(0)]), list(MI_CHANNELS), acc


def test_channel_attention_changes_with_the_class_at_c3_and_c4(trained):
    by_class, names, acc = trained
    assert acc > 0.8  # the model learned the task (chance 0.5)
    assert np.allclose(by_class.sum(axis=1), 1.0, atol=1e-4)  # softmax over channels
    contrast = class_contrast(by_class)
    top = top_channels(contrast, names, 0.25)  # 6 of 22
    assert "C3" in top and "C4" in top, f"top quarter {top}; contrast {dict(zip(names, contrast.round(4), strict=True))}"


def test_topomap_of_the_weights_is_drawn(trained, tmp_path):
    by_class, names, _ = trained
    out = tmp_path / "topomap.png"
    plot_channel_topomap(class_contrast(by_class), names, out, "DBConformer channel attention, left vs right")
    img = mpimg.imread(out)
    assert img.ndim == 3 and img.shape[0] > 200 and img.std() > 0.05  # a real picture, not a blank canvas
