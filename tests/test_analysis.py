"""Plain analysis functions: error metrics, Birch–Murnaghan fits, VDOS, partial RDFs, plots."""

import numpy as np
import pytest

from aiida_liqcryst.analysis import eos, metrics, rdf, vdos
from aiida_liqcryst.structures.polymorphs import get_atoms

EV_PER_A3_IN_GPA = 160.21766208


# ---------------------------------------------------------------- metrics


def test_error_metrics_by_hand():
    rng = np.random.default_rng(0)
    ref = rng.normal(size=200)
    pred = ref + rng.normal(scale=0.1, size=200)
    result = metrics.error_metrics(ref, pred)
    diff = pred - ref
    assert result['rmse'] == pytest.approx(np.sqrt(np.sum(diff**2) / diff.size))
    assert result['mae'] == pytest.approx(np.sum(np.abs(diff)) / diff.size)
    assert result['max_abs_error'] == pytest.approx(max(abs(x) for x in diff))
    dr, dp = ref - ref.mean(), pred - pred.mean()
    assert result['pearson_r'] == pytest.approx(np.sum(dr * dp) / np.sqrt(np.sum(dr**2) * np.sum(dp**2)))
    assert result['n'] == 200
    anti = metrics.error_metrics([1.0, 2.0, 3.0], [3.0, 2.0, 1.0])
    assert anti['pearson_r'] == pytest.approx(-1.0)
    assert np.isnan(metrics.error_metrics([1.0, 1.0], [1.0, 2.0])['pearson_r'])


@pytest.mark.parametrize('pred', [[1.0, 2.0], [1.0, np.nan, 3.0]])
def test_error_metrics_rejects_bad_input(pred):
    with pytest.raises(ValueError):
        metrics.error_metrics([1.0, 2.0, 3.0], pred)


def test_parity_summary_per_atom_and_forces():
    natoms = [3, 6, 12]
    ref_e = np.array([-20.0, -45.0, -88.0])
    pred_e = ref_e + 0.01 * np.array(natoms)  # +10 meV/atom on every frame
    rng = np.random.default_rng(1)
    ref_f = [rng.normal(size=(n, 3)) for n in natoms]
    pred_f = [f + 0.05 for f in ref_f]
    summary = metrics.parity_summary(ref_e, pred_e, natoms, ref_f, pred_f)
    assert summary['energy_per_atom']['rmse'] == pytest.approx(0.01)
    assert summary['energy_per_atom']['n'] == 3
    assert summary['force_components']['rmse'] == pytest.approx(0.05)
    assert summary['force_components']['n'] == 3 * sum(natoms)
    with pytest.raises(ValueError, match='natoms'):
        metrics.parity_summary(ref_e, pred_e, [3, 6, 11], ref_f, pred_f)
    frames = [{'symbols': ['Si'] * n, 'energy': e, 'forces': f} for n, e, f in zip(natoms, ref_e, ref_f)]
    predicted = [dict(frame, energy=e, forces=f) for frame, e, f in zip(frames, pred_e, pred_f)]
    assert metrics.parity_from_frames(frames, predicted) == summary


# ---------------------------------------------------------------- EOS


def analytic_bm(volumes, e0, v0, b0_gpa, b0_prime):
    """Third-order Birch–Murnaghan E(V) in its textbook form (Birch 1947), independent of the code under test."""
    x = (v0 / np.asarray(volumes)) ** (2.0 / 3.0) - 1.0
    b0 = b0_gpa / EV_PER_A3_IN_GPA
    return e0 + 9.0 * v0 * b0 / 16.0 * (x**3 * b0_prime + x**2 * (6.0 - 4.0 * (x + 1.0)))


