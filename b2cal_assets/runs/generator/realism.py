"""The generator's detector and machine model: its own constants, never imported by a calibration.

A calibration that reads a constant of the model that generated its input only shows that the
code agrees with itself. So every number saying how the synthetic detector *behaves* (beam
energy spread, ISR spectrum, shower containment, x-t relation, timing jitter, noise rates,
track resolution) lives here, on the generator side; ``tests`` check by AST scan that no
module outside the generator (and demo, bench, tests) imports this package.

Two models:

* ``realistic`` (default): SuperKEKB's 83 mrad crossing (the e+e- system moves along x),
  a luminous region that drifts within a run, track-level impact parameters with a
  correlated d0-z0 fit covariance and a vertex fitted from the tracks; QED initial-state
  radiation as a power law (radiator beta x^(beta-1), beta = 2 alpha/pi (ln(s/m_e^2) - 1))
  and final-state radiation off the muons; a jittering event T0 measured with a finite
  resolution; CDC hit times that include time of flight and signal propagation along the
  wire, an x-t relation per superlayer (exponent and maximum drift time) the calibration is
  not told, a per-superlayer resolution, and inner-layer-heavy beam background; ECL showers
  that leak into the neighbouring crystals with a theta-dependent containment and position
  dependence inside the crystal, and endcap-heavy beam background.
* ``simple``: the earlier model kept for comparison: head-on beams, exponential ISR tail, no
  T0 jitter, no flight or propagation times, one fixed x-t power law, constant containment
  0.95 with no leakage, an isotropic vertex error, flat noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

FINE_STRUCTURE = 1.0 / 137.035999
ELECTRON_MASS_GEV = 0.000510999
MUON_MASS_GEV = 0.1056584
PION_MASS_GEV = 0.13957


@dataclass(frozen=True)
class RealismModel:
    """Every behaviour constant of the synthetic detector and machine (see the module doc)."""

    name: str
    # Machine.
    her_energy_gev: float = 7.0
    ler_energy_gev: float = 4.0
    crossing_angle_rad: float = 0.083
    energy_spread_gev: float = 0.0052  # spread of the collision energy
    isr: str = "power-law"  # or "exponential" (the simple model's 20 % tail of slope 0.01)
    muon_fsr: bool = True
    beam_spot_drift_per_hour_cm: tuple[float, float, float] = (0.00010, 0.000005, 0.0010)  # rms of the rates
    # Tracking.
    d0_z0_correlation: float = -0.25
    vertex_from_tracks: bool = True
    # Event time zero (ns): true jitter of the triggered bunch crossing and its measurement.
    event_t0_jitter_ns: float = 4.0
    event_t0_resolution_ns: float = 0.7
    # CDC.
    time_of_flight: bool = True
    wire_propagation: bool = True
    signal_speed_cm_per_ns: float = 27.25
    xt_exponent_mean: float = 1.30
    xt_exponent_spread: float = 0.08  # per superlayer, uniform +- this
    max_drift_ns_mean: float = 350.0
    max_drift_ns_spread: float = 30.0  # per superlayer, uniform +- this
    cdc_time_resolution_ns: tuple[float, float] = (1.2, 1.8)  # per superlayer, uniform in this range
    cdc_noise_hits_per_event: float = 40.0
    cdc_noise_inner_weighted: bool = True  # rate per wire ~ 1/r^2
    # ECL.
    ecl_main_fraction_barrel: float = 0.84  # mean energy fraction in the hit crystal
    ecl_main_fraction_endcap: float = 0.79
    ecl_contained_3x3: float = 0.97  # main + four neighbours
    ecl_position_dependence: float = 0.08  # main fraction lower by this at the crystal edge
    ecl_leakage: bool = True
    ecl_background_per_event: float = 8.0
    ecl_background_endcap_weighted: bool = True


REALISTIC = RealismModel(name="realistic")

SIMPLE = RealismModel(
    name="simple",
    crossing_angle_rad=0.0,
    isr="exponential",
    muon_fsr=False,
    beam_spot_drift_per_hour_cm=(0.0, 0.0, 0.0),
    d0_z0_correlation=0.0,
    vertex_from_tracks=False,
    event_t0_jitter_ns=0.0,
    event_t0_resolution_ns=0.0,
    time_of_flight=False,
    wire_propagation=False,
    xt_exponent_spread=0.0,
    max_drift_ns_spread=0.0,
    cdc_time_resolution_ns=(1.5, 1.5),
    cdc_noise_hits_per_event=8.0,
    cdc_noise_inner_weighted=False,
    ecl_main_fraction_barrel=0.95,
    ecl_main_fraction_endcap=0.95,
    ecl_contained_3x3=0.95,
    ecl_position_dependence=0.0,
    ecl_leakage=False,
    ecl_background_per_event=3.0,
    ecl_background_endcap_weighted=False,
)

MODELS = {"realistic": REALISTIC, "simple": SIMPLE}


def isr_beta(ecms_gev: float) -> float:
    """Exponent of the QED ISR radiator: 2 alpha / pi (ln(s / m_e^2) - 1), 0.088 at 10.58 GeV."""
    return 2.0 * FINE_STRUCTURE / math.pi * (2.0 * math.log(ecms_gev / ELECTRON_MASS_GEV) - 1.0)


def fsr_beta(ecms_gev: float, mass_gev: float) -> float:
    """Exponent of the collinear final-state radiator of one lepton of energy sqrt(s)/2."""
    return FINE_STRUCTURE / math.pi * (2.0 * math.log(ecms_gev / mass_gev) - 1.0)
