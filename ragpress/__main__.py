from ragpress.cli import app

if __name__ == "__main__":  # a child process that re-imports the main module (multiprocessing) must not run the CLI
    app()
