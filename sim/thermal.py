"""Heat-pad physics for the simulator: a lumped thermal model of a pad on a patient's back.

Nodes and links (an RC network, heat flows through thermal resistances R_x in mK/W,
nodes store heat in capacities C_x in mJ/K):

    supply_mv ──► heater element ──R_hp──► pad (skin face) ──R_ps──► skin ──R_sc──► core (fixed)
                  C_h, heater_mc           C_p, pad_mc      │         C_s, skin_mc   core_mc 37 °C
                                                            R_pa
                                                            ▼
                                                       ambient (fixed, ambient_mc)

- heater: the resistive element and its carrier film. Power when switched on is
  V^2 / R (supply_mv^2 / heater_milliohm = mW), averaged over each step at
  duty_permille / 1000.
- pad: the pad body and the cover in contact with the skin; `pad_mc` is the temperature
  of the skin-facing surface, where the main thermistor sits and what IEC 60601-1
  limits (an applied part in skin contact for >= 10 min stays <= 43 °C).
- skin: skin and subcutaneous tissue under the pad; perfusion and conduction tie it to
  the body core at 37 °C (a lumped Pennes bioheat term, constant: no vasodilation).
- ambient: room air around the pad's outer face.

Reference pad (the defaults; typical values and where they come from):
    heater   12 V across 9.6 ohm = 15 W (12 V / USB-PD heat pads use 5..20 W carbon-fibre
             or wire films); C_h = 15 J/K (~15 g of element and carrier at ~1 J/(g K)).
    pad      C_p = 150 J/K (~100-150 g of fabric, foam and gel); R_hp = 0.5 K/W (heater
             film laminated into the pad, ~20 x 30 cm).
    contact  R_ps = 1 K/W (0.06 m^2 through a fabric cover, ~17 W/(m^2 K));
             R_pa = 5 K/W (insulated outer face, still air, ~3 W/(m^2 K) over 0.06 m^2).
    skin     C_s = 300 J/K (~85 g of tissue at 3.5 J/(g K)); R_sc = 2 K/W (tissue
             conduction k ~ 0.37 W/(m K) plus resting skin perfusion).
    ambient 22 °C, core 37 °C.
Resulting figures (integer model, ±0.1 %):
    heater-off rest: pad 31.4 °C, skin 33.3 °C
    full-power steady state: pad 59.5 °C, heater 67.0 °C, skin 52.0 °C  (a stuck-on heater burns)
    full power from a pad at ambient: 30 -> 40 °C in ~170 s, 40 -> 43 °C in ~94 s, 40 -> 45 °C in ~175 s
    holding 40 °C needs ~30 % duty (~4.6 W); passive warm-up of a pad at ambient laid on skin:
    ~4.5 K/min at first (heater off), which a "rising while off" check must tolerate
    time constants (eigenmodes of the network): 6.8 s, 93 s, 667 s;
    per-node C / sum(G): heater 7.5 s, pad 47 s, skin 200 s.

Integration: integer forward Euler. Each node's temperature is kept in milli-°C with an
exact energy remainder (µJ, 0 <= rem < C), so energy is conserved to the µJ: every link's
heat (computed once from the old temperatures) leaves one node and enters the other,
and `in_uj - lost_ambient_uj - lost_core_uj` of a step equals the change of
`stored_energy_uj()` exactly. Stability: Euler on node i is stable for
h < 2 C_i / sum(G_i) and non-oscillating (each new temperature a convex combination of the
old ones) for h <= C_i / sum(G_i). `step()` cuts dt into sub-steps of at most
substep_ms = min(250 ms, min_i(C_i / sum(G_i)) / 8), so h * sum(G) / C <= 1/8: monotone,
no overshoot, for any dt the caller passes (a whole minute at once is fine).
Link heat per sub-step = dT_mk * q where q = h * 1000 / R_mk_per_w µJ/mK, held in Q8.

Portable subset: integers only, no floats, no `math`; CPython and the MicroPython VM give
identical numbers. `step()` allocates nothing; its intermediates stay below 2**30 (no
MicroPython big ints even on a 32-bit port) for temperature differences below 100 K, every
R >= 50 mK/W, supply_mv < 32768, and power_mw * dt_ms of one call below 2**30 (the per-call
energy attributes; 60 s at 15 W is 9e8). Outside that the results are still exact, only slower.
"""

