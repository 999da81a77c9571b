"""The embedded benchmark world: the synthetic renderer and its ground truth, the `scene` and `patch` encoders
pre-trained on its labels, and the jobs that run on it (`vtc demo`, `vtc compare`, `vtc data`).

The core library never imports this package. Importing it registers the `synthetic` data source
(`vtc.train.data.register_data_source`) and the `scene` and `patch` encoders (`vtc.encoders.register_encoder`), so
that training configs can name them.
"""

from __future__ import annotations

from vtc.encoders import register_encoder
from vtc.train.data import register_data_source
from vtc.world.patch_encoder import PatchEncoder
from vtc.world.scene_encoder import SceneEncoder
from vtc.world.source import SYNTHETIC_SOURCE

register_data_source("synthetic", SYNTHETIC_SOURCE)
register_encoder("scene", SceneEncoder)
register_encoder("patch", PatchEncoder)
