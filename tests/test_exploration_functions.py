"""Plain functions of the exploration stage: MD condition and script, LAMMPS output, model deviation, selection."""

from __future__ import annotations

import io

import numpy as np
import pytest
from ase import Atoms
from ase.build import bulk

from aiida_liqcryst.exploration import lammps_input, lammps_output, model_deviation, selection
from aiida_liqcryst.exploration.lammps_input import Condition, condition_error, conditions_error

# -- condition and script -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    'change, words',
    [
        ({'temperature': 0}, ['temperature', '> 0']),
        ({'temperature': -300.0}, ['temperature']),
        ({'pressure': float('inf')}, ['pressure', 'finite']),
        ({'pressure': float('nan')}, ['pressure', 'finite']),
        ({'ensemble': 'nve'}, ['ensemble', 'npt']),
        ({'steps': 0}, ['steps', '> 0']),
        ({'steps': 10.5}, ['steps', 'integer']),
        ({'timestep': 0.0}, ['timestep']),
        ({'dump_every': 500}, ['dump_every', 'steps']),
        ({'seed': -1}, ['seed']),
        ({'thermo_every': -1}, ['thermo_every']),
        ({'temprature': 300}, ['unknown', 'temprature']),
    ],
)
def test_condition_error_names_the_problem(change, words):
    value = {'temperature': 3000.0, 'pressure': 10.0, 'ensemble': 'npt', 'steps': 200, 'dump_every': 10, 'seed': 3}
    assert condition_error(value) is None
    value.update(change)
    error = condition_error(value)
    assert error is not None
    for word in words:
        assert word in error


def test_conditions_error_lists():
    good = {'temperature': 3000, 'ensemble': 'nvt', 'steps': 100}
    assert conditions_error([good, {**good, 'pressure': 5, 'seed': 0}]) is None
    assert 'non-empty' in conditions_error([])
    assert 'non-empty' in conditions_error({'temperature': 300})
    error = conditions_error([good, {**good, 'temperature': -1}])
    assert error.startswith('condition 1:') and 'temperature' in error
    assert 'temperature' in conditions_error([{'pressure': 0}])  # temperature is required


def test_condition_from_dict_casts_whole_floats():
    # AiiDA returns whole-number floats of a Dict as ints: the condition casts them back
    condition = Condition.from_dict({'temperature': 3000, 'pressure': 10, 'timestep': 0.002, 'steps': 100.0, 'ensemble': 'NVT'})
    assert isinstance(condition.temperature, float) and isinstance(condition.pressure, float)
    assert isinstance(condition.steps, int) and condition.ensemble == 'nvt'
    assert Condition.from_dict(condition.to_dict()) == condition
    with pytest.raises(ValueError, match='temperature'):
        Condition.from_dict({'temperature': -5})


def test_with_timestep_keeps_simulated_time_and_sampling():
    condition = Condition(temperature=3000.0, steps=300, timestep=0.002, dump_every=10, thermo_every=5)
    half = condition.with_timestep(0.5)
    assert half.timestep == pytest.approx(0.001)
    assert half.steps == 600 and half.dump_every == 20 and half.thermo_every == 10
    assert half.simulated_time == pytest.approx(condition.simulated_time)
    assert half.dump_every * half.timestep == pytest.approx(condition.dump_every * condition.timestep)


def script_lines(script: str) -> dict[str, list[str]]:
    lines = {}
    for line in script.splitlines():
        words = line.split()
        if words and not words[0].startswith('#'):
            lines.setdefault(words[0], []).append(' '.join(words[1:]))
    return lines


