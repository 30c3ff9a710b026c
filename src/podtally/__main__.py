from podtally.cli import run

run()