def test_birch_murnaghan_recovers_parameters():
    v0, e0, b0, b0p = 37.7, -23.5, 37.0, 5.5  # alpha-quartz-like, per SiO2
    volumes = np.linspace(0.88, 1.12, 11) * v0
    noise = np.random.default_rng(2).normal(scale=1e-5, size=volumes.size)
    fit = eos.fit_birch_murnaghan(volumes, analytic_bm(volumes, e0, v0, b0, b0p) + noise)
    assert fit['v0'] == pytest.approx(v0, rel=1e-3)
    assert fit['e0'] == pytest.approx(e0, abs=1e-4)
    assert fit['b0'] == pytest.approx(b0, rel=0.01)
    assert fit['b0_prime'] == pytest.approx(b0p, rel=0.05)
    assert fit['rmse'] < 3e-5
    assert fit['v0_in_range']
    curve = eos.birch_murnaghan_energy(volumes, fit['e0'], fit['v0'], fit['b0'], fit['b0_prime'])
    assert np.allclose(curve, analytic_bm(volumes, e0, v0, b0, b0p), atol=1e-4)


def test_birch_murnaghan_flags_and_errors():
    volumes = np.linspace(0.8, 0.95, 6) * 40.0  # compressed side only: minimum extrapolated
    fit = eos.fit_birch_murnaghan(volumes, analytic_bm(volumes, -10.0, 40.0, 100.0, 4.0))
    assert not fit['v0_in_range']
    with pytest.raises(ValueError, match='at least 5'):
        eos.fit_birch_murnaghan(volumes[:4], analytic_bm(volumes[:4], -10.0, 40.0, 100.0, 4.0))
    with pytest.raises(ValueError, match='distinct'):
        eos.fit_birch_murnaghan([30, 30, 31, 32, 33], [1, 1, 0, 1, 2])


def test_eos_curve_rmse_alignments():
    volumes = np.linspace(34.0, 42.0, 9)
    dft = analytic_bm(volumes, -23.5, 37.7, 37.0, 5.5)
    shifted = dft + 0.3
    assert eos.eos_curve_rmse(volumes, dft, volumes, shifted) == pytest.approx(0.0, abs=1e-12)
    assert eos.eos_curve_rmse(volumes, dft, volumes, shifted, alignment='absolute') == pytest.approx(0.3)
    assert eos.eos_curve_rmse(
        volumes, dft, volumes, shifted, alignment='reference', reference_energies=(-23.5, -23.5 + 0.3)
    ) == pytest.approx(0.0, abs=1e-12)
    assert eos.eos_curve_rmse(
        volumes, dft, volumes, shifted, alignment='reference', reference_energies=(-23.5, -23.5)
    ) == pytest.approx(0.3)
    stiffer = analytic_bm(volumes, -23.5, 37.7, 45.0, 5.5)
    expected = np.sqrt(np.mean(((stiffer - stiffer.min()) - (dft - dft.min())) ** 2))
    assert expected > 1e-3
    assert eos.eos_curve_rmse(volumes, dft, volumes, stiffer) == pytest.approx(expected)
    # another volume grid: the second curve is interpolated onto the reference volumes
    other = np.linspace(33.0, 43.0, 21)
    interpolated = eos.eos_curve_rmse(volumes, dft, other, analytic_bm(other, -23.5, 37.7, 37.0, 5.5), 'absolute')
    assert interpolated < 1e-4
    with pytest.raises(ValueError, match='alignment'):
        eos.eos_curve_rmse(volumes, dft, volumes, shifted, alignment='mean')
    with pytest.raises(ValueError, match='reference_energies'):
        eos.eos_curve_rmse(volumes, dft, volumes, shifted, alignment='reference')


# ---------------------------------------------------------------- VDOS

DT_FS = 1.0


def harmonic_velocities(freqs_thz, nframes=2000, atoms_per_freq=4, seed=3):
    """Velocities of independent harmonic oscillators, ``atoms_per_freq`` atoms at each frequency, random phases."""
    rng = np.random.default_rng(seed)
    t_ps = np.arange(nframes) * DT_FS * 1e-3
    columns = []
    for f in freqs_thz:
        for _ in range(atoms_per_freq):
            phases = rng.uniform(0, 2 * np.pi, size=3)
            columns.append(np.cos(2 * np.pi * f * t_ps[:, None] + phases[None, :]))
    return np.stack(columns, axis=1)  # (nframes, natoms, 3)


def test_vacf_of_a_harmonic_oscillator():
    velocities = harmonic_velocities([15.0])
    acf = vdos.velocity_autocorrelation(velocities, max_lag=200)
    assert acf[0] == pytest.approx(1.0)
    lags_ps = np.arange(200) * DT_FS * 1e-3
    assert np.allclose(acf, np.cos(2 * np.pi * 15.0 * lags_ps), atol=0.02)