from sim.thermistor_model import NODE_HEATER, NODE_PAD, ThermistorModel  # noqa: F401 (re-export)

SUBSTEP_MAX_MS = 250
STABILITY_DIVISOR = 8  # sub-step <= min node C / sum(G) / 8
# Link factors below this keep dT * q8 under 2**30 for |dT| < 100 K, so step() can take the
# product in one go (true for the simulator's 10 ms tick: q8 <= 5120 for the reference pad).
Q_SMALL = (1 << 30) // 100000

# Constructor parameters, in signature order.
PARAM_NAMES = (
    "heater_cap_mj_per_k",
    "pad_cap_mj_per_k",
    "skin_cap_mj_per_k",
    "r_heater_pad_mk_per_w",
    "r_pad_skin_mk_per_w",
    "r_pad_ambient_mk_per_w",
    "r_skin_core_mk_per_w",
    "heater_milliohm",
    "supply_mv",
    "ambient_mc",
    "core_mc",
    "pad_start_mc",
    "skin_start_mc",
)
# Parameters `scaled()` may change by a percentage (positive physical quantities).
SCALABLE = PARAM_NAMES[: PARAM_NAMES.index("supply_mv") + 1]
# The plant family of issue 4: `random_spread` varies these (not the supply, which is the device's).
SPREAD_PARAMS = PARAM_NAMES[: PARAM_NAMES.index("supply_mv")]


def _link_q8(h_ms, r_mk_per_w):
    """Heat per sub-step per mK of difference, µJ/mK in Q8: h * 1000 / R * 256, rounded."""
    return (h_ms * 256000 + (r_mk_per_w >> 1)) // r_mk_per_w


