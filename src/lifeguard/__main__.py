from lifeguard.cli import app

app()
