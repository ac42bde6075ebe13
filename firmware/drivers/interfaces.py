"""The driver interfaces, written down once.

The firmware core talks to hardware only through objects with these methods.
`firmware/drivers/rp2_*.py` implement them on the board, `sim/board.py` in the
simulator; both follow this text exactly. Nothing here is imported at run time:
this module is the contract, kept beside the code it governs.

Units are integers throughout: µA, µs, ms, milli-°C. No method blocks, and no
method raises on ordinary conditions (a full queue, no data): they report it.

Clock
    ticks_ms() -> int            milliseconds on a 2^30 ring (MicroPython semantics)
    ticks_diff(end, start) -> int
    ticks_add(ticks, delta) -> int

PulseOutput  (all TENS channels of one device)
    channels -> int              number of channels
    hw_max_amp_ua -> int         what the output stage can do; fire() clamps to it
    hw_max_phase_us -> int       longest phase the stage allows; fire() clamps to it
    asymmetric -> bool           whether it can shape asymmetric pulses (a longer second phase
                                 at a lower current); when False the device refuses such settings
                                 and fire() refuses pulses whose phases differ
    fire(ch, start_us, amp1_ua, phase1_us, gap_us, amp2_ua, phase2_us) -> bool
        Queue one biphasic pulse on channel `ch`, starting `start_us` after
        the start of the next tick window: a first phase of `phase1_us` at
        +amp1_ua, an interphase gap of `gap_us`, then a second phase of
        `phase2_us` at -amp2_ua. The caller balances the charge exactly
        (amp1_ua * phase1_us == amp2_ua * phase2_us): symmetric pulses have
        equal phases, asymmetric ones a longer second phase at a fraction of
        the current. Amplitudes and widths are clamped to hw_max_amp_ua and
        hw_max_phase_us. Returns False when the queue is full (the pulse is
        dropped, which is the safe direction; the caller treats it as an
        interruption). A pulse not fed is a pulse not fired.
    off()
        Stop every channel now and drop queued pulses. Idempotent; called at
        boot, on every tick outside RUNNING, on any fault and on any exception.

OutputSense
    read_ua(ch) -> int           current delivered during channel ch's last
                                 pulse (first phase), µA; 0 when nothing
                                 flowed or no pulse was fired since the last
                                 read. May raise OSError when the ADC fails
                                 (the tick turns that into a latched fault).
    at_compliance(ch) -> bool    whether that pulse (the one the last read_ua(ch)
                                 reported) drove the stage to its compliance
                                 voltage: with little current delivered, the
                                 electrode is off or nearly so

Serial  (USB CDC on the board, a pty/socket/pipe in the simulator)
    read_into(buf) -> int        bytes copied into bytearray buf; 0 if none
    write(data) -> int           bytes accepted; fewer than len(data) when the
                                 host is not reading (the rest is dropped and
                                 counted by the caller, the tick never waits)

Heater  (a lease: off unless renewed; used by the heat issue)
    lease(duty_permille, lease_ms)   drive at a duty until the lease expires
    off()

Thermistor
    read_raw() -> int            oversampled ADC code, 0..65535

Watchdog
    feed()

Buttons
    pressed() -> int             bit mask of debounced buttons held now
    take_stop_press() -> bool    True once after STOP went down since the last call, however briefly

Indicator
    set(output_on, alarm)        LED / buzzer; output_on above 10 mA r.m.s. or 10 mJ per pulse into 1 kohm

Storage
    append(name, data) -> int    bytes written
    read(name, offset, size) -> bytes    b"" past the end or for a missing file
    size(name) -> int            0 for a missing file
    remove(name)                 a missing file is not an error
"""