class PadPlant:
    """The heat pad on skin. See the module docstring for the physics and the defaults.

    PadPlant(heater_cap_mj_per_k=15000, pad_cap_mj_per_k=150000, skin_cap_mj_per_k=300000,
             r_heater_pad_mk_per_w=500, r_pad_skin_mk_per_w=1000, r_pad_ambient_mk_per_w=5000,
             r_skin_core_mk_per_w=2000, heater_milliohm=9600, supply_mv=12000,
             ambient_mc=22000, core_mc=37000, pad_start_mc=None, skin_start_mc=None)

    pad_start_mc: heater and pad start here (None: at ambient, a pad just laid on the back);
    skin_start_mc: None = the heater-off rest temperature of the skin under the pad.
    `settle()` puts every node at the heater-off rest state instead.

    Attributes (read any time): heater_mc, pad_mc, skin_mc, ambient_mc, core_mc; power_mw (mean
    heater power of the last step); in_uj, lost_ambient_uj, lost_core_uj (heat of the last step);
    substep_ms; node_tau_ms (heater, pad, skin C / sum(G)); the constructor parameters.
    Run-time knobs (fault injection): supply_mv (nominal_supply_mv kept), ambient_mc
    (nominal_ambient_mc kept), stuck_on (full power whatever the duty), heater_open (no power
    whatever the duty; wins over stuck_on). Change the thermal parameters only through the
    constructor or `scaled()`.
    """

    def __init__(
        self,
        heater_cap_mj_per_k=15000,
        pad_cap_mj_per_k=150000,
        skin_cap_mj_per_k=300000,
        r_heater_pad_mk_per_w=500,
        r_pad_skin_mk_per_w=1000,
        r_pad_ambient_mk_per_w=5000,
        r_skin_core_mk_per_w=2000,
        heater_milliohm=9600,
        supply_mv=12000,
        ambient_mc=22000,
        core_mc=37000,
        pad_start_mc=None,
        skin_start_mc=None,
    ):
        for name, value in (
            ("heater_cap_mj_per_k", heater_cap_mj_per_k),
            ("pad_cap_mj_per_k", pad_cap_mj_per_k),
            ("skin_cap_mj_per_k", skin_cap_mj_per_k),
            ("r_heater_pad_mk_per_w", r_heater_pad_mk_per_w),
            ("r_pad_skin_mk_per_w", r_pad_skin_mk_per_w),
            ("r_pad_ambient_mk_per_w", r_pad_ambient_mk_per_w),
            ("r_skin_core_mk_per_w", r_skin_core_mk_per_w),
            ("heater_milliohm", heater_milliohm),
        ):
            if value <= 0:
                raise ValueError("%s must be > 0, got %r" % (name, value))
        if not 0 <= supply_mv < 32768:
            raise ValueError("supply_mv must be 0..32767, got %r" % (supply_mv,))
        self.heater_cap_mj_per_k = heater_cap_mj_per_k
        self.pad_cap_mj_per_k = pad_cap_mj_per_k
        self.skin_cap_mj_per_k = skin_cap_mj_per_k
        self.r_heater_pad_mk_per_w = r_heater_pad_mk_per_w
        self.r_pad_skin_mk_per_w = r_pad_skin_mk_per_w
        self.r_pad_ambient_mk_per_w = r_pad_ambient_mk_per_w
        self.r_skin_core_mk_per_w = r_skin_core_mk_per_w
        self.heater_milliohm = heater_milliohm
        self.supply_mv = supply_mv
        self.nominal_supply_mv = supply_mv
        self.ambient_mc = ambient_mc
        self.nominal_ambient_mc = ambient_mc
        self.core_mc = core_mc
        self.pad_start_mc = pad_start_mc
        self.skin_start_mc = skin_start_mc
        self.stuck_on = False
        self.heater_open = False
        self.power_mw = 0
        self.in_uj = 0
        self.lost_ambient_uj = 0
        self.lost_core_uj = 0

        # Per-node C / sum(G) in ms; G in µW/K = 1e9 / R. Sets the sub-step (stability).
        g_hp = 1000000000 // r_heater_pad_mk_per_w
        g_ps = 1000000000 // r_pad_skin_mk_per_w
        g_pa = 1000000000 // r_pad_ambient_mk_per_w
        g_sc = 1000000000 // r_skin_core_mk_per_w
        self.node_tau_ms = (
            heater_cap_mj_per_k * 1000000 // g_hp,
            pad_cap_mj_per_k * 1000000 // (g_hp + g_ps + g_pa),
            skin_cap_mj_per_k * 1000000 // (g_ps + g_sc),
        )
        self.substep_ms = max(1, min(SUBSTEP_MAX_MS, min(self.node_tau_ms) // STABILITY_DIVISOR))
        self._h = 0
        self._q_hp = self._q_ps = self._q_pa = self._q_sc = 0
        self._q_small = True
        self._p_duty = -1
        self._p_supply_mv = self._p_heater_milliohm = -1
        self._p_stuck_on = self._p_heater_open = False
        self._p_mw = 0
        self._set_h(self.substep_ms)

        rest_skin = self._rest()[1]
        pad = ambient_mc if pad_start_mc is None else pad_start_mc
        skin = rest_skin if skin_start_mc is None else skin_start_mc
        self.set_state(pad, pad, skin)

    # --- state -----------------------------------------------------------------------------
    def set_state(self, heater_mc, pad_mc, skin_mc):
        """Put the nodes at these temperatures (energy remainders cleared)."""
        self.heater_mc = heater_mc
        self.pad_mc = pad_mc
        self.skin_mc = skin_mc
        self._rem_h = 0
        self._rem_p = 0
        self._rem_s = 0

    def settle(self):
        """Every node at the heater-off rest state for the current ambient and core."""
        pad, skin = self._rest()
        self.set_state(pad, pad, skin)

    def stored_energy_uj(self):
        """Heat stored relative to 0 °C, µJ, exact (sum of C * T + remainder). May be a big int."""
        return (
            self.heater_cap_mj_per_k * self.heater_mc
            + self._rem_h
            + self.pad_cap_mj_per_k * self.pad_mc
            + self._rem_p
            + self.skin_cap_mj_per_k * self.skin_mc
            + self._rem_s
        )

    def params(self):
        """The constructor arguments of this plant, as a dict."""
        out = {}
        for name in PARAM_NAMES:
            out[name] = getattr(self, name)
        out["supply_mv"] = self.nominal_supply_mv
        out["ambient_mc"] = self.nominal_ambient_mc
        return out

    def copy(self):
        """An independent plant with the same parameters, state and fault knobs."""
        other = PadPlant(**self.params())
        other.heater_mc = self.heater_mc
        other.pad_mc = self.pad_mc
        other.skin_mc = self.skin_mc
        other._rem_h = self._rem_h
        other._rem_p = self._rem_p
        other._rem_s = self._rem_s
        other.supply_mv = self.supply_mv
        other.ambient_mc = self.ambient_mc
        other.stuck_on = self.stuck_on
        other.heater_open = self.heater_open
        return other

    def scaled(self, pct_map):
        """A new plant (at its own initial state) with parameters changed by signed percentages.

        pct_map: {name: pct} with name in SCALABLE, e.g. {"pad_cap_mj_per_k": -30,
        "r_pad_skin_mk_per_w": 25}: value * (100 + pct) / 100, rounded. KeyError on other names.
        """
        kw = self.params()
        for name in pct_map:
            if name not in SCALABLE:
                raise KeyError("cannot scale %r; scalable: %s" % (name, ", ".join(SCALABLE)))
            kw[name] = (kw[name] * (100 + pct_map[name]) + 50) // 100
        return PadPlant(**kw)

    # --- physics ---------------------------------------------------------------------------
    def full_power_mw(self):
        """Heater power at 100 % duty from the present supply (V^2 / R), ignoring the fault knobs."""
        return self.supply_mv * self.supply_mv // self.heater_milliohm

    def _power_mw(self, duty_permille):
        if self.heater_open:
            return 0
        if self.stuck_on:
            duty_permille = 1000
        elif duty_permille <= 0:
            return 0
        elif duty_permille > 1000:
            duty_permille = 1000
        return self.supply_mv * self.supply_mv // self.heater_milliohm * duty_permille // 1000

    def _set_h(self, h):
        self._h = h
        self._q_hp = _link_q8(h, self.r_heater_pad_mk_per_w)
        self._q_ps = _link_q8(h, self.r_pad_skin_mk_per_w)
        self._q_pa = _link_q8(h, self.r_pad_ambient_mk_per_w)
        self._q_sc = _link_q8(h, self.r_skin_core_mk_per_w)
        self._q_small = max(self._q_hp, self._q_ps, self._q_pa, self._q_sc) < Q_SMALL

    def step(self, dt_ms, duty_permille):
        """Advance dt_ms with the heater at duty_permille (0..1000, clamped) for the whole step.

        Faults apply: stuck_on heats at 1000 whatever the duty, heater_open not at all.
        Sets power_mw, in_uj, lost_ambient_uj, lost_core_uj. Allocation-free.
        """
        # heater power = _power_mw(duty_permille), kept for the last inputs: the duty changes only
        # when the heater switch flips (a few times per duty window), the knobs on a fault
        if (
            duty_permille == self._p_duty
            and self.supply_mv == self._p_supply_mv
            and self.heater_milliohm == self._p_heater_milliohm
            and self.stuck_on == self._p_stuck_on
            and self.heater_open == self._p_heater_open
        ):
            p = self._p_mw
        else:
            p = self._power_mw(duty_permille)
            self._p_duty = duty_permille
            self._p_supply_mv = self.supply_mv
            self._p_heater_milliohm = self.heater_milliohm
            self._p_stuck_on = self.stuck_on
            self._p_heater_open = self.heater_open
            self._p_mw = p
        self.power_mw = p
        c_h = self.heater_cap_mj_per_k
        c_p = self.pad_cap_mj_per_k
        c_s = self.skin_cap_mj_per_k
        ta = self.ambient_mc
        tc = self.core_mc
        th = self.heater_mc
        tp = self.pad_mc
        ts = self.skin_mc
        rh = self._rem_h
        rp = self._rem_p
        rs = self._rem_s
        e_amb_total = 0
        e_core_total = 0
        hmax = self.substep_ms
        left = dt_ms
        while left > 0:
            h = hmax if left > hmax else left
            left -= h
            if h != self._h:
                self._set_h(h)
            # heat over each link this sub-step (µJ) = dT * q8 / 256, rounded
            if self._q_small:
                # every q8 < Q_SMALL: dT * q8 stays below 2**30 for |dT| < 100 K (a 10 ms tick)
                e_hp = ((th - tp) * self._q_hp + 128) >> 8
                e_ps = ((tp - ts) * self._q_ps + 128) >> 8
                e_pa = ((tp - ta) * self._q_pa + 128) >> 8
                e_sc = ((ts - tc) * self._q_sc + 128) >> 8
            else:
                # the same value, split so no product reaches 2**30
                q = self._q_hp
                d = th - tp
                e_hp = (d >> 8) * q + (((d & 255) * q + 128) >> 8)
                q = self._q_ps
                d = tp - ts
                e_ps = (d >> 8) * q + (((d & 255) * q + 128) >> 8)
                q = self._q_pa
                d = tp - ta
                e_pa = (d >> 8) * q + (((d & 255) * q + 128) >> 8)
                q = self._q_sc
                d = ts - tc
                e_sc = (d >> 8) * q + (((d & 255) * q + 128) >> 8)
            e_amb_total += e_pa
            e_core_total += e_sc
            # new temperature = old + energy / C (µJ / (mJ/K) = mK), remainder carried
            acc = rh + p * h - e_hp  # p * h: mW * ms = µJ
            rh = acc % c_h
            th += acc // c_h
            acc = rp + e_hp - e_ps - e_pa
            rp = acc % c_p
            tp += acc // c_p
            acc = rs + e_ps - e_sc
            rs = acc % c_s
            ts += acc // c_s
        self.heater_mc = th
        self.pad_mc = tp
        self.skin_mc = ts
        self._rem_h = rh
        self._rem_p = rp
        self._rem_s = rs
        self.in_uj = p * dt_ms if dt_ms > 0 else 0  # the sum of p * h over the sub-steps
        self.lost_ambient_uj = e_amb_total
        self.lost_core_uj = e_core_total

    # --- analysis --------------------------------------------------------------------------
    def _steady(self, p_mw):
        """(heater, pad, skin) steady state in mC at constant heater power p_mw (exact network solve)."""
        ra = self.r_pad_ambient_mk_per_w
        rb = self.r_pad_skin_mk_per_w + self.r_skin_core_mk_per_w
        ta = self.ambient_mc
        tc = self.core_mc
        den = ra + rb
        # pad = (P * Ra * Rb + Ta * Rb + Tc * Ra) / (Ra + Rb); P[mW] * R[mK/W] * R / 1000 -> mK * mK/W
        num = p_mw * ra * rb // 1000 + ta * rb + tc * ra
        pad = (num + den // 2) // den
        heater = pad + (p_mw * self.r_heater_pad_mk_per_w + 500) // 1000
        skin = tc + ((pad - tc) * self.r_skin_core_mk_per_w + rb // 2) // rb
        return heater, pad, skin

    def _rest(self):
        ss = self._steady(0)
        return ss[1], ss[2]

    def steady_state(self, duty_permille=1000):
        """(heater_mc, pad_mc, skin_mc) the plant settles at for a constant duty (faults included)."""
        return self._steady(self._power_mw(duty_permille))

    def steady_state_mc(self, duty_permille=1000):
        """Pad temperature the plant settles at for a constant duty (faults included)."""
        return self._steady(self._power_mw(duty_permille))[1]

    def full_power_rise_ms(self, from_mc, to_mc, limit_ms=7200000, step_ms=100):
        """The physical limit for rise-time benchmarks: ms for the pad to go from_mc -> to_mc at duty 1000.

        Simulated on a copy (this plant is not changed) from its present state: the clock starts
        when the pad first reaches from_mc (at once if it is already there) and stops when it
        reaches to_mc; crossings are interpolated within step_ms. None when the pad cannot reach
        to_mc (full-power steady state below it, e.g. heater_open) or not within limit_ms.
        """
        sim = self.copy()
        if sim.pad_mc >= to_mc:
            return 0
        heater_ss, pad_ss, skin_ss = sim.steady_state(1000)
        if pad_ss < to_mc and sim.heater_mc <= heater_ss and sim.pad_mc <= pad_ss and sim.skin_mc <= skin_ss:
            return None  # the network is monotone: starting below its steady state it stays below
        t = 0
        t_from = 0 if sim.pad_mc >= from_mc else -1
        prev = sim.pad_mc
        while t < limit_ms:
            sim.step(step_ms, 1000)
            now = sim.pad_mc
            if t_from < 0 and now >= from_mc:
                t_from = t + step_ms * (from_mc - prev) // (now - prev)
            if now >= to_mc:
                return t + step_ms * (to_mc - prev) // (now - prev) - t_from
            prev = now
            t += step_ms
        return None


def random_spread(rng, pct=30, names=SPREAD_PARAMS, **kwargs):
    """A plant of the family: PadPlant(**kwargs) with each of `names` changed by an independent
    uniform integer percentage in [-pct, +pct] drawn from rng (sim.rng.Rng), in `names` order.
    Returns (plant, pct_map) so a failing case can be rebuilt."""
    pct_map = {}
    for name in names:
        pct_map[name] = rng.symmetric(pct)
    return PadPlant(**kwargs).scaled(pct_map), pct_map


# --- faults: name -> (description, fn(plant, thermistor, active)) ------------------------------
SUPPLY_SAG_PERMILLE = 700  # supply_sag: the supply drops to 70 % (heater power to 49 %)
AMBIENT_STEP_MC = -10000  # ambient_step: the room/draft drops the ambient by 10 °C


def thermistor_open(plant, thermistor, active):
    thermistor.open = bool(active)


def thermistor_short(plant, thermistor, active):
    thermistor.short = bool(active)


def thermistor_detached(plant, thermistor, active):
    if plant is not None:
        thermistor.ambient_mc = plant.ambient_mc
    thermistor.detached = bool(active)


def heater_stuck_on(plant, thermistor, active):
    plant.stuck_on = bool(active)


def heater_open(plant, thermistor, active):
    plant.heater_open = bool(active)


def supply_sag(plant, thermistor, active):
    nominal = plant.nominal_supply_mv
    plant.supply_mv = nominal * SUPPLY_SAG_PERMILLE // 1000 if active else nominal


def make_ambient_step(delta_mc):
    """A fault fn that moves the ambient by delta_mc while active (back to nominal when cleared)."""

    def _ambient_step(plant, thermistor, active):
        nominal = plant.nominal_ambient_mc
        plant.ambient_mc = nominal + delta_mc if active else nominal

    return _ambient_step


ambient_step = make_ambient_step(AMBIENT_STEP_MC)

THERMAL_FAULTS = {
    "thermistor_open": (
        "pad thermistor open circuit: the divider reads the top rail (code ~65520)",
        thermistor_open,
    ),
    "thermistor_short": (
        "pad thermistor shorted: the divider reads the bottom rail (code ~0)",
        thermistor_short,
    ),
    "thermistor_detached": (
        "pad thermistor off the pad: reads near ambient (15 % of the way to the pad, tau 10 s)",
        thermistor_detached,
    ),
    "heater_stuck_on": (
        "heater switch stuck closed: full power whatever the duty (pad heads for ~60 C)",
        heater_stuck_on,
    ),
    "heater_open": ("heater element open: no power whatever the duty", heater_open),
    "supply_sag": ("heater supply sags to 70 % (heater power 49 %)", supply_sag),
    "ambient_step": ("ambient drops by 10 C (a cold draft / window opened)", ambient_step),
}
