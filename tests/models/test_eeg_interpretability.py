"""Behavioural test of DBConformer's channel attention on synthetic motor imagery.

The generator (tasks/synthetic/eeg.py) puts the class information in the 8-30 Hz power of
C3 against C4 (contralateral event-related desynchronisation). After training, the spatial
branch's attention pooling should weight those electrodes most: C3 and C4 must both rank in
the top quarter of the 22 channels. The same weights drive the report's topomap, which is
drawn here with MNE and read back.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    import torch

    import models
    from tasks import eeg
    from tasks.eeg import io as eeg_io
    from tasks.eeg import protocol as eeg_protocol
    from tasks.params import EEGPreprocess, EEGSpec, TrainLoopParams
    from tasks.synthetic.eeg import MI_CHANNELS, generate
    from tasks.train import fit

    folder = tmp_path_factory.mktemp("mi")
    files = generate(folder, n_subjects=3, n_sessions=1, trials_per_class=20, seed=0)
    spec = EEGSpec()
    pp = EEGPreprocess(sfreq=100.0)
    xs, ys, subj = [], [], []
    for i, f in enumerate(sorted(files)):
        rec = eeg_io.read_recording(f, "edf", event_map=spec.event_map)
        ep = eeg.epoch_recording(rec, list(MI_CHANNELS), pp, spec)
        xs.append(ep.x)
        ys.append(ep.labels)
        subj += [i] * len(ep.labels)
    x = eeg_protocol.align_offline(np.concatenate(xs), np.asarray(subj))
    y = np.concatenate(ys)
    torch.manual_seed(0)
    model = models.build("eeg/dbconformer", {"n_chans": 22, "n_times": x.shape[-1], "sfreq": 100.0,
                                             "n_outputs": 2, "patch_size": 50})
    loop = TrainLoopParams(epochs=25, steps_per_epoch=None, batch_size=32, lr=1e-3, weight_decay=0.0,
                           grad_clip=None, balanced_batches=False, keep="last", resume=False, seed=0)
    fit(model, eeg.Trials(x, y), None, loop, task="multiclass", progress=False)
    model.eval()
    with torch.inference_mode():
        model(torch.as_tensor(x))
    return model.last_channel_weights.mean(0).numpy(), list(MI_CHANNELS)


def test_channel_attention_concentrates_on_c3_and_c4(trained):
    from tasks.eeg.protocol import top_channels

    weights, names = trained
    assert weights.shape == (22,) and np.isclose(weights.sum(), 1.0, atol=1e-4)
    top = top_channels(weights, names, 0.25)  # 6 of 22
    assert "C3" in top and "C4" in top, f"top quarter {top}; weights {dict(zip(names, weights.round(3), strict=False))}"
    # And not trivially: the attention is not uniform.
    assert weights.max() > 1.5 / 22


def test_topomap_of_the_weights_is_drawn(trained, tmp_path):
    import matplotlib.image as mpimg

    from tasks.eeg.protocol import plot_channel_topomap

    weights, names = trained
    out = tmp_path / "topomap.png"
    plot_channel_topomap(weights, names, out, "DBConformer channel attention")
    img = mpimg.imread(out)
    assert img.ndim == 3 and img.shape[0] > 200 and img.std() > 0.05  # a real picture, not a blank canvas
