"""Face extraction from several threads at once (the node runs faces on worker threads):
every thread gets the answer it gets alone. dlib's detectors and ResNet keep per-call state:
one model shared by the threads gave one request another's face box, and crashed the node
(so the threads run in a child process here, where a crash fails the test, not the run)."""

from __future__ import annotations

import subprocess
import sys

THREADS = 4
ROUNDS = 12

CHILD = f"""
import threading
import numpy as np
from skimage import data as skdata
from skimage.transform import rescale
from matcher.face.detect import detect_faces
from matcher.face.pipeline import extract_from_pixels

base = skdata.astronaut()
images = []  # four different images of one face: at other places and sizes
for scale, (top, left) in ((1.0, (0, 0)), (0.7, (10, 40)), (1.3, (60, 80)), (0.85, (0, 120))):
    image = rescale(base, scale, channel_axis=2, preserve_range=True).astype(np.uint8)
    images.append(np.ascontiguousarray(image[top : top + 380, left : left + 380]))
alone = [(detect_faces(x).boxes, extract_from_pixels(x).template.embedding) for x in images]
assert len({{tuple(map(tuple, b)) for b, _ in alone}}) == len(images), "variants alike"
differ = []

def work(first):
    for r in range({ROUNDS}):
        j = (first + r) % len(images)
        boxes = detect_faces(images[j]).boxes
        vector = extract_from_pixels(images[j]).template.embedding
        if not np.array_equal(boxes, alone[j][0]) or not np.array_equal(vector, alone[j][1]):
            differ.append((j, r))

threads = [threading.Thread(target=work, args=(i,)) for i in range({THREADS})]
for t in threads:
    t.start()
for t in threads:
    t.join()
print("differ", len(differ))
"""


def test_detection_and_embedding_from_threads_match_one_thread() -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]  # a crash: -11 or -6
    assert done.stdout.strip().splitlines()[-1] == "differ 0"
