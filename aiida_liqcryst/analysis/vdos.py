"""Vibrational density of states (Fig. 2 insets): Fourier transform of the velocity autocorrelation function."""

from __future__ import annotations

import numpy as np

FS_TO_THZ = 1.0e3  # a frequency of 1/fs is 1000 THz
_trapezoid = getattr(np, 'trapezoid', None) or np.trapz  # numpy < 2 has only trapz


def _velocities(velocities) -> np.ndarray:
    v = np.asarray(velocities, dtype=float)
    if v.ndim == 2:  # one atom or one component per column: (nframes, n)
        v = v[:, :, None]
    if v.ndim != 3:
        raise ValueError(f'velocities must have shape (nframes, natoms, 3), got {v.shape}')
    if v.shape[0] < 4:
        raise ValueError(f'need at least 4 frames of velocities, got {v.shape[0]}')
    if not np.all(np.isfinite(v)):
        raise ValueError('velocities must be finite')
    return v


def velocity_autocorrelation(velocities, masses=None, max_lag: int | None = None) -> np.ndarray:
    """Normalised velocity autocorrelation C(t) = <v(0)·v(t)> / <v(0)·v(0)>, so C(0) = 1.

    Averaged over atoms, Cartesian components and time origins (unbiased: each lag divided by the
    number of origins it has), computed by FFT with zero padding (no wrap-around).

    :param velocities: array (nframes, natoms, 3), frames equally spaced in time; any velocity unit.
    :param masses: optional per-atom masses: mass-weighted (kinetic-energy) correlation.
    :param max_lag: number of lags returned (default: half the frames, where statistics are still fair).
    :returns: C at lags 0 .. max_lag-1 (in frames).
    """
    v = _velocities(velocities)
    nframes, natoms, _ = v.shape
    if masses is not None:
        masses = np.asarray(masses, dtype=float).ravel()
        if masses.shape != (natoms,) or np.any(masses <= 0):
            raise ValueError(f'masses must be {natoms} positive numbers, got shape {masses.shape}')
        v = v * np.sqrt(masses)[None, :, None]
    max_lag = nframes // 2 if max_lag is None else int(max_lag)
    if not 2 <= max_lag <= nframes:
        raise ValueError(f'max_lag must lie in [2, {nframes}], got {max_lag}')
    nfft = 2 ** int(np.ceil(np.log2(2 * nframes)))
    spectrum = np.fft.rfft(v, n=nfft, axis=0)
    acf = np.fft.irfft(np.abs(spectrum) ** 2, n=nfft, axis=0)[:max_lag].sum(axis=(1, 2))
    acf /= nframes - np.arange(max_lag)
    if acf[0] <= 0:
        raise ValueError('velocities are all zero: no autocorrelation')
    return acf / acf[0]


def vdos(velocities, timestep_fs: float, masses=None, max_lag: int | None = None, window: str = 'hann'):
    """Vibrational density of states from MD velocities: FFT of the windowed velocity autocorrelation.

    :param timestep_fs: time between two velocity frames, in fs.
    :param window: ``'hann'`` (default, damps the truncation ripples) or ``'none'``.
    :returns: ``(frequencies_thz, dos)`` with ``dos`` >= 0 and normalised to unit area
        (∫ dos dν = 1, ν in THz). Small negative side lobes of the window are set to zero before normalising.
    """
    if timestep_fs <= 0:
        raise ValueError(f'timestep_fs must be positive, got {timestep_fs}')
    acf = velocity_autocorrelation(velocities, masses=masses, max_lag=max_lag)
    nlag = acf.size
    if window == 'hann':
        acf = acf * np.hanning(2 * nlag - 1)[nlag - 1 :]  # the decaying half of a symmetric Hann window
    elif window != 'none':
        raise ValueError(f"window must be 'hann' or 'none', got {window!r}")
    # C(t) is even: its Fourier transform is the real FFT of the symmetric extension [C0..C(n-1), C(n-2)..C1].
    symmetric = np.concatenate([acf, acf[-2:0:-1]])
    dos = np.fft.rfft(symmetric).real
    freqs = np.fft.rfftfreq(symmetric.size, d=timestep_fs) * FS_TO_THZ
    dos = np.clip(dos, 0.0, None)
    return freqs, normalize_dos(freqs, dos)


def normalize_dos(frequencies, dos) -> np.ndarray:
    """``dos`` scaled to unit area over ``frequencies`` (trapezoid rule)."""
    area = _trapezoid(dos, frequencies)
    if not area > 0:
        raise ValueError('the density of states has no positive area')
    return np.asarray(dos, dtype=float) / area


def vdos_overlap(freqs_a, dos_a, freqs_b, dos_b, fmax: float | None = None) -> float:
    """Overlap ∫ min(g_a, g_b) dν of two VDOS, each normalised to unit area on the common range.

    1 for identical spectra, 0 for disjoint ones.

    The second spectrum is interpolated onto the frequencies of the first when they differ (different
    trajectory lengths or time steps). ``fmax`` (THz) limits the comparison, e.g. to skip empty high frequencies.
    """
    fa = np.asarray(freqs_a, dtype=float)
    fb = np.asarray(freqs_b, dtype=float)
    ga = np.asarray(dos_a, dtype=float)
    gb = np.asarray(dos_b, dtype=float)
    if fa.shape != ga.shape or fb.shape != gb.shape:
        raise ValueError('each spectrum needs as many frequencies as values')
    top = min(fa[-1], fb[-1]) if fmax is None else min(fa[-1], fb[-1], fmax)
    keep = fa <= top
    if keep.sum() < 2:
        raise ValueError('the spectra share fewer than two frequencies')
    fa, ga = fa[keep], ga[keep]
    gb = np.interp(fa, fb, gb)
    return float(_trapezoid(np.minimum(normalize_dos(fa, ga), normalize_dos(fa, gb)), fa))


def mean_frequency(frequencies, dos) -> float:
    """First moment ∫ ν g(ν) dν / ∫ g(ν) dν of a VDOS (THz when ν is in THz): a one-number summary."""
    f = np.asarray(frequencies, dtype=float)
    g = np.asarray(dos, dtype=float)
    area = _trapezoid(g, f)
    if not area > 0:
        raise ValueError('the density of states has no positive area')
    return float(_trapezoid(f * g, f) / area)


def vdos_of_trajectory(velocities, times_fs, masses=None, max_lag: int | None = None):
    """:func:`vdos` of an MD trajectory sampled at ``times_fs`` (equally spaced, fs): ``(frequencies_thz, dos)``.

    Mass-weighted when ``masses`` is given (the kinetic-energy VDOS, whose peaks are the phonon frequencies).
    """
    times = np.asarray(times_fs, dtype=float).ravel()
    if times.size < 2:
        raise ValueError('need at least two frames')
    steps = np.diff(times)
    if np.any(steps <= 0) or not np.allclose(steps, steps[0], rtol=1e-6):
        raise ValueError('frames must be equally spaced in time')
    return vdos(velocities, float(steps[0]), masses=masses, max_lag=max_lag)
