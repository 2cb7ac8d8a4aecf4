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
