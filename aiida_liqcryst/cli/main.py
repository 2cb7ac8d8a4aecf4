"""``aiida-liqcryst``: set up a machine for the plugin and run the demo study."""

import click


@click.group()
def cli():
    """aiida-liqcryst: liquid-only active learning of DeePMD potentials, and their transfer to crystals."""


@cli.command('setup')
@click.option('--profile', default=None, help='Profile name (default: liqcryst, or liqcryst-production with --production).')
@click.option('--production', is_flag=True, help='PostgreSQL storage + RabbitMQ broker instead of SQLite + ZeroMQ.')
@click.option('--vasp', default=None, type=click.Path(exists=True, dir_okay=False), help='Path of a VASP executable to register.')
def setup_command(profile, production, vasp):
    """Create (idempotently) the profile, the localhost computer and the codes found on this machine."""
    from aiida_liqcryst.cli.setup import setup

    findings = setup(profile, production, vasp)
    click.echo('aiida-liqcryst setup:')
    for finding in findings:
        click.echo(finding.line())


@cli.command('demo')
@click.option('--profile', default=None, help='Profile to run in (created when missing; default: the embedded one).')
@click.option('--protocol', default='demo', show_default=True, help='Protocol of the demo study.')
@click.option('--crystals/--no-crystals', default=True, show_default=True,
              help='After the loop and its validation, test the final model on the crystals: E–V curves of the SiO2 polymorphs, structure searches at 0 and 10 GPa.')
@click.option('--output', default='liqcryst-demo', show_default=True, help='Folder for the figures.')
def demo_command(profile, protocol, crystals, output):
    """Set up, then run the demo study on this machine and print where its results live."""
    from aiida_liqcryst.cli.setup import setup
    from aiida_liqcryst.demo import run_demo

    for finding in setup(profile):
        click.echo(finding.line())
    run_demo(protocol=protocol, echo=click.echo, with_crystals=crystals, output=output)


@cli.command('study')
@click.option('--profile', default=None, help='Profile to run in (created when missing; default: the embedded one).')
@click.option('--protocol', default='study', show_default=True, help='Protocol of the study (study.yaml: study, demo).')
@click.option('--output', default='liqcryst-study', show_default=True, help='Folder for the figures, report.txt and study.json.')
def study_command(profile, protocol, output):
    """Run the transfer study (LP and HP loops, crystals, searches) and write its report from the graph.

    The reference's labels and ASE tasks are cached (`aiida-liqcryst setup`): a second study on the same profile
    gets the reference E(V) of the polymorphs and the held-out melt from the first."""
    from aiida_liqcryst.cli.setup import setup
    from aiida_liqcryst.demo import run_study

    for finding in setup(profile):
        click.echo(finding.line())
    run_study(protocol=protocol, echo=click.echo, output=output)


@cli.command('report')
@click.argument('pk', type=int)
@click.option('--profile', default=None, help='Profile of the study (default: the embedded one).')
@click.option('--output', default=None, help='Also write the figures, report.txt and study.json into this folder.')
def report_command(pk, profile, output):
    """Tables, figures and headline figures of a finished StudyWorkChain, made from its provenance graph."""
    from aiida import load_profile, orm

    from aiida_liqcryst.cli.setup import EMBEDDED_PROFILE
    from aiida_liqcryst.report import study_report

    load_profile(profile or EMBEDDED_PROFILE, allow_switch=True)
    node = orm.load_node(pk)
    if getattr(node, 'process_label', None) != 'StudyWorkChain':
        raise click.BadParameter(f'<{pk}> is a {type(node).__name__} ({getattr(node, "process_label", "")}), not a StudyWorkChain', param_hint='PK')
    study_report(node, output=output, echo=click.echo)