def test_npt_script():
    condition = Condition(temperature=3000.0, pressure=10.0, ensemble='npt', steps=250, timestep=0.0005,
                          dump_every=25, thermo_every=5, seed=42)
    script = lammps_input.exploration_script(condition, ['O', 'Si'], ['O', 'Si'], ['model_0.pth', 'model_1.pth', 'model_2.pth'])
    lines = script_lines(script)
    assert lines['units'] == ['metal'] and lines['atom_style'] == ['atomic']
    assert lines['read_data'] == [lammps_input.DATA_FILENAME]
    assert lines['mass'] == ['1 15.9990', '2 28.0850']
    assert lines['pair_style'] == ['deepmd model_0.pth model_1.pth model_2.pth out_freq 25 out_file model_devi.out']
    assert lines['pair_coeff'] == ['* * O Si']
    assert lines['timestep'] == ['0.0005']
    assert lines['velocity'][0].startswith('all create 3000 43 ')  # LAMMPS needs seed > 0: seed + 1
    fix = lines['fix'][0].split()
    assert fix[:3] == ['md', 'all', 'npt']
    assert fix[fix.index('temp') + 1: fix.index('temp') + 3] == ['3000', '3000']
    assert fix[fix.index('iso') + 1: fix.index('iso') + 3] == ['100000', '100000']  # 10 GPa in bar
    assert lines['thermo_style'] == ['custom step temp press vol density pe ke etotal']
    assert lines['thermo'] == ['5']
    assert lines['dump'] == ['traj all custom 25 traj.dump id type x y z']
    assert lines['dump_modify'] == ['traj sort id']
    assert lines['run'] == ['250']
    # the order matters: the pair style and velocities need the atoms, the run comes last
    order = [line.split()[0] for line in script.splitlines() if line and not line.startswith('#')]
    assert order.index('read_data') < order.index('pair_style') < order.index('velocity') < order.index('run')
    assert order[-1] == 'run'


def test_nvt_script_and_type_order():
    condition = Condition(temperature=2500.0, pressure=50.0, ensemble='nvt', steps=100)
    script = lammps_input.exploration_script(condition, ['O', 'Si'], ['Si', 'O'], ['a.pth', 'b.pth'])
    lines = script_lines(script)
    assert lines['fix'][0].split()[:3] == ['md', 'all', 'nvt']
    assert 'iso' not in lines['fix'][0]
    assert lines['pair_coeff'] == ['* * Si O']
    assert lines['mass'] == ['1 28.0850', '2 15.9990']
    with pytest.raises(ValueError, match='Na'):
        lammps_input.exploration_script(condition, ['O', 'Si'], ['O', 'Na'], ['a.pth', 'b.pth'])
    with pytest.raises(ValueError, match='model'):
        lammps_input.exploration_script(condition, ['O', 'Si'], ['O', 'Si'], [])


def test_data_file_types_follow_elements(tmp_path):
    import ase.io

    atoms = Atoms('SiO2Si', positions=[[0, 0, 0], [1.6, 0, 0], [0, 1.6, 0], [2, 2, 2]], cell=[5, 5, 5], pbc=True)
    path = tmp_path / 'structure.data'
    lammps_input.write_data_file(atoms, path, ['O', 'Si'])
    back = ase.io.read(path, format='lammps-data', atom_style='atomic')
    # lammps-data keeps the LAMMPS type as the atomic number: type 1 = O, type 2 = Si
    assert list(back.numbers) == [2, 1, 1, 2]
    assert np.allclose(back.positions, atoms.positions)
    assert 'atom types' in path.read_text() and '2 atom types' in path.read_text()


# -- LAMMPS output ---------------------------------------------------------------------------------------

LOG_UNSTABLE = """LAMMPS (29 Aug 2024)
Per MPI rank memory allocation (min/avg/max) = 3.061 | 3.061 | 3.061 Mbytes
   Step          Temp          Press          Volume        Density         PotEng         KinEng         TotEng
         0   3000   10000   300   2.6   -150.5   9.3   -141.2
WARNING: something harmless (src/foo.cpp:1)
        10   3100   20000   301   2.59  -150.0   9.6   -140.4
        20   3200   2
ERROR: Lost atoms: original 24 current 20 (src/thermo.cpp:526)
"""


def test_read_thermo_and_errors():
    thermo = lammps_output.read_thermo(LOG_UNSTABLE)
    assert list(thermo['step']) == [0, 10]  # truncated row dropped, warning skipped
    assert set(thermo) == {'step', 'temp', 'press', 'vol', 'density', 'pe', 'ke', 'etotal'}
    assert np.allclose(thermo['vol'], [300, 301])
    gpa = lammps_output.thermo_in_gpa(thermo)
    assert np.allclose(gpa['press'], [1.0, 2.0]) and np.allclose(thermo['press'], [10000, 20000])
    errors = lammps_output.lammps_errors(LOG_UNSTABLE)
    assert errors == ['Lost atoms: original 24 current 20 (src/thermo.cpp:526)']
    assert lammps_output.is_unstable(errors[0])
    assert not lammps_output.is_unstable('Unknown pair style deepmd')
    assert not lammps_output.finished(LOG_UNSTABLE)
    assert lammps_output.read_thermo('no table here') == {}


