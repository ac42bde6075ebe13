"""Built-in programs: the usual TENS and heat prescriptions for low back pain.

Read-only and always present. A clinician uses them as they are on an open device, or
uploads a copy with a prescribed maximum for patient mode (docs/programs.md). Settings
follow the common clinical descriptions (Johnson, "Transcutaneous Electrical Nerve
Stimulation", 2014; Sluka & Walsh, J Pain 2003; Nadler et al., Spine 2002 for low-level
heat): conventional TENS is high rate and short pulses at a strong, comfortable tingle;
acupuncture-like TENS is low rate and wide pulses strong enough for visible twitches.
Amplitudes start at zero: the patient turns up to the prescribed sensation.
"""


def _both(stim):
    """The same setting on both channels (two electrode pairs either side of the spine)."""
    return [{"stim": stim}, {"stim": stim}]


def _tens(name, description, stim, minutes=30):
    return {
        "name": name,
        "description": description,
        "channels": _both(stim),
        "phases": [{"name": "tens", "duration_s": minutes * 60}],
    }


def _heat(level, minutes=30):
    return {
        "name": "heat-" + level,
        "description": "Heat only, %s (%s), %d min. Warms the muscles of the lower back; no stimulation."
        % (level, {"low": "38 C", "medium": "40 C", "high": "42 C"}[level], minutes),
        "heat": {"level": level},
        "phases": [{"name": "heat", "duration_s": minutes * 60, "tens": False}],
    }


PRESETS = (
    _tens(
        "conventional",
        "Conventional (high-rate) TENS: 100 Hz, 100 us. Turn up to a strong but comfortable tingling "
        "with no muscle twitch. Pain relief mostly while it runs.",
        {"mode": "continuous", "rate_hz": 100, "phase_us": 100},
    ),
    _tens(
        "acupuncture-like",
        "Acupuncture-like (low-rate) TENS: 2 Hz, 200 us. Turn up until muscles twitch visibly but "
        "comfortably. Relief can outlast the session.",
        {"mode": "acupuncture", "rate_hz": 2, "phase_us": 200},
        minutes=20,
    ),
    _tens(
        "burst",
        "Burst TENS: trains of 7 pulses at 100 Hz, twice a second, 200 us. Twitches like "
        "acupuncture-like TENS, often more comfortable at the same strength.",
        {"mode": "burst", "burst_hz": 100, "train_ms": 500, "train_pulses": 7, "phase_us": 200},
        minutes=20,
    ),
    _tens(
        "mixed-frequency",
        "Mixed-frequency TENS against habituation: the rate sweeps between 10 and 100 Hz every 6 s, "
        "150 us. Use when conventional TENS fades within a session.",
        {"mode": "modulated", "rate_hz": 100, "phase_us": 150, "mod_rate_pct": 90, "mod_rate_ms": 6000},
    ),
    _tens(
        "strength-duration",
        "Strength-duration TENS: pulse width falls by half as the rate rises from 80 to 150 Hz over "
        "6 s, keeping the sensation steady while the nerve fibres are varied. 200 us at its widest.",
        {"mode": "strength_duration", "rate_hz": 80, "sd_rate_hz": 150, "sd_width_pct": 50,
         "sd_period_ms": 6000, "phase_us": 200},
    ),
    _heat("low"),
    _heat("medium"),
    _heat("high"),
    {
        "name": "heat-then-tens",
        "description": "Chronic low back pain: 10 min warm-up heat (40 C), then 20 min conventional TENS "
        "with heat, then 5 min TENS alone as the pad cools. Heat and TENS alternate on the pad's "
        "supply if the device is set to the alternate interlock.",
        "channels": _both({"mode": "continuous", "rate_hz": 100, "phase_us": 100}),
        "heat": {"level": "medium"},
        "phases": [
            {"name": "warm-up", "duration_s": 600, "tens": False, "heat": True},
            {"name": "tens-and-heat", "duration_s": 1200, "tens": True, "heat": True},
            {"name": "cool-down", "duration_s": 300, "tens": True, "heat": False},
        ],
    },
)


def names():
    return [preset["name"] for preset in PRESETS]


def find(name):
    for preset in PRESETS:
        if preset["name"] == name:
            return preset
    return None
