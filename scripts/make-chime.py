#!/usr/bin/env python3
"""Write the dashboard's new-alert sound: a short two-tone chime, our own work (AGPL-3.0-or-later).

Generated rather than downloaded so its licence is clear and it can be rebuilt byte for byte; a test
checks the committed file against this script's output.

    python scripts/make-chime.py [OUT]   # default dashboard/web/static/sounds/chime.wav
"""

from __future__ import annotations

import io
import math
import struct
import sys
import wave
from pathlib import Path

DEFAULT_OUT = Path(__file__).resolve().parents[1] / "dashboard" / "web" / "static" / "sounds" / "chime.wav"
RATE = 22050
# Two descending notes a fourth apart (A5 then E5): heard over site noise, unlike a soft single beep,
# yet not a siren (the siren belongs to the site, not the office).
NOTES = ((880.0, 0.0, 0.45), (659.25, 0.22, 0.6))  # (frequency Hz, start s, length s)
LENGTH_S = 0.85


def render() -> bytes:
    """Return the chime as a mono 16-bit WAV file."""
    samples = [0.0] * int(RATE * LENGTH_S)
    for freq, start, length in NOTES:
        first = int(start * RATE)
        for i in range(int(length * RATE)):
            t = i / RATE
            attack = min(1.0, t / 0.008)  # 8 ms attack: no click at the start
            envelope = attack * math.exp(-t * 6.0)
            # A little of the octave above makes it a bell rather than a pure sine.
            tone = math.sin(2 * math.pi * freq * t) + 0.3 * math.sin(4 * math.pi * freq * t)
            if first + i < len(samples):
                samples[first + i] += 0.42 * envelope * tone
    frames = b"".join(struct.pack("<h", max(-32767, min(32767, round(s * 32767)))) for s in samples)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(RATE)
        out.writeframes(frames)
    return buffer.getvalue()


def main() -> None:
    """Write the chime to the path given, or to the dashboard's static folder."""
    out = Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(render())
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
