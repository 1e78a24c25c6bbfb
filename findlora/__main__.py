from findlora.cli import app

app()