def dump_text(frames, truncate_last=False) -> str:
    out = io.StringIO()
    for step, positions, types, length in frames:
        out.write(f'ITEM: TIMESTEP\n{step}\nITEM: NUMBER OF ATOMS\n{len(types)}\n')
        out.write('ITEM: BOX BOUNDS pp pp pp\n' + f'0.0 {length}\n' * 3)
        out.write('ITEM: ATOMS id type x y z\n')
        for i, (t, p) in enumerate(zip(types, positions), start=1):
            out.write(f'{i} {t} {p[0]} {p[1]} {p[2]}\n')
    text = out.getvalue()
    if truncate_last:
        text = text[: len(text) - 20]
    return text


def test_read_dump_truncated_last_frame():
    rng = np.random.default_rng(0)
    frames = [(10 * k, rng.uniform(0, 5, (4, 3)), [2, 1, 1, 2], 5.0 + 0.1 * k) for k in range(3)]
    parsed = lammps_output.read_dump(dump_text(frames), ['O', 'Si'])
    assert [f['step'] for f in parsed] == [0, 10, 20]
    assert parsed[0]['symbols'] == ['Si', 'O', 'O', 'Si']
    assert np.allclose(parsed[2]['positions'], frames[2][1])
    assert np.allclose(parsed[2]['cell'], np.eye(3) * 5.2)
    assert list(parsed[1]['types']) == [2, 1, 1, 2]
    truncated = lammps_output.read_dump(dump_text(frames, truncate_last=True), ['O', 'Si'])
    assert [f['step'] for f in truncated] == [0, 10]


# -- model deviation -------------------------------------------------------------------------------------

DEVI = """#       step         max_devi_v         min_devi_v         avg_devi_v         max_devi_f         min_devi_f         avg_devi_f
           0       5.250505e-02       4.434918e-03       2.773304e-02       2.011254e-01       2.715639e-02       9.134325e-02
          10       3.814519e-02       1.938677e-03       1.964421e-02       2.338809e-01       1.616696e-02       8.490426e-02
          20       0.000000e+00       0.000000e+00       0.000000e+00       0.000000e+00      1.797693e+308       0.000000e+00
          30       2.3e-02       4.4e-03
"""


def test_read_model_devi_and_align():
    devi = model_deviation.read_model_devi(DEVI)
    assert set(model_deviation.COLUMNS) <= set(devi)
    assert list(devi['step']) == [0, 10, 20]  # the incomplete row is skipped
    assert devi['step'].dtype.kind == 'i'
    assert np.allclose(devi['max_devi_f'], [0.2011254, 0.2338809, 0.0])
    aligned = model_deviation.select_steps(devi, [10, 0])
    assert list(aligned['step']) == [10, 0] and aligned['max_devi_f'][1] == pytest.approx(0.2011254)
    with pytest.raises(KeyError):
        model_deviation.select_steps(devi, [40])
    with pytest.raises(ValueError, match='max_devi_f'):
        model_deviation.read_model_devi('# step max_devi_v\n0 1\n')


def test_classification_boundaries():
    lo, hi = 0.15, 0.30
    values = [0.0, 0.1499999, lo, 0.2, 0.2999999, hi, 5.0, np.nan, np.inf]
    labels = model_deviation.classify(values, lo, hi)
    assert list(labels) == ['accurate', 'accurate', 'candidate', 'candidate', 'candidate', 'failed', 'failed', 'failed', 'failed']
    for bad in ((0.3, 0.3), (0.4, 0.3), (-0.1, 0.3)):
        with pytest.raises(ValueError, match='eps_lo'):
            model_deviation.classify(values, *bad)


def test_counts_add_up():
    rng = np.random.default_rng(1)
    values = rng.exponential(0.3, size=997)
    summary = model_deviation.summarize(values, 0.15, 0.30)
    assert summary['frames'] == 997
    assert summary['accurate'] + summary['candidate'] + summary['failed'] == 997
    assert summary['accurate'] == int(np.sum(values < 0.15)) and summary['failed'] == int(np.sum(values >= 0.30))
    assert sum(summary[f'{c}_fraction'] for c in model_deviation.CLASSES) == pytest.approx(1.0)
    for q in (10, 50, 90):
        assert summary[f'max_devi_f_p{q}'] == pytest.approx(np.percentile(values, q))
    empty = model_deviation.summarize([], 0.1, 0.2)
    assert empty['frames'] == 0 and empty['accurate_fraction'] == 0.0 and empty['max_devi_f_p50'] is None


# -- selection -------------------------------------------------------------------------------------------


