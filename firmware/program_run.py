"""One running program: its phase timeline and its prescription.

The device owns the session (state, timers, ramps); a ProgramRun says what the
program allows on top: which phase is due, what a phase turns on or holds off, and
the prescribed maxima a request may not pass. Kept apart so the rules of a
prescription read in one place.
"""

from firmware import limits as L
from firmware.protocols import messages as msg
from firmware.stim import ramp_step_for


class ProgramRun:
    def __init__(self, program):
        self.program = program
        self.phase_index = -1
        self._held_targets_ua = None  # per channel: the patient's amplitude while a phase holds TENS off
        self._restore_due = False  # a TENS phase began last tick: its held amplitudes come back now

    @property
    def phase(self):
        return self.program.phases[self.phase_index]

    def phase_due(self, run_ms):
        """The phase index to enter now, or -1 when the current one goes on (the current one
        again in the tick after a TENS phase began: the second half of entering it)."""
        index = self.program.phase_index_at(run_ms)
        if index != self.phase_index or self._restore_due:
            return index
        return -1

    def start_targets(self, message):
        """Optional "amp_ua" of a start request, each within its channel's prescription."""
        program = self.program
        if "amp_ua" not in message:
            return [plan.amp_ua for plan in program.channels]
        values = message["amp_ua"]
        if not isinstance(values, list) or len(values) > len(program.channels):
            raise msg.RequestError(
                msg.E_BAD_FIELD,
                "amp_ua must be a list of up to %d integers, one per channel of program %s"
                % (len(program.channels), program.name),
            )
        for i in range(len(values)):
            self.check_prescription(i, msg.channel_amp(values, i, L.AMP_LIMIT_UA))
        return values

    def check_prescription(self, index, amp_ua):
        program = self.program
        if index >= len(program.channels):
            raise msg.RequestError(msg.E_BAD_STATE, "program %s does not use channel %d" % (program.name, index))
        top_ua = program.channels[index].max_amp_ua
        if amp_ua > top_ua:
            raise msg.RequestError(
                msg.E_OUT_OF_RANGE,
                "amp_ua %d exceeds the prescribed maximum %d for channel %d (program %s)"
                % (amp_ua, top_ua, index, program.name),
            )

    def check_amp_request(self, index, amp_ua):
        """A new target for a channel: within the prescription, and only in a TENS phase."""
        self.check_prescription(index, amp_ua)
        phase = self.phase
        if not phase.tens:
            raise msg.RequestError(
                msg.E_BAD_STATE,
                "phase %s of program %s has no stimulation; amplitude changes in a TENS phase"
                % (phase.name, self.program.name),
            )

    def target_set(self, index, amp_ua):
        """A request set a channel's target (after every check): while a TENS phase is being entered
        (its first tick, or paused in it), that is the amplitude that comes back."""
        if self._restore_due and self._held_targets_ua is not None:
            self._held_targets_ua[index] = amp_ua

    def target_ua(self, channel):
        """The target an amplitude step starts from: the patient's held amplitude while a TENS
        phase is being entered (the channels' own targets are still zero then)."""
        if self._restore_due and self._held_targets_ua is not None:
            return self._held_targets_ua[channel.index]
        return channel.target_ua

    def check_patient_heat(self, heat, message):
        """Patient mode: heat as the program prescribes it in this phase, or lower."""
        program = self.program
        if not program.has_heat:
            raise msg.RequestError(msg.E_LOCKED, "patient mode: heat comes only with a prescribed program that has heat")
        phase = self.phase
        if not phase.heat:
            raise msg.RequestError(
                msg.E_LOCKED, "patient mode: phase %s of program %s has no heat" % (phase.name, program.name)
            )
        target_mc = message.get("target_mc")
        if "level" in message:
            target_mc = heat.config.level_mc(message["level"])
        if msg.is_int(target_mc) and target_mc > program.heat_target_mc:
            raise msg.RequestError(
                msg.E_OUT_OF_RANGE,
                "heat %d mC exceeds the prescribed %d mC (program %s)" % (target_mc, program.heat_target_mc, program.name),
            )

    def enter_phase(self, index, channels, heat, recorder, now_ms):
        """TENS on, or held at zero (the patient's amplitude kept for the next TENS phase);
        heat on for the run of heat phases from here, or off.

        A TENS phase after a TENS-off phase takes two ticks, so the patient's amplitude comes
        back from zero over a whole ramp, whatever was left of the ramp-down: in the first, a
        channel still above zero is cut to zero (channel.off(): the safe direction) and each
        channel's step is set to the ramp it will take (shown before it moves, as after a
        request), nothing fires; in the second (phase_due hands the same phase back), the
        targets come back and the ramp starts from zero."""
        if index == self.phase_index:
            self._restore_targets(channels)
            return
        program = self.program
        phase = program.phases[index]
        self.phase_index = index
        self._restore_due = False
        recorder.phase(index, phase.name)
        if phase.tens:
            held = self._held_targets_ua
            if held is not None:
                for i in range(len(channels)):
                    channel = channels[i]
                    if channel.amp_ua > 0:
                        channel.off()  # still ramping down: cut, so the ramp up starts from zero
                    if held[i] > 0:
                        channel.ramp_step_ua = ramp_step_for(held[i], channel.ramp_ms)
                self._restore_due = True
        elif self._held_targets_ua is None:
            self._held_targets_ua = [channel.target_ua for channel in channels]
            for channel in channels:
                channel.set_target(0)
        if heat is None:
            return
        if phase.heat and heat.state == "off":
            try:
                if program.heat_level is not None:
                    heat.set_level(program.heat_level)
                else:
                    heat.set_target_mc(program.heat_target_mc)
                heat.start(now_ms, program.heat_left_ms(index))
                recorder.heat(heat.target_mc)
            except msg.RequestError as exc:  # e.g. the session's thermal dose is used up: TENS goes on
                recorder.fault(["heat_refused"], exc.message)
        elif not phase.heat and heat.state != "off" and heat.state != "fault":
            heat.stop()
            recorder.heat(None)

    def _restore_targets(self, channels):
        """The second tick of a TENS phase after a TENS-off phase: the patient's amplitudes
        (or what a request set in the first tick) come back, ramping up from zero."""
        held = self._held_targets_ua
        self._restore_due = False
        self._held_targets_ua = None
        if held is None:
            return
        for i in range(len(channels)):
            channels[i].set_target(held[i])
