from ragpress.cli import app

app()