def test_vdos_peaks_at_the_oscillator_frequencies():
    freqs, dos = vdos.vdos(harmonic_velocities([10.0, 30.0]), DT_FS)
    assert freqs[-1] == pytest.approx(500.0, rel=0.01)  # Nyquist of a 1 fs step
    resolution = freqs[1] - freqs[0]
    assert np.all(dos >= 0)
    assert np.trapezoid(dos, freqs) == pytest.approx(1.0)
    # the two highest local maxima sit at 10 and 30 THz
    local_max = np.flatnonzero((dos[1:-1] > dos[:-2]) & (dos[1:-1] >= dos[2:])) + 1
    top_two = sorted(freqs[local_max[np.argsort(dos[local_max])[-2:]]])
    assert top_two == pytest.approx([10.0, 30.0], abs=1.5 * resolution)
    # equal weight for both oscillator families: half the area below 20 THz
    below = freqs <= 20.0
    assert np.trapezoid(dos[below], freqs[below]) == pytest.approx(0.5, abs=0.05)


def test_vdos_mass_weighting_and_errors():
    velocities = harmonic_velocities([10.0, 30.0])
    natoms = velocities.shape[1]
    masses = np.where(np.arange(natoms) < natoms // 2, 1.0, 9.0)  # the 30 THz atoms are heavier
    freqs, dos = vdos.vdos(velocities, DT_FS, masses=masses)
    below = freqs <= 20.0
    assert np.trapezoid(dos[below], freqs[below]) == pytest.approx(0.1, abs=0.05)
    with pytest.raises(ValueError, match='timestep'):
        vdos.vdos(velocities, 0.0)
    with pytest.raises(ValueError, match='shape'):
        vdos.vdos(np.zeros((10, 2, 3, 1)), DT_FS)
    with pytest.raises(ValueError, match='masses'):
        vdos.vdos(velocities, DT_FS, masses=[1.0])


def test_vdos_overlap():
    f1, g1 = vdos.vdos(harmonic_velocities([10.0]), DT_FS)
    f1b, g1b = vdos.vdos(harmonic_velocities([10.0], seed=4), DT_FS)
    f2, g2 = vdos.vdos(harmonic_velocities([30.0], nframes=1500), DT_FS)  # another frequency grid
    assert vdos.vdos_overlap(f1, g1, f1, g1) == pytest.approx(1.0)
    assert vdos.vdos_overlap(f1, g1, f1b, g1b) > 0.9
    disjoint = vdos.vdos_overlap(f1, g1, f2, g2)
    assert disjoint < 0.1
    assert vdos.vdos_overlap(f2, g2, f1, g1) == pytest.approx(disjoint, abs=0.02)


# ---------------------------------------------------------------- RDF


@pytest.fixture(scope='module')
def crystals():
    return {name: get_atoms(name) for name in ('stishovite', 'beta_cristobalite')}


def test_stishovite_rdf_and_coordination(crystals):
    stishovite = crystals['stishovite']
    r, g = rdf.partial_rdfs(stishovite, rmax=5.0, nbins=250)
    assert set(g) == {'Si-Si', 'Si-O', 'O-O'}
    assert 1.6 <= rdf.first_peak(r, g['Si-O']) <= 1.85
    assert np.all(g['Si-O'][r < 1.6] == 0)
    assert np.all(rdf.coordination_numbers(stishovite) == 6)
    assert rdf.mean_coordination(stishovite) == 6.0
    assert np.all(rdf.coordination_numbers(stishovite, 'O', 'Si') == 3)


def test_beta_cristobalite_rdf_and_coordination(crystals):
    cristobalite = crystals['beta_cristobalite']
    r, g = rdf.partial_rdfs(cristobalite, rmax=5.0, nbins=250)
    # ideal C9 structure: Si-O = a sqrt(3) / 8
    a = cristobalite.cell.lengths()[0]
    assert rdf.first_peak(r, g['Si-O']) == pytest.approx(a * np.sqrt(3) / 8, abs=r[1] - r[0])
    assert rdf.first_peak(r, g['Si-Si']) == pytest.approx(a * np.sqrt(3) / 4, abs=r[1] - r[0])
    assert np.all(rdf.coordination_numbers(cristobalite) == 4)


def test_rdf_matches_ase_on_a_supercell(crystals):
    from ase.geometry.rdf import get_rdf

    stishovite = crystals['stishovite']
    r, g = rdf.partial_rdfs(stishovite, rmax=4.0, nbins=97)
    supercell = stishovite.repeat((2, 2, 4))
    for a, b in rdf.PAIRS:
        reference, r_ase = get_rdf(supercell, 4.0, 97, elements=(a, b))
        assert np.allclose(r, r_ase)
        assert np.allclose(g[f'{a}-{b}'], reference), f'{a}-{b}'
    # a trajectory of identical frames averages to the same RDF
    _, g_traj = rdf.partial_rdfs([stishovite, stishovite.copy()], rmax=4.0, nbins=97)
    assert np.allclose(g_traj['Si-O'], g['Si-O'])


def test_rdf_similarity(crystals):
    kwargs = {'rmax': 6.0, 'nbins': 120, 'smearing': 0.15}
    _, cristobalite = rdf.partial_rdfs(crystals['beta_cristobalite'], **kwargs)
    expanded = crystals['beta_cristobalite'].copy()
    expanded.set_cell(expanded.cell * 1.01, scale_atoms=True)
    _, expanded_rdfs = rdf.partial_rdfs(expanded, **kwargs)
    _, stishovite = rdf.partial_rdfs(crystals['stishovite'], **kwargs)
    assert rdf.rdf_similarity(cristobalite, cristobalite) == pytest.approx(1.0)
    close = rdf.rdf_similarity(cristobalite, expanded_rdfs)
    far = rdf.rdf_similarity(cristobalite, stishovite)
    assert close > 0.8
    assert far < close - 0.15  # octahedral vs tetrahedral network
    si_o = rdf.rdf_similarity({'Si-O': cristobalite['Si-O']}, {'Si-O': stishovite['Si-O']})
    assert si_o < 0.6  # Si-O 1.54 Å vs 1.76–1.81 Å


def test_rdf_errors(crystals):
    with pytest.raises(ValueError, match='Al'):
        rdf.partial_rdfs(crystals['stishovite'], pairs=[('Si', 'Al')])
    with pytest.raises(ValueError, match='Al'):
        rdf.coordination_numbers(crystals['stishovite'], center='Al')


# ---------------------------------------------------------------- plots


def assert_png(path):
    assert path.exists()
    data = path.read_bytes()
    assert data[:8] == b'\x89PNG\r\n\x1a\n'
    assert len(data) > 5000  # axes, points and text, not an empty canvas


def test_plots_write_pngs(tmp_path):
    from aiida_liqcryst.analysis import plots

    rng = np.random.default_rng(5)
    ref_e = rng.uniform(-7.6, -7.2, 20)
    forces = [rng.normal(size=(24, 3)) for _ in range(20)]
    path = plots.parity_plot(
        tmp_path / 'parity.png', ref_e, ref_e + 0.003, forces, [f + rng.normal(scale=0.1, size=f.shape) for f in forces]
    )
    assert_png(path)

    volumes = np.linspace(34.0, 42.0, 9)
    freqs, dos = vdos.vdos(harmonic_velocities([10.0, 30.0], nframes=400), DT_FS)
    curves = {
        name: {'DFT': (volumes, analytic_bm(volumes, -23.5, 37.7, b0, 5.5)),
               'DeePMD': (volumes, analytic_bm(volumes, -23.49, 37.9, b0, 5.0))}
        for name, b0 in (('alpha_quartz', 37.0), ('stishovite', 300.0), ('coesite', 100.0))
    }
    path = plots.ev_grid(tmp_path / 'sub' / 'ev.png', curves, insets={'stishovite': {'DFT': (freqs, dos)}}, ncols=2)
    assert_png(path)
    assert_png(plots.vdos_overlay(tmp_path / 'vdos.png', {'DFT': (freqs, dos), 'DeePMD': (freqs, 0.9 * dos)}, fmax=60))
    with pytest.raises(ValueError):
        plots.ev_grid(tmp_path / 'empty.png', {})