def test_rdf_fingerprint_of_a_crystal():
    atoms = bulk('MgO', 'rocksalt', a=5.0, cubic=True) * (2, 2, 2)
    atoms.symbols[atoms.symbols == 'Mg'] = 'Si'
    fingerprint = selection.partial_rdf_fingerprint(atoms, ['O', 'Si'], r_max=5.0, bins=25)
    assert fingerprint.shape == (3 * 25,)
    centres = np.linspace(0.1, 4.9, 25)
    # rock salt, a = 5 Å: first neighbours are O-Si at 2.5 Å; O-O and Si-Si at 2.5*sqrt(2)
    o_o, o_si, si_si = fingerprint.reshape(3, 25)
    assert centres[np.argmax(o_si)] == pytest.approx(2.5, abs=0.2)
    assert o_o[centres < 3.2].sum() == 0 and si_si[centres < 3.2].sum() == 0
    assert centres[np.argmax(o_o)] == pytest.approx(2.5 * np.sqrt(2), abs=0.2)
    only_oxygen = atoms[[a.index for a in atoms if a.symbol == 'O']]
    assert not selection.partial_rdf_fingerprint(only_oxygen, ['O', 'Si'])[25:].any()


def test_farthest_point_sampling_picks_distinct_spread_frames():
    # three tight clusters of ten (with exact duplicates): FPS must pick one per cluster first
    rng = np.random.default_rng(2)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    features = np.concatenate([c + 0.01 * rng.standard_normal((10, 2)) for c in centres])
    features[1] = features[0]
    chosen = selection.farthest_point_sampling(features, 3, first=0)
    assert sorted(k // 10 for k in chosen) == [0, 1, 2]
    every = selection.farthest_point_sampling(features, 100)
    assert sorted(every) == list(range(30))
    picked = selection.select(30, 12, 'fps', features=features, scores=np.arange(30.0))
    assert len(picked) == len(set(picked)) == 12
    assert 29 in picked  # starts from the highest score


def test_random_selection_is_seeded_and_capped():
    first = selection.select(50, 7, 'random', seed=5)
    assert first == selection.select(50, 7, 'random', seed=5)
    assert len(set(first)) == 7 and all(0 <= k < 50 for k in first)
    assert first != selection.select(50, 7, 'random', seed=6)
    assert selection.select(4, 7, 'random') == [0, 1, 2, 3]
    assert selection.select(4, 0, 'fps') == []
    with pytest.raises(ValueError, match='random'):
        selection.select(10, 2, 'best')
    with pytest.raises(ValueError, match='feature'):
        selection.select(10, 2, 'fps')


@pytest.mark.parametrize('counts, total', [([75, 180], 16), ([5, 0, 100], 16), ([1, 1, 1, 1], 2), ([3, 2], 10),
                                           ([0, 0], 5), ([10, 10, 10], 16), ([1, 400], 3), ([7], 7)])
def test_quotas_share_the_cap_among_conditions(counts, total):
    from aiida_liqcryst.exploration.selection import quotas

    result = quotas(counts, total)
    assert sum(result) == min(total, sum(counts))
    assert all(0 <= r <= c for r, c in zip(result, counts))
    if total >= sum(1 for c in counts if c):
        assert all(r >= 1 for r, c in zip(result, counts) if c)  # every condition with candidates is sampled
    # proportional up to rounding and the one-each floor
    budget = min(total, sum(counts))
    for r, c in zip(result, counts):
        assert abs(r - budget * c / max(sum(counts), 1)) <= 1.0 + (1 if c else 0)


def test_quotas_reject_negative_counts():
    from aiida_liqcryst.exploration.selection import quotas

    with pytest.raises(ValueError, match='non-negative'):
        quotas([3, -1], 2)


def test_too_close_flags_overlapping_atoms_only():
    from aiida_liqcryst.exploration.selection import too_close

    quartz_like = Atoms('SiO', positions=[[0, 0, 0], [1.61, 0, 0]], cell=[8, 8, 8], pbc=True)  # a real Si-O bond
    assert not too_close(quartz_like, 0.75)
    hole = Atoms('O2', positions=[[0, 0, 0], [0.92, 0, 0]], cell=[8, 8, 8], pbc=True)  # SevenNet-0's O-O hole
    assert too_close(hole, 0.75)
    assert not too_close(hole, 0.0)  # 0 disables the check
    # across the periodic boundary too
    wrapped = Atoms('O2', positions=[[0.1, 0, 0], [7.3, 0, 0]], cell=[8, 8, 8], pbc=True)  # 0.8 Å apart
    assert too_close(wrapped, 0.75)
