"""The board's pin map, in one place (docs/hardware.md draws the circuit around it).

Raspberry Pi Pico (RP2040) GPIO numbers. Every enable is active-high with an external
pull-down: the RP2040's pads come out of reset as inputs with their pull-downs, and a
board without firmware, or a crashed one, must leave every output stage off.
Import-safe everywhere (no `machine` here): tests and the host read it too.
"""

from firmware.compat import const

# TENS output stage, one H-bridge per channel. The two gates of a channel are consecutive
# pins: the PIO writes both in one instruction (`set pins` with 0b01, 0b10 or 0b00 only), so they never overlap.
CH0_GATE_BASE = const(2)  # GP2 = side A (positive phase), GP3 = side B (negative phase)
CH1_GATE_BASE = const(4)  # GP4, GP5
GATE_BASES = (CH0_GATE_BASE, CH1_GATE_BASE)
# Amplitude reference of each channel's current source: PWM at 100 kHz into a two-pole RC filter.
CH0_AMP_PWM = const(6)
CH1_AMP_PWM = const(7)
AMP_PWMS = (CH0_AMP_PWM, CH1_AMP_PWM)
OUTPUT_ENABLE = const(8)  # powers both bridges' high-voltage rail switch; low = no stimulation possible
# Compliance comparators (open-drain, pulled up): low while a channel's stage is at its voltage limit.
CH0_COMPLIANCE = const(16)
CH1_COMPLIANCE = const(17)
COMPLIANCE_PINS = (CH0_COMPLIANCE, CH1_COMPLIANCE)

# Heat pad
HEATER_GATE = const(9)  # logic-level MOSFET gate, 100 kohm pull-down
HEATER_SUPPLY_ENABLE = const(10)  # second, independent switch in the pad's supply (stuck MOSFET backstop)

# Analog inputs (ADC0..ADC2; ADC3 reads VSYS/3 on the Pico)
ADC_THERMISTOR = const(26)  # ADC0: 10 kohm NTC (B 3950) against a 10 kohm 0.1 % resistor from 3.3 V
ADC_SENSE_CH0 = const(27)  # ADC1: channel 0's sense resistor through a peak-hold and amplifier
ADC_SENSE_CH1 = const(28)  # ADC2
ADC_SENSE = (ADC_SENSE_CH0, ADC_SENSE_CH1)

# Buttons to ground, internal pull-ups: pressed reads 0
BUTTON_UP = const(11)
BUTTON_DOWN = const(12)
BUTTON_STOP = const(13)  # held at power-up: maintenance mode (no watchdog, REPL reachable)

# Indicators
LED_OUTPUT = const(14)  # lit above 10 mA r.m.s. or 10 mJ per pulse into 1 kohm on any channel (IEC 60601-2-10)
BUZZER = const(15)  # piezo through a transistor, PWM
LED_STATUS = const(25)  # the Pico's own LED: heartbeat, fast blink on a latched fault

# Every output pin, driven low first thing at boot and last thing on the way out
OUTPUT_PINS = (
    CH0_GATE_BASE, CH0_GATE_BASE + 1, CH1_GATE_BASE, CH1_GATE_BASE + 1, CH0_AMP_PWM, CH1_AMP_PWM, OUTPUT_ENABLE,
    HEATER_GATE, HEATER_SUPPLY_ENABLE, LED_OUTPUT, BUZZER,
)
