from flowlens.cli import run

run()
